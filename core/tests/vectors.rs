//! The test vectors of `docs/PROTOCOL.md`, section "Test vectors".
//!
//! Every vector is built here with the real encoder and compared with the hex printed in the
//! document, the document's hex is decoded and compared with what the document says it means, and
//! the document's hex blocks are compared with this list, so the two cannot drift apart.
//!
//! After a deliberate change of the format, regenerate the section with
//! `cargo test -p tether-core --test vectors -- --ignored --nocapture print_doc_section`,
//! paste it into the document and the hex constants below.

mod common;

use std::fmt::Write as _;

use common::{assert_document_holds, fenced_blocks, from_hex, to_hex, PROTOCOL};

use serde::Serialize;
use tether_core::codec::{encode, parse_datagram, DatagramError, Decoder, ReadError};
use tether_core::crc32;
use tether_core::msg::{
    Entry, ErrorInfo, Event, ExecDone, ExecRequest, FileDone, FwBegin, FwState, Get, GetData, Info, ListPage, NameRef,
    PutAck, PutBegin, PutData, PutReady, SlotInfo, Time, TimeGet,
};
use tether_core::wire::{DecodeError, ErrorCode, Flags, Frame, FrameSpec, Header, Kind, HEADER_LEN, VERSION};

// The hex blocks of docs/PROTOCOL.md, verbatim: 16 bytes a line, lower case.

const ECHO_REQUEST: &str = "\
e7 54 01 02 00 00 00 00 01 00 00 00 05 00 00 00
86 a6 10 36 3f 7c d2 65 68 65 6c 6c 6f";

const ECHO_RESPONSE: &str = "\
e7 54 01 02 01 00 00 00 01 00 00 00 05 00 00 00
86 a6 10 36 ae ed ba cb 68 65 6c 6c 6f";

const HELLO_RESPONSE: &str = "\
e7 54 01 01 01 00 29 00 02 00 00 00 00 00 00 00
d2 85 de 79 ab 2b 12 09 01 0a 74 65 74 68 65 72
2d 73 69 6d 80 20 d8 1f 04 80 80 40 80 20 c0 c4
07 02 03 6c 65 64 06 75 70 74 69 6d 65 9f 37 01
00";

const GET_REQUEST: &str = "\
e7 54 01 14 00 00 0a 00 03 00 00 00 00 00 00 00
bc 39 e0 dc f9 15 e1 9e 07 6c 6f 67 2e 74 78 74
ac 02";

const ERROR_NOT_FOUND: &str = "\
e7 54 01 14 05 00 17 00 03 00 00 00 00 00 00 00
c0 04 fa 52 c3 b9 87 82 06 15 6e 6f 20 73 75 63
68 20 66 69 6c 65 3a 20 6c 6f 67 2e 74 78 74";

const PUT_BEGIN: &str = "\
e7 54 01 10 00 00 2c 00 04 00 00 00 00 00 00 00
44 95 29 49 57 79 3a a5 09 68 65 6c 6c 6f 2e 74
78 74 05 2c f2 4d ba 5f b0 a3 0e 26 e8 3b 2a c5
b9 e2 9e 1b 16 1e 5c 1f a7 42 5e 73 04 33 62 93
8b 98 24 00";

const PUT_READY: &str = "\
e7 54 01 10 01 00 04 00 04 00 00 00 00 00 00 00
8d 8a c5 0f ac 93 24 84 00 80 08 04";

const PUT_DATA: &str = "\
e7 54 01 11 00 00 01 00 05 00 00 00 05 00 00 00
38 f0 f0 41 17 18 93 ba 00 68 65 6c 6c 6f";

const PUT_ACK: &str = "\
e7 54 01 11 01 00 01 00 05 00 00 00 00 00 00 00
02 1b 68 a2 b6 13 a1 e6 05";

const FILE_DONE: &str = "\
e7 54 01 12 01 00 21 00 06 00 00 00 00 00 00 00
52 b0 3e 8a 11 0d b5 c8 05 2c f2 4d ba 5f b0 a3
0e 26 e8 3b 2a c5 b9 e2 9e 1b 16 1e 5c 1f a7 42
5e 73 04 33 62 93 8b 98 24";

const GET_DATA_MORE: &str = "\
e7 54 01 14 03 00 01 00 07 00 00 00 05 00 00 00
38 f0 f0 41 f6 de ce 8b 00 68 65 6c 6c 6f";

const EXEC_REQUEST: &str = "\
e7 54 01 04 00 00 08 00 08 00 00 00 00 00 00 00
43 39 67 60 fd 1b 5c 71 03 6c 65 64 01 02 6f 6e";

const EXEC_DONE: &str = "\
e7 54 01 04 01 00 01 00 08 00 00 00 07 00 00 00
09 7c ca 94 e6 7f 26 58 01 6e 6f 20 6c 65 64 0a";

const LIST_PAGE: &str = "\
e7 54 01 15 01 00 16 00 09 00 00 00 00 00 00 00
46 55 1f 6e 5e e1 02 0f 02 09 68 65 6c 6c 6f 2e
74 78 74 05 07 6c 6f 67 2e 74 78 74 ac 02";

const TIME_GET: &str = "\
e7 54 01 20 00 00 01 00 0a 00 00 00 00 00 00 00
8d ef 02 d2 e2 f2 e9 4c 00";

const TIME_RESPONSE: &str = "\
e7 54 01 20 01 00 07 00 0a 00 00 00 13 00 00 00
86 03 6f 6d 3f 0b 03 14 80 d0 95 ff bc 31 01 32
30 32 33 2d 31 31 2d 31 34 20 32 32 3a 31 33 3a
32 30";

const EVENT: &str = "\
e7 54 01 32 00 00 05 00 00 00 00 00 02 00 00 00
ab c3 89 7f ec 4a 24 fa 03 6c 65 64 01 6f 6e";

const BAD_PAYLOAD_CRC: &str = "\
e7 54 01 02 00 00 00 00 01 00 00 00 05 00 00 00
86 a6 10 36 3f 7c d2 65 68 65 6c 6c 4f";

const BAD_HEADER_CRC: &str = "\
e7 54 01 02 00 00 00 00 01 00 00 00 45 00 00 00
86 a6 10 36 3f 7c d2 65 68 65 6c 6c 6f";

const TOO_LARGE: &str = "\
e7 54 01 11 00 00 01 00 0b 00 00 00 00 04 00 00
ed 57 3b 0e b4 b1 dd ec 00";

