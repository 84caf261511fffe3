-- Tether protocol dissector for Wireshark and tshark (docs/PROTOCOL.md).
--
--   tshark -X lua_script:tools/wireshark/tether.lua -r capture.pcap -Y tether
--   wireshark -X lua_script:tools/wireshark/tether.lua capture.pcap
--
-- or copy this file to ~/.local/lib/wireshark/plugins/. It decodes framed TCP (port 7070, with
-- reassembly of frames split over segments and several frames per segment) and framed UDP (port
-- 7071, one frame per datagram, zero padding after it allowed). For every frame: the 24-byte
-- header, the kind, the request id, the response/more/error flags, both CRC-32 checks, and the
-- postcard metadata of every message of protocol version 1 (names, sizes, offsets, digests,
-- error codes, exec status, clock, events). Other ports: "Decode As..." -> TETHER.
--
-- Works with the Lua 5.2 of Wireshark 3.x/4.0 (bit32) and with Lua 5.4 builds (bit).

local bit = bit32 or bit
local band, bxor, rshift = bit.band, bit.bxor, bit.rshift

local tether = Proto("tether", "Tether framed protocol")

local HEADER_LEN = 24

local kinds = {
    [0x01] = "hello", [0x02] = "echo", [0x03] = "upper", [0x04] = "exec",
    [0x05] = "discover",
    [0x10] = "put-begin", [0x11] = "put-data", [0x12] = "put-commit", [0x13] = "put-abort",
    [0x14] = "get", [0x15] = "list", [0x16] = "stat", [0x17] = "remove",
    [0x20] = "time-get", [0x21] = "time-set",
    [0x30] = "message", [0x31] = "subscribe", [0x32] = "event",
    [0x50] = "fw-status", [0x51] = "fw-begin", [0x52] = "fw-data", [0x53] = "fw-commit",
    [0x54] = "fw-test", [0x55] = "fw-confirm", [0x56] = "reset",
}

local errors = {
    [1] = "malformed", [2] = "bad CRC", [3] = "too large", [4] = "unsupported version",
    [5] = "unknown kind", [6] = "not found", [7] = "already exists", [8] = "no space",
    [9] = "digest mismatch", [10] = "bad offset", [11] = "invalid name", [12] = "busy",
    [13] = "unknown command", [14] = "no transfer", [15] = "invalid argument",
    [16] = "unauthorized", [17] = "internal", [18] = "pad request", [19] = "changed",
    [20] = "bad image", [21] = "bad signature", [22] = "wrong board", [23] = "downgrade",
}

