//! Serial framing: every Tether frame travels as one COBS packet between zero delimiters.
//!
//! ```text
//! 00 | COBS(frame) | 00
//! ```
//!
//! COBS (Consistent Overhead Byte Stuffing) rewrites a frame so that it contains no zero byte, at a
//! cost of one byte per 254 (plus one); a zero on the line therefore always means "a packet ends
//! here". A lost, flipped or inserted byte damages the packet it hits (the frame's own CRCs then
//! reject it, or it is cut short), and the next delimiter resynchronises the receiver: nothing is
//! waited for, nothing of the next frame is swallowed. Each packet also *starts* with a delimiter,
//! so that a lost trailing delimiter (the last frame of a burst) is repaired by the next packet's
//! leading one instead of joining the two. Empty packets (two delimiters in a row) mean nothing.
//!
//! `docs/PROTOCOL.md` §17 specifies this with test vectors.
//!
//! - [`Encoder`]: a stream of whole Tether frames, handed over in any pieces, in; packets out. It
//!   finds the frame boundaries itself from the frame headers, so a driver can feed it whatever
//!   [`crate::session::Session::transmit`] or a host's frame writer produced.
//! - [`Unframer`]: line bytes in, one decoded packet at a time out.
//! - [`encode_packet`]: one frame into one packet, for tests and simple senders.

use crate::wire::header;
use crate::wire::HEADER_LEN;

/// The byte that delimits packets on the line.
pub const DELIMITER: u8 = 0;

/// The longest COBS group: a code byte and up to 254 data bytes.
const GROUP: usize = 254;

/// The most bytes [`encode_packet`] produces for a frame of `len` bytes: two delimiters, one code
/// byte per started group of 254.
pub const fn max_packet_len(len: usize) -> usize {
    len + len / GROUP + 3
}

/// Encodes one frame as a packet (`00 COBS(frame) 00`) into `out`; returns the packet's length, or
/// `None` if `out` is shorter than [`max_packet_len`] needs.
pub fn encode_packet(frame: &[u8], out: &mut [u8]) -> Option<usize> {
    if out.len() < max_packet_len(frame.len()) {
        return None;
    }
    // The streaming encoder, told where the bytes end rather than finding it from a header, so
    // that any bytes (not only frames) can be packed.
    let mut enc = Encoder::new();
    let mut n = 0;
    let mut take = |enc: &mut Encoder| {
        let p = enc.pending();
        out[n..n + p.len()].copy_from_slice(p);
        n += p.len();
        let k = p.len();
        enc.advance(k);
    };
    enc.begin_frame();
    for &b in frame {
        enc.stuff(b);
        take(&mut enc);
    }
    enc.end_frame();
    take(&mut enc);
    Some(n)
}

/// A streaming packet encoder for a sender of whole Tether frames.
///
/// Feed it the frames' bytes in any pieces with [`Encoder::feed`]; it queues encoded bytes one
/// group at a time ([`Encoder::pending`], at most 257 bytes) and the caller hands them to the line
/// and reports how many were taken with [`Encoder::advance`]. A frame's end is found from its
/// header's lengths; bytes that do not start with a valid header end their packet after the
/// header's 24 bytes (a sender bug, but the line stays in sync). About 560 bytes of state.
pub struct Encoder {
    head: [u8; HEADER_LEN],
    head_len: usize,
    /// Bytes of the current frame still to come after its header.
    left: u64,
    in_frame: bool,
    group: [u8; GROUP],
    group_len: usize,
    /// The last group emitted was a full one (code 0xFF) and nothing has followed it.
    after_full: bool,
    queue: [u8; GROUP + 3],
    queue_pos: usize,
    queue_len: usize,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder between frames.
    pub const fn new() -> Self {
        Encoder {
            head: [0; HEADER_LEN],
            head_len: 0,
            left: 0,
            in_frame: false,
            group: [0; GROUP],
            group_len: 0,
            after_full: false,
            queue: [0; GROUP + 3],
            queue_pos: 0,
            queue_len: 0,
        }
    }

    /// Encoded bytes waiting for the line.
    pub fn pending(&self) -> &[u8] {
        &self.queue[self.queue_pos..self.queue_len]
    }

    /// The line took `n` bytes of [`Encoder::pending`].
    pub fn advance(&mut self, n: usize) {
        self.queue_pos = (self.queue_pos + n).min(self.queue_len);
        if self.queue_pos == self.queue_len {
            self.queue_pos = 0;
            self.queue_len = 0;
        }
    }

    /// Whether the encoder sits between frames with nothing queued.
    pub fn is_idle(&self) -> bool {
        !self.in_frame && self.queue_len == 0
    }

    /// Whether a frame has been started and not yet finished.
    pub fn in_frame(&self) -> bool {
        self.in_frame
    }