const UNSUPPORTED_VERSION: &str = "\
e7 54 02 02 00 00 00 00 0c 00 00 00 05 00 00 00
86 a6 10 36 b3 a0 fb 11 68 65 6c 6c 6f";

const FW_BEGIN: &str = "\
e7 54 01 51 00 00 22 00 14 00 00 00 00 00 00 00
48 b6 8a a4 72 59 15 93 90 02 6d 95 2d ca 0c 5f
ad 2f a2 fd 61 af 72 94 4c f9 42 4e 98 38 c7 cd
85 7f 8d a6 81 ca 94 53 63 c2";

const FW_STATE: &str = "\
e7 54 01 50 01 00 5a 00 15 00 00 00 00 00 00 00
61 0e 95 64 8e 61 01 b8 00 0a 74 65 74 68 65 72
2d 73 69 6d 05 05 01 02 03 05 90 02 6d 95 2d ca
0c 5f ad 2f a2 fd 61 af 72 94 4c f9 42 4e 98 38
c7 cd 85 7f 8d a6 81 ca 94 53 63 c2 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00";

const COALESCED: &str = "\
e7 54 01 03 00 00 00 00 0d 00 00 00 06 00 00 00
e8 34 bb 74 2e 54 be 99 74 65 74 68 65 72 e7 54
01 16 00 00 0a 00 0e 00 00 00 00 00 00 00 a9 99
f6 eb c5 6e e8 ce 09 68 65 6c 6c 6f 2e 74 78 74";

/// SHA-256 of the five bytes `hello`.
const SHA256_HELLO: [u8; 32] = [
    0x2c, 0xf2, 0x4d, 0xba, 0x5f, 0xb0, 0xa3, 0x0e, 0x26, 0xe8, 0x3b, 0x2a, 0xc5, 0xb9, 0xe2, 0x9e, 0x1b, 0x16, 0x1e,
    0x5c, 0x1f, 0xa7, 0x42, 0x5e, 0x73, 0x04, 0x33, 0x62, 0x93, 0x8b, 0x98, 0x24,
];

/// The decoder capacity the vectors are decoded with.
const LIMIT: usize = 1024;

/// Checks the typed metadata of a decoded frame.
type Check = Box<dyn Fn(&Frame<'_>)>;

/// One thing the decoder reports.
enum Outcome {
    Frame {
        kind: Kind,
        flags: Flags,
        request_id: u32,
        body: &'static [u8],
        check: Check,
    },
    Error(DecodeError),
}

/// A vector: bytes, how they are made, and what they mean.
struct Vector {
    /// Short name, used in the document's heading.
    name: &'static str,
    /// Heading text.
    title: &'static str,
    /// What the vector shows (Markdown).
    note: &'static str,
    /// The hex block of the document, verbatim.
    hex: &'static str,
    /// Zero bytes that follow the hex block on the wire but are too many to print.
    unprinted: usize,
    /// The bytes, built with the real encoder (unprinted tail included).
    bytes: Vec<u8>,
    /// For each frame on the wire, its metadata fields, each postcard-encoded on its own.
    metas: Vec<Vec<(String, Vec<u8>)>>,
    /// What a `Decoder<1024>` reports for the whole vector in one chunk, with the bytes it consumed.
    outcomes: Vec<(usize, Outcome)>,
}

/// Postcard encoding of one value.
fn pc<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut buf = [0u8; 1024];
    postcard::to_slice(value, &mut buf).expect("serialize").to_vec()
}

/// One metadata field: a label and the postcard encoding of the value alone.
fn field<T: Serialize + ?Sized>(label: &str, value: &T) -> (String, Vec<u8>) {
    (label.to_string(), pc(value))
}

/// A frame encoded with the real encoder.
fn frame<M: Serialize + ?Sized>(spec: FrameSpec, meta: &M, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN + 1024 + body.len()];
    let n = encode(&mut out, spec, meta, body).expect("encode");
    out.truncate(n);
    out
}

fn ok_frame(
    kind: Kind,
    flags: Flags,
    request_id: u32,
    body: &'static [u8],
    len: usize,
    check: Check,
) -> (usize, Outcome) {
    (
        len,
        Outcome::Frame {
            kind,
            flags,
            request_id,
            body,
            check,
        },
    )
}

fn no_meta() -> Check {
    Box::new(|f| assert_eq!(f.meta::<()>(), Ok(())))
}