local f = tether.fields
f.magic = ProtoField.uint16("tether.magic", "Magic", base.HEX)
f.version = ProtoField.uint8("tether.version", "Version", base.DEC)
f.kind = ProtoField.uint8("tether.kind", "Kind", base.HEX, kinds)
f.flags = ProtoField.uint8("tether.flags", "Flags", base.HEX)
f.flag_response = ProtoField.bool("tether.flags.response", "Response", 8, nil, 0x01)
f.flag_more = ProtoField.bool("tether.flags.more", "More", 8, nil, 0x02)
f.flag_error = ProtoField.bool("tether.flags.error", "Error", 8, nil, 0x04)
f.reserved = ProtoField.uint8("tether.reserved", "Reserved", base.HEX)
f.meta_len = ProtoField.uint16("tether.meta_len", "Metadata length", base.DEC)
f.request_id = ProtoField.uint32("tether.request_id", "Request id", base.DEC)
f.body_len = ProtoField.uint32("tether.body_len", "Body length", base.DEC)
f.payload_crc = ProtoField.uint32("tether.payload_crc", "Payload CRC-32", base.HEX)
f.payload_crc_ok = ProtoField.bool("tether.payload_crc.ok", "Payload CRC good")
f.header_crc = ProtoField.uint32("tether.header_crc", "Header CRC-32", base.HEX)
f.header_crc_ok = ProtoField.bool("tether.header_crc.ok", "Header CRC good")
f.meta = ProtoField.bytes("tether.meta", "Metadata")
f.body = ProtoField.bytes("tether.body", "Body")
f.text = ProtoField.string("tether.text", "Body text")
f.padding = ProtoField.bytes("tether.padding", "Padding")
-- Metadata fields, by meaning; the same name for the same thing in every message.
f.name = ProtoField.string("tether.name", "Name")
f.client = ProtoField.string("tether.client", "Client")
f.device = ProtoField.string("tether.device", "Device")
f.size = ProtoField.uint64("tether.size", "Size", base.DEC)
f.offset = ProtoField.uint64("tether.offset", "Offset", base.DEC)
f.received = ProtoField.uint64("tether.received", "Received", base.DEC)
f.chunk = ProtoField.uint32("tether.chunk", "Chunk size", base.DEC)
f.window = ProtoField.uint16("tether.window", "Window", base.DEC)
f.sha256 = ProtoField.bytes("tether.sha256", "SHA-256")
f.overwrite = ProtoField.bool("tether.overwrite", "Overwrite")
f.error_code = ProtoField.uint16("tether.error.code", "Error code", base.DEC, errors)
f.error_message = ProtoField.string("tether.error.message", "Error message")
f.command = ProtoField.string("tether.command", "Command")
f.arg = ProtoField.string("tether.arg", "Argument")
f.status = ProtoField.int32("tether.status", "Exit status", base.DEC)
f.start = ProtoField.uint32("tether.start", "List start", base.DEC)
f.format = ProtoField.string("tether.format", "Time format")
f.unix_ms = ProtoField.uint64("tether.unix_ms", "Unix time (ms)", base.DEC)
f.synced = ProtoField.bool("tether.synced", "Clock set")
f.from = ProtoField.string("tether.from", "From")
f.on = ProtoField.bool("tether.subscribe.on", "Subscribe")
f.topic = ProtoField.string("tether.topic", "Topic")
f.seq = ProtoField.uint32("tether.seq", "Sequence", base.DEC)
f.max_frame = ProtoField.uint32("tether.max_frame", "Max frame", base.DEC)
f.max_chunk = ProtoField.uint32("tether.max_chunk", "Max chunk", base.DEC)
f.sessions = ProtoField.uint8("tether.sessions", "Sessions", base.DEC)
f.storage_capacity = ProtoField.uint64("tether.storage_capacity", "Storage capacity", base.DEC)
f.storage_used = ProtoField.uint64("tether.storage_used", "Storage used", base.DEC)
f.uptime_ms = ProtoField.uint64("tether.uptime_ms", "Uptime (ms)", base.DEC)
f.udp_port = ProtoField.uint16("tether.udp_port", "UDP port", base.DEC)
f.meta_version = ProtoField.uint8("tether.info.version", "Protocol version", base.DEC)

local e_header_crc = ProtoExpert.new("tether.header_crc.bad", "Header CRC mismatch", expert.group.CHECKSUM, expert.severity.ERROR)
local e_payload_crc = ProtoExpert.new("tether.payload_crc.bad", "Payload CRC mismatch", expert.group.CHECKSUM, expert.severity.ERROR)
local e_meta = ProtoExpert.new("tether.meta.bad", "Metadata does not decode", expert.group.MALFORMED, expert.severity.WARN)
local e_garbage = ProtoExpert.new("tether.garbage", "Bytes that do not start a frame", expert.group.MALFORMED, expert.severity.WARN)
tether.experts = { e_header_crc, e_payload_crc, e_meta, e_garbage }

-- CRC-32/ISO-HDLC (reflected 0xEDB88320), table-driven.
local crc_table = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
        if band(c, 1) == 1 then
            c = bxor(rshift(c, 1), 0xEDB88320)
        else
            c = rshift(c, 1)
        end
    end
    crc_table[i] = c
end

local function crc32(bytes, from, len)
    local c = 0xFFFFFFFF
    for i = from, from + len - 1 do
        c = bxor(crc_table[band(bxor(c, bytes:get_index(i)), 0xFF)], rshift(c, 8))
    end
    -- Normalise: the BitOp library returns signed numbers.
    return bxor(c, 0xFFFFFFFF) % 4294967296
end

-- A postcard reader over metadata bytes: varints, strings, bools, fixed arrays.
local Reader = {}
Reader.__index = Reader

local function reader(tvb, offset, len)
    return setmetatable({ tvb = tvb, pos = offset, stop = offset + len }, Reader)
end