    /// Takes frame bytes until something is queued (or `raw` runs out); returns how many it took.
    /// Takes nothing while [`Encoder::pending`] is not empty.
    pub fn feed(&mut self, raw: &[u8]) -> usize {
        let mut used = 0;
        while used < raw.len() && self.queue_len == 0 {
            if self.in_frame && self.head_len == HEADER_LEN && self.left > 1 {
                used += self.take_run(&raw[used..]);
            } else {
                self.push(raw[used]);
                used += 1;
            }
        }
        used
    }

    /// Takes body bytes a run at a time (a byte at a time cost about 47 instructions a byte on a
    /// Cortex-M4, docs/BENCHMARKS.md): the bytes up to the next zero, the group's end or the
    /// frame's last byte are copied at once, and a zero ends the group. The frame's last byte is
    /// left to [`Encoder::push`], which ends the packet. Returns how many bytes it took (at least 1).
    fn take_run(&mut self, raw: &[u8]) -> usize {
        let before_last = usize::try_from(self.left - 1).unwrap_or(usize::MAX);
        let span = raw.len().min(GROUP - self.group_len).min(before_last);
        let chunk = &raw[..span];
        let run = chunk.iter().position(|&b| b == 0).unwrap_or(span);
        self.group[self.group_len..self.group_len + run].copy_from_slice(&chunk[..run]);
        self.group_len += run;
        self.left -= run as u64;
        if run > 0 {
            self.after_full = false;
        }
        if self.group_len == GROUP {
            self.emit_group(0xFF);
            self.after_full = true;
            run
        } else if run < span {
            // The zero: it ends the group, which says where it stood.
            self.left -= 1;
            self.emit_group(self.group_len as u8 + 1);
            run + 1
        } else {
            run
        }
    }

    /// Ends the current frame where it stands (its sender gave up on it): the packet is closed,
    /// and the receiver will find it damaged and drop it.
    pub fn cut(&mut self) {
        if self.in_frame {
            self.end_frame();
        }
    }

    fn begin_frame(&mut self) {
        self.in_frame = true;
        self.head_len = 0;
        self.left = 0;
        self.queue_byte(DELIMITER);
    }

    fn push(&mut self, b: u8) {
        if !self.in_frame {
            self.begin_frame();
        }
        let end = if self.head_len < HEADER_LEN {
            self.head[self.head_len] = b;
            self.head_len += 1;
            if self.head_len == HEADER_LEN {
                self.left = match header::check(&self.head) {
                    Ok(Some(h)) => h.frame_len() - HEADER_LEN as u64,
                    _ => 0,
                };
            }
            self.head_len == HEADER_LEN && self.left == 0
        } else {
            self.left = self.left.saturating_sub(1);
            self.left == 0
        };
        self.stuff(b);
        if end {
            self.end_frame();
        }
    }

    /// One byte into the current COBS group.
    fn stuff(&mut self, b: u8) {
        if b == 0 {
            self.emit_group(self.group_len as u8 + 1);
        } else {
            self.group[self.group_len] = b;
            self.group_len += 1;
            self.after_full = false;
            if self.group_len == GROUP {
                self.emit_group(0xFF);
                self.after_full = true;
            }
        }
    }

    fn end_frame(&mut self) {
        if !(self.group_len == 0 && self.after_full) {
            self.emit_group(self.group_len as u8 + 1);
        }
        self.after_full = false;
        self.queue_byte(DELIMITER);
        self.in_frame = false;
    }

    fn emit_group(&mut self, code: u8) {
        self.queue_byte(code);
        let n = self.group_len;
        self.queue[self.queue_len..self.queue_len + n].copy_from_slice(&self.group[..n]);
        self.queue_len += n;
        self.group_len = 0;
        self.after_full = false;
    }

    fn queue_byte(&mut self, b: u8) {
        self.queue[self.queue_len] = b;
        self.queue_len += 1;
    }
}

/// One packet as the [`Unframer`] received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The decoded bytes (all of them if `lost` is 0).
    pub bytes: &'a [u8],
    /// Decoded bytes dropped because the packet was longer than the unframer holds.
    pub lost: usize,
    /// Whether the COBS encoding itself was intact (the last group complete). An intact packet
    /// may still hold a damaged frame: the frame's CRCs decide that.
    pub intact: bool,
}

/// A streaming packet decoder holding one packet of up to `N` decoded bytes.
///
/// [`Unframer::push`] takes line bytes up to the end of a packet; the packet is then available from
/// [`Unframer::packet`] until [`Unframer::next`] releases it. Empty packets are skipped.
pub struct Unframer<const N: usize> {
    buf: [u8; N],
    len: usize,
    lost: usize,
    /// Data bytes left in the current group; 0: the next byte is a code.
    run: u8,
    /// The previous group ended with an implied zero, to be written once another group follows.
    zero: bool,
    /// Any byte of the current packet arrived.
    started: bool,
    complete: bool,
}