fn vectors() -> Vec<Vector> {
    let rsp = Flags::RESPONSE;
    let more = Flags::RESPONSE | Flags::MORE;
    let mut v = Vec::new();

    v.push(Vector {
        name: "echo-request",
        title: "Echo request, body \"hello\"",
        note: "A request (flags 0) of kind Echo with request id 1, no metadata (`meta_len` 0) and the \
               5-byte body `hello`. `payload_crc` is CRC-32(\"hello\") = 0x3610a686.",
        hex: ECHO_REQUEST,
        unprinted: 0,
        bytes: frame(FrameSpec::request(Kind::Echo, 1), &(), b"hello"),
        metas: vec![vec![]],
        outcomes: vec![ok_frame(Kind::Echo, Flags::NONE, 1, b"hello", 29, no_meta())],
    });

    v.push(Vector {
        name: "echo-response",
        title: "Echo response",
        note: "The answer to the request above: same kind and request id, flag RESPONSE, same body. \
               Only byte 4 and the header CRC differ from the request.",
        hex: ECHO_RESPONSE,
        unprinted: 0,
        bytes: frame(FrameSpec::response(Kind::Echo, 1), &(), b"hello"),
        metas: vec![vec![]],
        outcomes: vec![ok_frame(Kind::Echo, rsp, 1, b"hello", 29, no_meta())],
    });

    let commands = || heapless::Vec::<&str, 16>::from_slice(&["led", "uptime"]).unwrap();
    let info = Info {
        version: 1,
        device: "tether-sim",
        max_frame: 4096,
        max_chunk: 4056,
        sessions: 4,
        storage_capacity: 1 << 20,
        storage_used: 4096,
        uptime_ms: 123_456,
        commands: commands(),
        udp_port: 7071,
        clock_synced: true,
        key_required: false,
    };
    v.push(Vector {
        name: "hello-response",
        title: "Hello response (Info)",
        note: "The device's answer to a Hello request with request id 2. Shows varints of one to three bytes \
               (4096 = `80 20`, 1048576 = `80 80 40`, 123456 = `c0 c4 07`) and a list of strings \
               (count, then each string as length + UTF-8). A client sizes its frames from `max_frame`; `max_chunk` is \
               `max_frame` − 40, as a device without a key advertises it (§11.1). The last field, `key_required` (`00`), says the device \
               has no key: anyone who can reach it can change it.",
        hex: HELLO_RESPONSE,
        unprinted: 0,
        bytes: frame(FrameSpec::response(Kind::Hello, 2), &info, b""),
        metas: vec![vec![
            field("version = 1 (u8, one raw byte)", &1u8),
            field("device = \"tether-sim\" (len 10 + UTF-8)", "tether-sim"),
            field("max_frame = 4096 (varint)", &4096u32),
            field("max_chunk = 4056 (varint)", &4056u32),
            field("sessions = 4 (u8)", &4u8),
            field("storage_capacity = 1048576 (varint)", &(1u64 << 20)),
            field("storage_used = 4096 (varint)", &4096u64),
            field("uptime_ms = 123456 (varint)", &123_456u64),
            field("commands = [\"led\", \"uptime\"] (count 2, then strings)", &commands()),
            field("udp_port = 7071 (varint)", &7071u16),
            field("clock_synced = true (bool, one byte)", &true),
            field("key_required = false (bool, one byte)", &false),
        ]],
        outcomes: vec![ok_frame(
            Kind::Hello,
            rsp,
            2,
            b"",
            65,
            Box::new(|f| {
                let info = f.meta::<Info>().unwrap();
                assert_eq!(
                    (info.version, info.device, info.max_frame, info.max_chunk, info.sessions),
                    (1, "tether-sim", 4096, 4056, 4)
                );
                assert_eq!(
                    (info.storage_capacity, info.storage_used, info.uptime_ms),
                    (1 << 20, 4096, 123_456)
                );
                assert_eq!(info.commands.as_slice(), &["led", "uptime"]);
                assert_eq!((info.udp_port, info.clock_synced), (7071, true));
            }),
        )],
    });

    v.push(Vector {
        name: "get-request",
        title: "Get request with postcard metadata",
        note: "Download `log.txt` from offset 300, request id 3. Metadata `Get { name, offset }`: \
               the string as varint length 7 + UTF-8, then 300 as the varint `ac 02`.",
        hex: GET_REQUEST,
        unprinted: 0,
        bytes: frame(
            FrameSpec::request(Kind::Get, 3),
            &Get {
                name: "log.txt",
                offset: 300,
            },
            b"",
        ),
        metas: vec![vec![
            field("name = \"log.txt\" (len 7 + UTF-8)", "log.txt"),
            field("offset = 300 (varint)", &300u64),
        ]],
        outcomes: vec![ok_frame(
            Kind::Get,
            Flags::NONE,
            3,
            b"",
            34,
            Box::new(|f| {
                assert_eq!(
                    f.meta::<Get>(),
                    Ok(Get {
                        name: "log.txt",
                        offset: 300
                    })
                )
            }),
        )],
    });

    v.push(Vector {
        name: "error-not-found",
        title: "Error response: NotFound",
        note: "The device's answer to the Get above when the file does not exist: flags RESPONSE | ERROR \
               (0x05), metadata `ErrorInfo { code: 6 (NotFound), message }`, empty body.",
        hex: ERROR_NOT_FOUND,
        unprinted: 0,
        bytes: frame(
            FrameSpec::error(Kind::Get, 3),
            &ErrorInfo {
                code: ErrorCode::NotFound as u16,
                message: "no such file: log.txt",
            },
            b"",
        ),
        metas: vec![vec![
            field("code = 6 NotFound (varint)", &6u16),
            field(
                "message = \"no such file: log.txt\" (len 21 + UTF-8)",
                "no such file: log.txt",
            ),
        ]],
        outcomes: vec![ok_frame(
            Kind::Get,
            Flags::RESPONSE | Flags::ERROR,
            3,
            b"",
            47,
            Box::new(|f| {
                assert_eq!(
                    f.error(),
                    Some(ErrorInfo {
                        code: 6,
                        message: "no such file: log.txt"
                    })
                )
            }),
        )],
    });

    let put_begin = PutBegin {
        name: "hello.txt",
        size: 5,
        sha256: SHA256_HELLO,
        overwrite: false,
    };
    v.push(Vector {
        name: "put-begin",
        title: "PutBegin request",
        note: "Start uploading the 5-byte file `hello.txt` whose content is `hello`, request id 4. The \
               SHA-256 digest is 32 raw bytes with no length prefix; `overwrite` is one byte.",
        hex: PUT_BEGIN,
        unprinted: 0,
        bytes: frame(FrameSpec::request(Kind::PutBegin, 4), &put_begin, b""),
        metas: vec![vec![
            field("name = \"hello.txt\" (len 9 + UTF-8)", "hello.txt"),
            field("size = 5 (varint)", &5u64),
            field("sha256 = SHA-256(\"hello\") (32 raw bytes)", &SHA256_HELLO),
            field("overwrite = false", &false),
        ]],
        outcomes: vec![ok_frame(
            Kind::PutBegin,
            Flags::NONE,
            4,
            b"",
            68,
            Box::new(move |f| assert_eq!(f.meta::<PutBegin>(), Ok(put_begin))),
        )],
    });

    v.push(Vector {
        name: "put-ready",
        title: "PutReady response",
        note: "The device accepts the upload: start at offset 0, chunks of at most 1024 body bytes, up to 4 \
               PutData frames in flight.",
        hex: PUT_READY,
        unprinted: 0,
        bytes: frame(
            FrameSpec::response(Kind::PutBegin, 4),
            &PutReady {
                offset: 0,
                chunk: 1024,
                window: 4,
            },
            b"",
        ),
        metas: vec![vec![
            field("offset = 0 (varint)", &0u64),
            field("chunk = 1024 (varint)", &1024u32),
            field("window = 4 (varint)", &4u16),
        ]],
        outcomes: vec![ok_frame(
            Kind::PutBegin,
            rsp,
            4,
            b"",
            28,
            Box::new(|f| {
                assert_eq!(
                    f.meta::<PutReady>(),
                    Ok(PutReady {
                        offset: 0,
                        chunk: 1024,
                        window: 4
                    })
                )
            }),
        )],
    });

    v.push(Vector {
        name: "put-data",
        title: "PutData request",
        note: "The one chunk of the upload, request id 5: metadata `PutData { offset: 0 }`, body = the chunk.",
        hex: PUT_DATA,
        unprinted: 0,
        bytes: frame(FrameSpec::request(Kind::PutData, 5), &PutData { offset: 0 }, b"hello"),
        metas: vec![vec![field("offset = 0 (varint)", &0u64)]],
        outcomes: vec![ok_frame(
            Kind::PutData,
            Flags::NONE,
            5,
            b"hello",
            30,
            Box::new(|f| assert_eq!(f.meta::<PutData>(), Ok(PutData { offset: 0 }))),
        )],
    });

    v.push(Vector {
        name: "put-ack",
        title: "PutAck response",
        note: "Acknowledges the chunk: 5 bytes received so far.",
        hex: PUT_ACK,
        unprinted: 0,
        bytes: frame(FrameSpec::response(Kind::PutData, 5), &PutAck { received: 5 }, b""),
        metas: vec![vec![field("received = 5 (varint)", &5u64)]],
        outcomes: vec![ok_frame(
            Kind::PutData,
            rsp,
            5,
            b"",
            25,
            Box::new(|f| assert_eq!(f.meta::<PutAck>(), Ok(PutAck { received: 5 }))),
        )],
    });

    v.push(Vector {
        name: "file-done",
        title: "FileDone response to PutCommit",
        note: "The answer to `PutCommit { name: \"hello.txt\" }` (request id 6): the file as stored. The \
               same message ends a Get stream.",
        hex: FILE_DONE,
        unprinted: 0,
        bytes: frame(
            FrameSpec::response(Kind::PutCommit, 6),
            &FileDone {
                size: 5,
                sha256: SHA256_HELLO,
            },
            b"",
        ),
        metas: vec![vec![
            field("size = 5 (varint)", &5u64),
            field("sha256 (32 raw bytes)", &SHA256_HELLO),
        ]],
        outcomes: vec![ok_frame(
            Kind::PutCommit,
            rsp,
            6,
            b"",
            57,
            Box::new(|f| {
                assert_eq!(
                    f.meta::<FileDone>(),
                    Ok(FileDone {
                        size: 5,
                        sha256: SHA256_HELLO
                    })
                )
            }),
        )],
    });

    v.push(Vector {
        name: "get-data-more",
        title: "GetData stream frame (flag MORE)",
        note: "One chunk of a download (request id 7): flags RESPONSE | MORE (0x03), metadata \
               `GetData { offset: 0 }`, body = the chunk. The stream ends with a FileDone frame without MORE.",
        hex: GET_DATA_MORE,
        unprinted: 0,
        bytes: frame(FrameSpec::more(Kind::Get, 7), &GetData { offset: 0 }, b"hello"),
        metas: vec![vec![field("offset = 0 (varint)", &0u64)]],
        outcomes: vec![ok_frame(
            Kind::Get,
            more,
            7,
            b"hello",
            30,
            Box::new(|f| assert_eq!(f.meta::<GetData>(), Ok(GetData { offset: 0 }))),
        )],
    });

    let args = || heapless::Vec::<&str, 8>::from_slice(&["on"]).unwrap();
    v.push(Vector {
        name: "exec-request",
        title: "Exec request",
        note: "Run the command `led` with the one argument `on`, request id 8.",
        hex: EXEC_REQUEST,
        unprinted: 0,
        bytes: frame(
            FrameSpec::request(Kind::Exec, 8),
            &ExecRequest {
                command: "led",
                args: args(),
            },
            b"",
        ),
        metas: vec![vec![
            field("command = \"led\" (len 3 + UTF-8)", "led"),
            field("args = [\"on\"] (count 1, then strings)", &args()),
        ]],
        outcomes: vec![ok_frame(
            Kind::Exec,
            Flags::NONE,
            8,
            b"",
            32,
            Box::new(move |f| {
                assert_eq!(
                    f.meta::<ExecRequest>(),
                    Ok(ExecRequest {
                        command: "led",
                        args: args()
                    })
                )
            }),
        )],
    });

    v.push(Vector {
        name: "exec-done",
        title: "ExecDone: last frame of an Exec response, negative status",
        note: "The last frame of the Exec response (MORE clear): `ExecDone { status: -1 }`, an `i32` \
               zig-zag encoded (-1 -> 1), and the last piece of output `no led\\n` in the body (the \
               reference device sends its output in MORE frames and this one empty; clients accept both).",
        hex: EXEC_DONE,
        unprinted: 0,
        bytes: frame(
            FrameSpec::response(Kind::Exec, 8),
            &ExecDone { status: -1 },
            b"no led\n",
        ),
        metas: vec![vec![field("status = -1 (zig-zag varint)", &-1i32)]],
        outcomes: vec![ok_frame(
            Kind::Exec,
            rsp,
            8,
            b"no led\n",
            32,
            Box::new(|f| assert_eq!(f.meta::<ExecDone>(), Ok(ExecDone { status: -1 }))),
        )],
    });

    let entries = || {
        heapless::Vec::<Entry, 8>::from_slice(&[
            Entry {
                name: "hello.txt",
                size: 5,
            },
            Entry {
                name: "log.txt",
                size: 300,
            },
        ])
        .unwrap()
    };
    v.push(Vector {
        name: "list-page",
        title: "ListPage response (last page)",
        note: "The only (so last: MORE clear) page of a List response, request id 9, two entries. A list \
               of structs is a count followed by the structs' fields.",
        hex: LIST_PAGE,
        unprinted: 0,
        bytes: frame(
            FrameSpec::response(Kind::List, 9),
            &ListPage { entries: entries() },
            b"",
        ),
        metas: vec![vec![
            field("entries: count = 2 (varint)", &2u32),
            field("[0].name = \"hello.txt\"", "hello.txt"),
            field("[0].size = 5", &5u64),
            field("[1].name = \"log.txt\"", "log.txt"),
            field("[1].size = 300", &300u64),
        ]],
        outcomes: vec![ok_frame(
            Kind::List,
            rsp,
            9,
            b"",
            46,
            Box::new(move |f| assert_eq!(f.meta::<ListPage>(), Ok(ListPage { entries: entries() }))),
        )],
    });

    v.push(Vector {
        name: "time-get",
        title: "TimeGet request (UDP datagram)",
        note: "Sent alone in one UDP datagram to port 7071, request id 10: `TimeGet { format: \"\" }`, \
               the empty string (one byte `00`) meaning the default format `%Y-%m-%d %H:%M:%S`.",
        hex: TIME_GET,
        unprinted: 0,
        bytes: frame(FrameSpec::request(Kind::TimeGet, 10), &TimeGet { format: "" }, b""),
        metas: vec![vec![field("format = \"\" (len 0)", "")]],
        outcomes: vec![ok_frame(
            Kind::TimeGet,
            Flags::NONE,
            10,
            b"",
            25,
            Box::new(|f| assert_eq!(f.meta::<TimeGet>(), Ok(TimeGet { format: "" }))),
        )],
    });

    v.push(Vector {
        name: "time-response",
        title: "TimeGet response (UDP datagram)",
        note: "The reply datagram: `Time { unix_ms: 1700000000000, synced: true }` and the formatted time as \
               the body.",
        hex: TIME_RESPONSE,
        unprinted: 0,
        bytes: frame(
            FrameSpec::response(Kind::TimeGet, 10),
            &Time {
                unix_ms: 1_700_000_000_000,
                synced: true,
            },
            b"2023-11-14 22:13:20",
        ),
        metas: vec![vec![
            field("unix_ms = 1700000000000 (varint)", &1_700_000_000_000u64),
            field("synced = true (bool)", &true),
        ]],
        outcomes: vec![ok_frame(
            Kind::TimeGet,
            rsp,
            10,
            b"2023-11-14 22:13:20",
            50,
            Box::new(|f| {
                assert_eq!(
                    f.meta::<Time>(),
                    Ok(Time {
                        unix_ms: 1_700_000_000_000,
                        synced: true
                    })
                )
            }),
        )],
    });

    v.push(Vector {
        name: "event",
        title: "Event pushed by the device",
        note: "Not a response: flags 0 and request id 0. `Event { topic: \"led\", seq: 1 }`, body `on`.",
        hex: EVENT,
        unprinted: 0,
        bytes: frame(
            FrameSpec::request(Kind::Event, 0),
            &Event { topic: "led", seq: 1 },
            b"on",
        ),
        metas: vec![vec![
            field("topic = \"led\" (len 3 + UTF-8)", "led"),
            field("seq = 1 (varint)", &1u32),
        ]],
        outcomes: vec![ok_frame(
            Kind::Event,
            Flags::NONE,
            0,
            b"on",
            31,
            Box::new(|f| assert_eq!(f.meta::<Event>(), Ok(Event { topic: "led", seq: 1 }))),
        )],
    });

    let mut bytes = frame(FrameSpec::request(Kind::Echo, 1), &(), b"hello");
    bytes[28] = b'O';
    v.push(Vector {
        name: "bad-payload-crc",
        title: "Bad payload CRC",
        note: "The Echo request of the first vector with its last body byte changed from `o` (0x6f) to `O` \
               (0x4f). The header is intact, so the receiver knows the frame's extent: it drops exactly \
               the 29 bytes of the frame and reports BadCrc (error code 2) for request id 1.",
        hex: BAD_PAYLOAD_CRC,
        unprinted: 0,
        bytes,
        metas: vec![vec![]],
        outcomes: vec![(
            29,
            Outcome::Error(DecodeError::PayloadCrc {
                kind: Kind::Echo,
                request_id: 1,
            }),
        )],
    });

    let mut bytes = frame(FrameSpec::request(Kind::Echo, 1), &(), b"hello");
    bytes[12] ^= 0x40;
    v.push(Vector {
        name: "bad-header-crc",
        title: "Bad header CRC",
        note: "The Echo request of the first vector with bit 6 of byte 12 flipped, so `body_len` reads 69 \
               instead of 5. The header CRC no longer matches, so no length field is trusted: the receiver \
               does not wait for 69 body bytes but drops bytes up to the next possible magic. There is \
               none in these 29 bytes, so all 29 are dropped (`HeaderCrc { skipped: 29 }`). A receiver that \
               had only the 24 header bytes buffered reports `skipped: 24`, then drops the 5 body bytes as \
               garbage.",
        hex: BAD_HEADER_CRC,
        unprinted: 0,
        bytes,
        metas: vec![vec![]],
        outcomes: vec![(29, Outcome::Error(DecodeError::HeaderCrc { skipped: 29 }))],
    });

    v.push(Vector {
        name: "too-large",
        title: "Frame larger than the receiver's limit",
        note: "A PutData request (request id 11) with a 1024-byte body of zeros: 24 + 1 + 1024 = 1049 \
               bytes, more than a 1024-byte decoder accepts. Only the header and metadata are printed; \
               **1024 bytes `00` follow on the wire**. The decoder refuses the frame as soon as it has the \
               24 header bytes (`TooLarge { declared: 1049, limit: 1024 }`, error code 3) and then discards \
               exactly 1049 - 24 = 1025 further bytes without buffering them; the next frame starts right \
               after. Fed as one chunk, all 1049 bytes are consumed at once.",
        hex: TOO_LARGE,
        unprinted: 1024,
        bytes: frame(
            FrameSpec::request(Kind::PutData, 11),
            &PutData { offset: 0 },
            &[0u8; 1024],
        ),
        metas: vec![vec![field("offset = 0 (varint)", &0u64)]],
        outcomes: vec![(
            1049,
            Outcome::Error(DecodeError::TooLarge {
                declared: 1049,
                limit: LIMIT,
                kind: Kind::PutData,
                request_id: 11,
            }),
        )],
    });

    let mut bytes = vec![0u8; 29];
    Header {
        version: 2,
        kind: Kind::Echo,
        flags: Flags::NONE,
        request_id: 12,
        meta_len: 0,
        body_len: 5,
        payload_crc: crc32::checksum(b"hello"),
    }
    .emit(&mut bytes);
    bytes[24..].copy_from_slice(b"hello");
    v.push(Vector {
        name: "unsupported-version",
        title: "Unsupported protocol version",
        note: "An Echo request (request id 12) from a peer speaking version 2. The header CRC is valid, so \
               a version-1 receiver trusts the lengths, skips exactly the declared 29 bytes and reports \
               UnsupportedVersion (error code 4) for request id 12.",
        hex: UNSUPPORTED_VERSION,
        unprinted: 0,
        bytes,
        metas: vec![vec![]],
        outcomes: vec![(
            29,
            Outcome::Error(DecodeError::UnsupportedVersion {
                version: 2,
                kind: Kind::Echo,
                request_id: 12,
            }),
        )],
    });

    let mut bytes = frame(FrameSpec::request(Kind::Upper, 13), &(), b"tether");
    bytes.extend(frame(
        FrameSpec::request(Kind::Stat, 14),
        &NameRef { name: "hello.txt" },
        b"",
    ));
    v.push(Vector {
        name: "coalesced",
        title: "Two frames coalesced in one chunk",
        note: "An Upper request (request id 13, body `tether`) immediately followed by a Stat request \
               (request id 14, `NameRef { name: \"hello.txt\" }`), as one TCP read may deliver them. The \
               second frame starts at offset 0x1e, right after the first one's 30 bytes; the decoder \
               returns both, in order.",
        hex: COALESCED,
        unprinted: 0,
        bytes,
        metas: vec![vec![], vec![field("name = \"hello.txt\" (len 9 + UTF-8)", "hello.txt")]],
        outcomes: vec![
            ok_frame(Kind::Upper, Flags::NONE, 13, b"tether", 30, no_meta()),
            ok_frame(
                Kind::Stat,
                Flags::NONE,
                14,
                b"",
                34,
                Box::new(|f| assert_eq!(f.meta::<NameRef>(), Ok(NameRef { name: "hello.txt" }))),
            ),
        ],
    });

    // The image of PROTOCOL.md §18.5 (F3): 272 bytes, this image hash.
    let image_hash: [u8; 32] = from_hex("6d952dca0c5fad2fa2fd61af72944cf9424e9838c7cd857f8da681ca945363c2")
        .try_into()
        .unwrap();
    let fw_begin = FwBegin {
        size: 272,
        hash: image_hash,
    };
    v.push(Vector {
        name: "fw-begin",
        title: "FwBegin request",
        note: "Start uploading the signed image of §18.5 (F3, 272 bytes) into the slot that is not running, \
               request id 20. The upload is named by the image hash, the header's `hash` field; the device \
               answers `PutReady` as for a file.",
        hex: FW_BEGIN,
        unprinted: 0,
        bytes: frame(FrameSpec::request(Kind::FwBegin, 20), &fw_begin, b""),
        metas: vec![vec![
            field("size = 272 (varint)", &272u64),
            field("hash = the image hash (32 raw bytes)", &image_hash),
        ]],
        outcomes: vec![ok_frame(
            Kind::FwBegin,
            Flags::NONE,
            20,
            b"",
            58,
            Box::new(move |f| assert_eq!(f.meta::<FwBegin>(), Ok(fw_begin))),
        )],
    });

    let slot0 = SlotInfo {
        state: 5,
        major: 1,
        minor: 2,
        patch: 3,
        security_counter: 5,
        size: 272,
        hash: image_hash,
    };
    let slot1 = SlotInfo {
        state: 0,
        major: 0,
        minor: 0,
        patch: 0,
        security_counter: 0,
        size: 0,
        hash: [0; 32],
    };
    let state = FwState {
        running: 0,
        board: "tether-sim",
        floor: 5,
        slots: [slot0, slot1],
    };
    v.push(Vector {
        name: "fw-state",
        title: "FwState response",
        note: "The answer to an `FwStatus` request with request id 21: slot 0 runs the image of §18.5, active \
               (state 5); slot 1 is empty (state 0, zeros). The two `SlotInfo` follow each other with no \
               count.",
        hex: FW_STATE,
        unprinted: 0,
        bytes: frame(FrameSpec::response(Kind::FwStatus, 21), &state, b""),
        metas: vec![vec![
            field("running = 0 (u8)", &0u8),
            field("board = \"tether-sim\" (len 10 + UTF-8)", "tether-sim"),
            field("floor = 5 (varint)", &5u32),
            field("slots[0].state = 5 active (u8)", &5u8),
            field("slots[0].major, minor, patch = 1, 2, 3 (varints)", &(1u16, 2u16, 3u16)),
            field("slots[0].security_counter = 5 (varint)", &5u32),
            field("slots[0].size = 272 (varint)", &272u32),
            field("slots[0].hash (32 raw bytes)", &image_hash),
            field("slots[1].state = 0 empty (u8)", &0u8),
            field("slots[1].major, minor, patch = 0, 0, 0", &(0u16, 0u16, 0u16)),
            field("slots[1].security_counter = 0", &0u32),
            field("slots[1].size = 0", &0u32),
            field("slots[1].hash = zeros (32 raw bytes)", &[0u8; 32]),
        ]],
        outcomes: vec![ok_frame(
            Kind::FwStatus,
            rsp,
            21,
            b"",
            114,
            Box::new(move |f| assert_eq!(f.meta::<FwState>(), Ok(state))),
        )],
    });

    v
}