function Reader:varint()
    local value, mul, start = 0, 1, self.pos
    while true do
        if self.pos >= self.stop then error("truncated varint") end
        local b = self.tvb(self.pos, 1):uint()
        self.pos = self.pos + 1
        value = value + (b % 128) * mul
        mul = mul * 128
        if b < 128 then break end
        if self.pos - start > 10 then error("varint too long") end
    end
    return value, start, self.pos - start
end

function Reader:u8()
    if self.pos >= self.stop then error("truncated") end
    local start = self.pos
    self.pos = self.pos + 1
    return self.tvb(start, 1):uint(), start, 1
end

function Reader:str()
    local len = self:varint()
    if self.pos + len > self.stop then error("truncated string") end
    local start = self.pos
    self.pos = self.pos + len
    return self.tvb(start, len):string(), start, len
end

function Reader:bytes(n)
    if self.pos + n > self.stop then error("truncated array") end
    local start = self.pos
    self.pos = self.pos + n
    return self.tvb(start, n), start, n
end

-- Adds one field read with `how` ("varint", "u8", "str", "bool", "i32", "sha") to `tree`.
local function add(tree, r, field, how)
    local v, start, len
    if how == "str" then
        v, start, len = r:str()
    elseif how == "u8" then
        v, start, len = r:u8()
    elseif how == "bool" then
        v, start, len = r:u8()
        v = v ~= 0
    elseif how == "sha" then
        local range
        range, start, len = r:bytes(32)
        tree:add(field, range)
        return range
    elseif how == "i32" then
        v, start, len = r:varint()
        -- zigzag
        if v % 2 == 0 then v = v / 2 else v = -(v + 1) / 2 end
    else
        v, start, len = r:varint()
    end
    if field == f.size or field == f.offset or field == f.received or field == f.storage_capacity
        or field == f.storage_used or field == f.uptime_ms or field == f.unix_ms then
        tree:add(field, r.tvb(start, len), UInt64(v % 4294967296, math.floor(v / 4294967296)))
    else
        tree:add(field, r.tvb(start, len), v)
    end
    return v
end

local function seq(tree, r, field)
    local n = r:varint()
    for _ = 1, n do add(tree, r, field, "str") end
    return n
end