impl<const N: usize> Default for Unframer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Unframer<N> {
    /// An unframer waiting for the first packet.
    pub const fn new() -> Self {
        Unframer {
            buf: [0; N],
            len: 0,
            lost: 0,
            run: 0,
            zero: false,
            started: false,
            complete: false,
        }
    }

    /// Takes line bytes until a packet is complete or `data` runs out; returns how many it took.
    /// Takes nothing while a complete packet waits to be released.
    pub fn push(&mut self, data: &[u8]) -> usize {
        if self.complete {
            return 0;
        }
        let mut i = 0;
        while let Some(&b) = data.get(i) {
            if b == DELIMITER {
                i += 1;
                if self.started {
                    self.complete = true;
                    return i;
                }
                continue;
            }
            self.started = true;
            if self.run == 0 {
                if self.zero {
                    self.put(&[0]);
                }
                self.run = b - 1;
                self.zero = b != 0xFF;
                i += 1;
            } else {
                // The group's data bytes a run at a time, up to its end or a delimiter (a byte at
                // a time, decoding cost about 29 instructions a byte on a Cortex-M4).
                let span = &data[i..data.len().min(i + usize::from(self.run))];
                let n = span.iter().position(|&b| b == DELIMITER).unwrap_or(span.len());
                self.put(&span[..n]);
                self.run -= n as u8;
                i += n;
            }
        }
        data.len()
    }

    /// Appends decoded bytes; those beyond `N` are counted as lost.
    fn put(&mut self, bytes: &[u8]) {
        let room = (N - self.len).min(bytes.len());
        self.buf[self.len..self.len + room].copy_from_slice(&bytes[..room]);
        self.len += room;
        self.lost += bytes.len() - room;
    }