/// The wire bytes of a vector as the document gives them: the hex block and the unprinted zeros.
fn doc_bytes(v: &Vector) -> Vec<u8> {
    let mut bytes = from_hex(v.hex);
    bytes.resize(bytes.len() + v.unprinted, 0);
    bytes
}

/// A decoded item, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Frame {
        kind: Kind,
        flags: Flags,
        request_id: u32,
        meta: Vec<u8>,
        body: Vec<u8>,
    },
    Error(DecodeError),
}

impl Item {
    fn of(frame: &Frame<'_>) -> Item {
        Item::Frame {
            kind: frame.kind(),
            flags: frame.flags(),
            request_id: frame.request_id(),
            meta: frame.meta.to_vec(),
            body: frame.body.to_vec(),
        }
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// PROTOCOL.md §1: a UDP request is its frame followed by zero padding; V15 padded to the full
/// datagram reads as V15, and any non-zero byte in the padding makes it no frame at all.
#[test]
fn a_padded_datagram_holds_its_frame() {
    let frame = from_hex(TIME_GET);
    let mut datagram = frame.clone();
    datagram.resize(tether_core::msg::MAX_DATAGRAM, 0);
    assert_eq!(datagram.len() - frame.len(), 999);
    let got = parse_datagram(&datagram, LIMIT).expect("a padded datagram");
    assert_eq!(got, parse_datagram(&frame, LIMIT).unwrap());
    assert_eq!(got.meta::<TimeGet>(), Ok(TimeGet { format: "" }));
    for at in [frame.len(), 500, datagram.len() - 1] {
        let mut bad = datagram.clone();
        bad[at] = 1;
        assert_eq!(parse_datagram(&bad, LIMIT), Err(DatagramError::Trailing), "byte {at}");
    }
    // The response V16 is larger than the bare request, so the device answers only padded ones.
    assert_eq!(
        (frame.len(), from_hex(TIME_RESPONSE).len()),
        (25, 50),
        "the sizes §1 states"
    );
}

#[test]
fn crc_parameters() {
    assert_eq!(crc32::checksum(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32::checksum(b"hello"), 0x3610_a686);
}

#[test]
fn the_encoder_produces_the_documented_bytes() {
    for v in vectors() {
        assert_eq!(v.bytes, doc_bytes(&v), "vector {}", v.name);
        // The literal is in canonical form, so the document's block is too.
        assert_eq!(
            v.hex,
            to_hex(&v.bytes[..v.bytes.len() - v.unprinted]),
            "vector {}",
            v.name
        );
    }
}

#[test]
fn the_documented_bytes_decode_to_their_meaning() {
    for v in vectors() {
        let bytes = doc_bytes(&v);
        let mut dec = Decoder::<LIMIT>::new();
        let mut input = &bytes[..];
        let mut expected = v.outcomes.iter();
        loop {
            let (used, item) = dec.decode(input);
            input = &input[used..];
            let Some(item) = item else { break };
            let (consumed, outcome) = expected
                .next()
                .unwrap_or_else(|| panic!("vector {}: extra item", v.name));
            assert_eq!(used, *consumed, "vector {}: bytes consumed", v.name);
            match (item, outcome) {
                (
                    Ok(frame),
                    Outcome::Frame {
                        kind,
                        flags,
                        request_id,
                        body,
                        check,
                    },
                ) => {
                    assert_eq!(
                        (frame.kind(), frame.flags(), frame.request_id(), frame.body),
                        (*kind, *flags, *request_id, *body),
                        "vector {}",
                        v.name
                    );
                    assert_eq!(frame.header.version, VERSION);
                    check(&frame);
                    if !frame.flags().contains(Flags::ERROR) {
                        assert_eq!(frame.error(), None);
                    }
                }
                (Err(error), Outcome::Error(want)) => assert_eq!(error, *want, "vector {}", v.name),
                (got, _) => panic!("vector {}: unexpected {got:?}", v.name),
            }
        }
        assert!(expected.next().is_none(), "vector {}: missing items", v.name);
        assert!(input.is_empty() && dec.is_idle(), "vector {}", v.name);
    }
}

#[test]
fn metadata_is_the_concatenation_of_its_fields() {
    for v in vectors() {
        let mut at = 0;
        for fields in &v.metas {
            let meta_len = u16::from_le_bytes([v.bytes[at + 6], v.bytes[at + 7]]) as usize;
            let body_len = le32(&v.bytes, at + 12) as usize;
            let meta = &v.bytes[at + HEADER_LEN..at + HEADER_LEN + meta_len];
            let concat: Vec<u8> = fields.iter().flat_map(|(_, b)| b.iter().copied()).collect();
            assert_eq!(concat, meta, "vector {}", v.name);
            at += HEADER_LEN + meta_len + body_len;
        }
        if v.name != "bad-header-crc" {
            assert_eq!(at, v.bytes.len(), "vector {}", v.name);
        }
    }
}

/// Frames (errors aside) do not depend on how the bytes arrive.
#[test]
fn the_vectors_decode_alike_byte_by_byte_and_through_read_frame() {
    for v in vectors() {
        let bytes = doc_bytes(&v);
        let whole: Vec<Item> = decode_chunks(&bytes, bytes.len());
        let single: Vec<Item> = decode_chunks(&bytes, 1);
        let mut dec = Decoder::<LIMIT>::new();
        let mut reader = &bytes[..];
        let mut read = Vec::new();
        loop {
            match dec.read_frame(&mut reader) {
                Ok(frame) => read.push(Item::of(&frame)),
                Err(ReadError::Decode(e)) => read.push(Item::Error(e)),
                Err(ReadError::Eof) => break,
                Err(e) => panic!("vector {}: {e:?}", v.name),
            }
        }
        let frames = |items: &[Item]| -> Vec<Item> {
            items
                .iter()
                .filter(|i| matches!(i, Item::Frame { .. }))
                .cloned()
                .collect()
        };
        assert_eq!(frames(&single), frames(&whole), "vector {}", v.name);
        assert_eq!(frames(&read), frames(&whole), "vector {}", v.name);
        if v.name != "bad-header-crc" {
            assert_eq!(single, whole, "vector {}", v.name);
            assert_eq!(read, whole, "vector {}", v.name);
        } else {
            let rest = Item::Error(DecodeError::Garbage { skipped: 5 });
            assert_eq!(read, [Item::Error(DecodeError::HeaderCrc { skipped: 24 }), rest]);
        }
    }
}

fn decode_chunks(bytes: &[u8], size: usize) -> Vec<Item> {
    let mut dec = Decoder::<LIMIT>::new();
    let mut items = Vec::new();
    for chunk in bytes.chunks(size) {
        let mut input = chunk;
        loop {
            let (used, item) = dec.decode(input);
            input = &input[used..];
            match item {
                Some(Ok(frame)) => items.push(Item::of(&frame)),
                Some(Err(e)) => items.push(Item::Error(e)),
                None => break,
            }
        }
    }
    assert!(dec.is_idle());
    items
}

/// The oversized vector is skipped without buffering and does not disturb the next frame.
#[test]
fn the_too_large_vector_is_stepped_over() {
    let v = vectors().into_iter().find(|v| v.name == "too-large").unwrap();
    let mut bytes = doc_bytes(&v);
    bytes.extend(from_hex(ECHO_REQUEST));
    for size in [1, 7, 24, 100, 2000] {
        let items = decode_chunks(&bytes, size);
        assert_eq!(items.len(), 2);
        assert!(matches!(
            items[0],
            Item::Error(DecodeError::TooLarge {
                declared: 1049,
                limit: LIMIT,
                ..
            })
        ));
        assert!(matches!(&items[1], Item::Frame { body, .. } if body == b"hello"));
    }
}

/// Every ```hex block of the document is one of the vectors above, and every vector is in it.
/// V3 is an answer a device could give: its `max_chunk` follows §11.1 (`max_frame` − 40 on a
/// device without a key), as the reference device computes it.
#[test]
fn the_hello_vector_follows_the_max_chunk_rule() {
    use tether_core::service::ramstore::RamStore;
    use tether_core::service::{Device, DeviceConfig};
    let bytes = from_hex(HELLO_RESPONSE);
    let frame = parse_datagram(&bytes, LIMIT).unwrap();
    let info = frame.meta::<Info>().unwrap();
    assert_eq!(info.max_chunk, info.max_frame - 40);
    let mut mem = vec![0u8; 1024];
    let config = DeviceConfig {
        name: "tether-sim",
        window: 4,
    };
    let device = Device::new(
        config,
        RamStore::<1>::new(&mut mem),
        &[],
        (),
        info.max_frame as usize,
        4,
    );
    assert_eq!(info.max_chunk as usize, device.max_chunk());
}

#[test]
fn the_document_and_these_tests_agree() {
    let vectors = vectors();
    let named: Vec<(&str, &str)> = vectors.iter().map(|v| (v.name, v.hex)).collect();
    assert_document_holds("hex", &named);
    assert!(fenced_blocks(PROTOCOL, "hex").len() >= 8);
}

fn flag_names(flags: u8) -> String {
    let names: Vec<&str> = [(0x01, "RESPONSE"), (0x02, "MORE"), (0x04, "ERROR")]
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    if names.is_empty() {
        "none: a request".to_string()
    } else {
        names.join(" | ")
    }
}

fn printable(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.chars()
        .all(|c| c == '\n' || (' '..='~').contains(&c))
        .then(|| format!("{text:?}"))
}

/// The field-by-field breakdown of a vector, offsets in hex.
fn annotate(v: &Vector) -> String {
    let printed = &v.bytes[..v.bytes.len() - v.unprinted];
    let mut out = String::from("offset  bytes                                            field\n");
    fn row(out: &mut String, at: usize, bytes: &[u8], label: &str) {
        for (i, line) in bytes.chunks(16).enumerate() {
            let hex = line.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
            let label = if i == 0 { label } else { "" };
            let line = format!("0x{:04x}  {hex:<47}  {label}", at + 16 * i);
            writeln!(out, "{}", line.trim_end()).unwrap();
        }
    }
    let mut at = 0;
    for fields in &v.metas {
        let h = &printed[at..at + HEADER_LEN];
        let meta_len = u16::from_le_bytes([h[6], h[7]]) as usize;
        let body_len = le32(h, 12) as usize;
        let kind = Kind::from(h[3]);
        let header_crc = crc32::checksum(&h[..20]);
        let header_ok = header_crc == le32(h, 20);
        row(&mut out, at, &h[0..2], "magic");
        row(&mut out, at + 2, &h[2..3], &format!("version = {}", h[2]));
        row(&mut out, at + 3, &h[3..4], &format!("kind = 0x{:02x} {kind:?}", h[3]));
        row(
            &mut out,
            at + 4,
            &h[4..5],
            &format!("flags = 0x{:02x} ({})", h[4], flag_names(h[4])),
        );
        row(&mut out, at + 5, &h[5..6], "reserved");
        row(&mut out, at + 6, &h[6..8], &format!("meta_len = {meta_len}"));
        row(&mut out, at + 8, &h[8..12], &format!("request_id = {}", le32(h, 8)));
        row(&mut out, at + 12, &h[12..16], &format!("body_len = {body_len}"));
        let end = (at + HEADER_LEN + meta_len + body_len).min(v.bytes.len());
        let payload_crc = crc32::checksum(&v.bytes[at + HEADER_LEN..end]);
        let stored = le32(h, 16);
        let note = if !header_ok {
            String::new()
        } else if payload_crc == stored {
            " = CRC-32(meta || body)".to_string()
        } else {
            format!(" != CRC-32(meta || body) = 0x{payload_crc:08x}: WRONG")
        };
        row(
            &mut out,
            at + 16,
            &h[16..20],
            &format!("payload_crc = 0x{stored:08x}{note}"),
        );
        let note = if header_ok {
            " = CRC-32(bytes 0..20)".to_string()
        } else {
            format!(" != CRC-32(bytes 0..20) = 0x{header_crc:08x}: WRONG")
        };
        row(
            &mut out,
            at + 20,
            &h[20..24],
            &format!("header_crc = 0x{:08x}{note}", le32(h, 20)),
        );
        at += HEADER_LEN;
        if !header_ok {
            // The lengths cannot be trusted: show what follows as raw bytes.
            row(&mut out, at, &printed[at..], "(rest: not a trusted payload)");
            break;
        }
        for (label, bytes) in fields {
            row(&mut out, at, bytes, &format!("meta: {label}"));
            at += bytes.len();
        }
        let body_end = (at + body_len).min(printed.len());
        let body = &printed[at..body_end];
        if !body.is_empty() {
            let label = match printable(body) {
                Some(text) => format!("body = {text}"),
                None => format!("body ({} bytes)", body.len()),
            };
            row(&mut out, at, body, &label);
        }
        if body_end - at < body_len {
            let missing = body_len - (body_end - at);
            writeln!(
                out,
                "0x{body_end:04x}  {:<47}  body: {missing} bytes 00 (not printed)",
                ".."
            )
            .unwrap();
        }
        at += body_len;
    }
    out
}

fn describe(consumed: usize, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Frame {
            kind,
            flags,
            request_id,
            body,
            ..
        } => format!(
            "frame: kind {kind:?}, flags 0x{:02x}, request_id {request_id}, body of {} bytes; {consumed} bytes consumed",
            flags.0,
            body.len()
        ),
        Outcome::Error(error) => format!(
            "`{error:?}` (error code {:?} = {}); {consumed} bytes consumed",
            error.code(),
            error.code() as u16
        ),
    }
}

/// Prints the "Test vectors" subsections of docs/PROTOCOL.md.
#[test]
#[ignore = "generator: run with --ignored --nocapture to print the document section"]
fn print_doc_section() {
    let mut out = String::new();
    for (i, v) in vectors().iter().enumerate() {
        writeln!(out, "### V{}. {} (`{}`)\n", i + 1, v.title, v.name).unwrap();
        writeln!(out, "{}\n", v.note).unwrap();
        writeln!(
            out,
            "```hex\n{}\n```\n",
            to_hex(&v.bytes[..v.bytes.len() - v.unprinted])
        )
        .unwrap();
        writeln!(out, "```text\n{}```\n", annotate(v)).unwrap();
        writeln!(out, "`Decoder<1024>` given the whole vector as one chunk reports:\n").unwrap();
        for (consumed, outcome) in &v.outcomes {
            writeln!(out, "- {}", describe(*consumed, outcome)).unwrap();
        }
        writeln!(out).unwrap();
    }
    println!("{out}");
    println!("---- Rust constants ----");
    for v in vectors() {
        let name = v.name.to_uppercase().replace('-', "_");
        println!(
            "const {name}: &str = \"\\\n{}\";\n",
            to_hex(&v.bytes[..v.bytes.len() - v.unprinted])
        );
    }
}