-- Metadata layouts: [kind] = { request = fn, response = fn, more = fn (a MORE frame) }.
local layouts = {
    [0x01] = {
        request = function(t, r) return "client " .. add(t, r, f.client, "str") end,
        response = function(t, r)
            add(t, r, f.meta_version, "u8")
            local d = add(t, r, f.device, "str")
            add(t, r, f.max_frame, "varint"); add(t, r, f.max_chunk, "varint")
            add(t, r, f.sessions, "u8")
            add(t, r, f.storage_capacity, "varint"); add(t, r, f.storage_used, "varint")
            add(t, r, f.uptime_ms, "varint")
            seq(t, r, f.command)
            local port = add(t, r, f.udp_port, "varint")
            add(t, r, f.synced, "bool")
            return "device " .. d .. ", UDP port " .. port
        end,
    },
    [0x04] = {
        request = function(t, r)
            local c = add(t, r, f.command, "str"); seq(t, r, f.arg); return "command " .. c
        end,
        response = function(t, r) return "status " .. add(t, r, f.status, "i32") end,
        more = function() return "output" end,
    },
    [0x10] = {
        request = function(t, r)
            local n = add(t, r, f.name, "str"); local s = add(t, r, f.size, "varint")
            add(t, r, f.sha256, "sha"); add(t, r, f.overwrite, "bool")
            return n .. ", " .. string.format("%.0f", s) .. " bytes"
        end,
        response = function(t, r)
            local o = add(t, r, f.offset, "varint"); add(t, r, f.chunk, "varint"); add(t, r, f.window, "varint")
            return "ready at offset " .. string.format("%.0f", o)
        end,
    },
    [0x11] = {
        request = function(t, r) return "offset " .. string.format("%.0f", add(t, r, f.offset, "varint")) end,
        response = function(t, r) return "received " .. string.format("%.0f", add(t, r, f.received, "varint")) end,
    },
    [0x12] = {
        request = function(t, r) return add(t, r, f.name, "str") end,
        response = function(t, r)
            local s = add(t, r, f.size, "varint"); add(t, r, f.sha256, "sha"); return string.format("%.0f", s) .. " bytes"
        end,
    },
    [0x13] = { request = function(t, r) return add(t, r, f.name, "str") end },
    [0x14] = {
        request = function(t, r)
            local n = add(t, r, f.name, "str"); local o = add(t, r, f.offset, "varint")
            return n .. " from " .. string.format("%.0f", o)
        end,
        more = function(t, r) return "data at " .. string.format("%.0f", add(t, r, f.offset, "varint")) end,
        response = function(t, r)
            local s = add(t, r, f.size, "varint"); add(t, r, f.sha256, "sha"); return "done, " .. string.format("%.0f", s) .. " bytes"
        end,
    },
    [0x15] = {
        request = function(t, r) return "from " .. add(t, r, f.start, "varint") end,
        response = function(t, r)
            local n = r:varint()
            for _ = 1, n do add(t, r, f.name, "str"); add(t, r, f.size, "varint") end
            return n .. " entries"
        end,
    },
    [0x16] = {
        request = function(t, r) return add(t, r, f.name, "str") end,
        response = function(t, r)
            local n = add(t, r, f.name, "str"); local s = add(t, r, f.size, "varint"); add(t, r, f.sha256, "sha")
            return n .. ", " .. string.format("%.0f", s) .. " bytes"
        end,
    },
    [0x17] = { request = function(t, r) return add(t, r, f.name, "str") end },
    [0x20] = {
        request = function(t, r) return "format " .. add(t, r, f.format, "str") end,
        response = function(t, r) add(t, r, f.unix_ms, "varint"); return (add(t, r, f.synced, "bool") and "set" or "never set") end,
    },
    [0x21] = {
        request = function(t, r) return string.format("%.0f", add(t, r, f.unix_ms, "varint")) .. " ms" end,
        response = function(t, r) add(t, r, f.unix_ms, "varint"); return (add(t, r, f.synced, "bool") and "set" or "never set") end,
    },
    [0x30] = {
        request = function(t, r) return "from " .. add(t, r, f.from, "str") end,
        response = function(t, r) return "from " .. add(t, r, f.from, "str") end,
    },
    [0x31] = { request = function(t, r) return (add(t, r, f.on, "bool") and "on" or "off") end },
    [0x32] = {
        request = function(t, r)
            local topic = add(t, r, f.topic, "str"); local s = add(t, r, f.seq, "varint")
            return topic .. " #" .. s
        end,
    },
}

local function printable(tvb)
    local s = tvb:string()
    if #s == 0 or s:find("[^%g%s]") then return nil end
    return s
end