    /// The complete packet, if one is waiting.
    pub fn packet(&self) -> Option<Packet<'_>> {
        self.complete.then(|| Packet {
            bytes: &self.buf[..self.len],
            lost: self.lost,
            intact: self.run == 0 && self.lost == 0,
        })
    }

    /// Bytes of a packet received so far and not yet complete.
    pub fn partial(&self) -> usize {
        if self.complete {
            0
        } else {
            self.len + self.lost
        }
    }

    /// Releases the complete packet; the next [`Unframer::push`] starts a new one.
    pub fn next(&mut self) {
        self.len = 0;
        self.lost = 0;
        self.run = 0;
        self.zero = false;
        self.started = false;
        self.complete = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn through_encoder(frames: &[&[u8]]) -> Vec<u8> {
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        for f in frames {
            let mut rest = *f;
            while !rest.is_empty() || !enc.pending().is_empty() {
                let n = enc.feed(rest);
                rest = &rest[n..];
                wire.extend_from_slice(enc.pending());
                let k = enc.pending().len();
                enc.advance(k);
            }
        }
        wire
    }

    /// An `Echo` request carrying `body`, and its packet as `encode_packet` (a byte at a time)
    /// makes it.
    fn echo_frame_and_packet(body: &[u8]) -> (Vec<u8>, Vec<u8>) {
        use crate::codec::encode_raw;
        use crate::wire::{FrameSpec, Kind};
        let mut frame = std::vec![0u8; body.len() + 64];
        let n = encode_raw(&mut frame, FrameSpec::request(Kind::Echo, 9), &[], body).unwrap();
        frame.truncate(n);
        let mut packet = std::vec![0u8; max_packet_len(n)];
        let k = encode_packet(&frame, &mut packet).unwrap();
        packet.truncate(k);
        (frame, packet)
    }

    /// A small deterministic generator of test input.
    fn xorshift(mut seed: u32) -> impl FnMut() -> u32 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        }
    }

    /// Frames of every length around the group size, with zeros sparse, dense and in runs, fed to
    /// the encoder in pieces of every size and taken from it in small bites: the packets are the
    /// byte-at-a-time `encode_packet`'s.
    #[test]
    fn the_encoder_in_any_pieces_matches_encode_packet() {
        let mut next = xorshift(0x2545_f491u32);
        for len in [
            0usize, 1, 2, 229, 230, 231, 253, 254, 255, 256, 507, 508, 509, 1000, 1400,
        ] {
            for zeros in [0u32, 1, 8, 50, 100] {
                let body: Vec<u8> = (0..len)
                    .map(|_| {
                        if next() % 100 < zeros {
                            0
                        } else {
                            (next() % 255 + 1) as u8
                        }
                    })
                    .collect();
                let (frame, one) = echo_frame_and_packet(&body);
                let (frame, k) = (&frame[..], one.len());
                for piece in [1usize, 2, 3, 7, 24, 25, 253, 254, 255, 4096] {
                    let mut enc = Encoder::new();
                    let (mut rest, mut wire) = (frame, Vec::new());
                    while !rest.is_empty() || !enc.pending().is_empty() {
                        let take = rest.len().min(piece);
                        let used = enc.feed(&rest[..take]);
                        rest = &rest[used..];
                        let bite = enc.pending().len().min(1 + next() as usize % 64);
                        wire.extend_from_slice(&enc.pending()[..bite]);
                        enc.advance(bite);
                    }
                    assert!(enc.is_idle());
                    assert_eq!(wire, &one[..k], "len {len}, zeros {zeros}%, pieces of {piece}");
                }
            }
        }
    }

    /// The unframer of before, a byte at a time: what [`Unframer::push`] must still do.
    fn unframe_bytewise(line: &[u8], cap: usize) -> Vec<(Vec<u8>, usize, bool)> {
        let (mut out, mut buf, mut lost) = (Vec::new(), Vec::new(), 0);
        let (mut run, mut zero, mut started) = (0u8, false, false);
        for &b in line {
            if b == 0 {
                if started {
                    out.push((core::mem::take(&mut buf), lost, run == 0 && lost == 0));
                    (lost, run, zero, started) = (0, 0, false, false);
                }
                continue;
            }
            started = true;
            let mut put = |x: u8| if buf.len() < cap { buf.push(x) } else { lost += 1 };
            if run == 0 {
                if zero {
                    put(0);
                }
                run = b - 1;
                zero = b != 0xFF;
            } else {
                put(b);
                run -= 1;
            }
        }
        out
    }

    /// Packets of every length, whole and damaged (bytes flipped, dropped, zeros put in), in pieces
    /// of every size, into an unframer that holds less than some of them: the packets, their lost
    /// counts and intact flags are those of the byte-at-a-time unframer.
    #[test]
    fn the_unframer_in_any_pieces_matches_a_bytewise_one() {
        let mut next = xorshift(0x9e37_79b9u32);
        for round in 0..200 {
            let mut line = Vec::new();
            for _ in 0..4 {
                let len = next() as usize % 700;
                let data: Vec<u8> = (0..len)
                    .map(|_| if next().is_multiple_of(9) { 0 } else { next() as u8 })
                    .collect();
                let mut p = std::vec![0u8; max_packet_len(len)];
                let k = encode_packet(&data, &mut p).unwrap();
                line.extend_from_slice(&p[..k]);
            }
            for _ in 0..round % 6 {
                let at = next() as usize % line.len();
                match next() % 3 {
                    0 => line[at] ^= 1 << (next() % 8),
                    1 => drop(line.remove(at)),
                    _ => line.insert(at, 0),
                }
            }
            let want = unframe_bytewise(&line, 512);
            for piece in [1usize, 2, 5, 64, 255, 256, 4096] {
                let mut un = Unframer::<512>::new();
                let (mut rest, mut got) = (&line[..], Vec::new());
                while !rest.is_empty() {
                    let n = un.push(&rest[..rest.len().min(piece)]);
                    rest = &rest[n..];
                    if let Some(p) = un.packet() {
                        got.push((p.bytes.to_vec(), p.lost, p.intact));
                        un.next();
                    }
                }
                assert_eq!(got, want, "round {round}, pieces of {piece}");
            }
        }
    }

    #[test]
    fn full_group_at_the_end_has_no_empty_group_after_it() {
        let data: Vec<u8> = (1..=254).collect();
        let mut out = [0u8; 300];
        let n = encode_packet(&data, &mut out).unwrap();
        assert_eq!(n, 254 + 3);
        assert_eq!(out[1], 0xFF);
        assert_eq!(out[n - 1], 0);
        let mut un = Unframer::<300>::new();
        assert_eq!(un.push(&out[..n]), n);
        assert_eq!(un.packet().unwrap().bytes, &data[..]);
    }

    #[test]
    fn encoder_matches_encode_packet_for_frames() {
        for len in [0usize, 1, 229, 230, 231, 253, 254, 255, 508, 600, 1000] {
            let body: Vec<u8> = (0..len)
                .map(|i| if i % 97 == 3 { 0 } else { (i % 251 + 1) as u8 })
                .collect();
            let (frame, one) = echo_frame_and_packet(&body);
            let (frame, k) = (&frame[..], one.len());
            assert_eq!(through_encoder(&[frame]), &one[..k], "len {len}");
            let mut un = Unframer::<2048>::new();
            assert_eq!(un.push(&one[..k]), k);
            let p = un.packet().unwrap();
            assert!(p.intact);
            assert_eq!(p.bytes, frame);
        }
    }
}