-- Dissects one whole frame at the start of `tvb`; returns a one-line summary.
local function dissect_frame(tvb, pinfo, root)
    local meta_len = tvb(6, 2):le_uint()
    local body_len = tvb(12, 4):le_uint()
    local total = HEADER_LEN + meta_len + body_len
    local tree = root:add(tether, tvb(0, total))
    local kind = tvb(3, 1):uint()
    local flags = tvb(4, 1):uint()
    local id = tvb(8, 4):le_uint()

    tree:add(f.magic, tvb(0, 2))
    tree:add(f.version, tvb(2, 1))
    tree:add(f.kind, tvb(3, 1))
    local ft = tree:add(f.flags, tvb(4, 1))
    ft:add(f.flag_response, tvb(4, 1)); ft:add(f.flag_more, tvb(4, 1)); ft:add(f.flag_error, tvb(4, 1))
    tree:add(f.reserved, tvb(5, 1))
    tree:add_le(f.meta_len, tvb(6, 2))
    tree:add_le(f.request_id, tvb(8, 4))
    tree:add_le(f.body_len, tvb(12, 4))

    local bytes = tvb:bytes()
    local pcrc = tvb(16, 4):le_uint()
    local pt = tree:add_le(f.payload_crc, tvb(16, 4))
    local pgood = crc32(bytes, HEADER_LEN, meta_len + body_len) == pcrc
    pt:add(f.payload_crc_ok, tvb(16, 4), pgood)
    if not pgood then pt:add_proto_expert_info(e_payload_crc) end
    local hcrc = tvb(20, 4):le_uint()
    local ht = tree:add_le(f.header_crc, tvb(20, 4))
    local hgood = crc32(bytes, 0, 20) == hcrc
    ht:add(f.header_crc_ok, tvb(20, 4), hgood)
    if not hgood then ht:add_proto_expert_info(e_header_crc) end

    local response = band(flags, 0x01) ~= 0
    local more = band(flags, 0x02) ~= 0
    local is_error = band(flags, 0x04) ~= 0
    local name = kinds[kind] or string.format("kind 0x%02x", kind)
    local summary = name .. (response and " response" or (kind == 0x32 and "" or " request")) .. " #" .. id
    local detail
    if meta_len > 0 or is_error or response then
        local mt = tree:add(f.meta, tvb(HEADER_LEN, meta_len))
        local r = reader(tvb, HEADER_LEN, meta_len)
        local ok, res = pcall(function()
            if is_error then
                local code = add(mt, r, f.error_code, "varint")
                local msg = add(mt, r, f.error_message, "str")
                return "error " .. code .. " (" .. (errors[code] or "?") .. "): " .. msg
            end
            local l = layouts[kind]
            if not l then return nil end
            local fn
            if not response then fn = l.request
            elseif more then fn = l.more
            else fn = l.response end
            if fn then return fn(mt, r) end
            return nil
        end)
        if ok then detail = res else mt:add_proto_expert_info(e_meta, "Metadata does not decode: " .. tostring(res)) end
    end
    if body_len > 0 then
        local body = tvb(HEADER_LEN + meta_len, body_len)
        tree:add(f.body, body)
        local text = printable(body)
        if text then tree:add(f.text, body, text) end
    end
    if detail then summary = summary .. ": " .. detail end
    if not hgood or not pgood then summary = summary .. " [CRC mismatch]" end
    tree:append_text(", " .. summary)
    return summary, total
end

function set_info(pinfo, summaries)
    pinfo.cols.protocol = "Tether"
    pinfo.cols.info = table.concat(summaries, "; ")
end

-- TCP: walk the frames of the segment; when one continues in later segments, ask TCP to
-- reassemble (desegment_offset/len) and dissect it whole in the segment that completes it.
local function dissect_tcp(tvb, pinfo, root)
    local offset, len = 0, tvb:len()
    local summaries = {}
    while offset < len do
        local remain = len - offset
        if remain < HEADER_LEN then
            pinfo.desegment_offset = offset
            pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
            break
        end
        if tvb(offset, 2):uint() ~= 0xE754 then
            -- Not at a frame start (the capture began mid-stream, or garbage): mark the rest.
            local t = root:add(tether, tvb(offset))
            t:add_proto_expert_info(e_garbage)
            table.insert(summaries, "bytes that do not start a frame")
            break
        end
        local need = HEADER_LEN + tvb(offset + 6, 2):le_uint() + tvb(offset + 12, 4):le_uint()
        if remain < need then
            pinfo.desegment_offset = offset
            pinfo.desegment_len = need - remain
            break
        end
        local s = dissect_frame(tvb(offset, need):tvb(), pinfo, root)
        table.insert(summaries, s)
        offset = offset + need
    end
    if #summaries > 0 then
        set_info(pinfo, summaries)
    end
    return len
end

local function dissect_udp(tvb, pinfo, root)
    if tvb:len() < HEADER_LEN or tvb(0, 2):uint() ~= 0xE754 then
        return 0
    end
    local need = HEADER_LEN + tvb(6, 2):le_uint() + tvb(12, 4):le_uint()
    if need > tvb:len() then
        return 0
    end
    local s, total = dissect_frame(tvb(0, need):tvb(), pinfo, root)
    if tvb:len() > total then
        root:add(f.padding, tvb(total))
    end
    set_info(pinfo, { s })
    return tvb:len()
end

function tether.dissector(tvb, pinfo, root)
    -- port_type: 2 is TCP, 3 is UDP (epan's port_type enum).
    if pinfo.port_type == 2 then
        return dissect_tcp(tvb, pinfo, root)
    end
    return dissect_udp(tvb, pinfo, root)
end

DissectorTable.get("tcp.port"):add(7070, tether)
DissectorTable.get("udp.port"):add(7071, tether)
