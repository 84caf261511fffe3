//! The serial driver over in-memory UARTs: framing faults, slow UARTs, the async front end.

use std::collections::VecDeque;
use std::convert::Infallible;

use tether_core::codec::{encode_raw, parse_datagram};
use tether_core::serial::framing::{encode_packet, max_packet_len, Unframer};
use tether_core::serial::Serial;
use tether_core::service::ramstore::RamStore;
use tether_core::service::{Device, DeviceConfig};
use tether_core::session::Limits;
use tether_core::wire::{ErrorCode, Flags, FrameSpec, Kind};

const N: usize = 1024;

/// A UART in memory: `rx` is what the peer sent, `tx` what the device wrote. It accepts at most
/// `per_poll` bytes a poll in each direction (`reset_budget` starts a poll).
struct FakeUart {
    rx: VecDeque<u8>,
    tx: Vec<u8>,
    per_poll: usize,
    read_left: usize,
    write_left: usize,
}

impl FakeUart {
    fn new(per_poll: usize) -> Self {
        FakeUart {
            rx: VecDeque::new(),
            tx: Vec::new(),
            per_poll,
            read_left: per_poll,
            write_left: per_poll,
        }
    }
    fn reset_budget(&mut self) {
        self.read_left = self.per_poll;
        self.write_left = self.per_poll;
    }
}

impl embedded_io::ErrorType for FakeUart {
    type Error = Infallible;
}
impl embedded_io::Read for FakeUart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.rx.len()).min(self.read_left);
        for b in &mut buf[..n] {
            *b = self.rx.pop_front().unwrap();
        }
        self.read_left -= n;
        Ok(n)
    }
}
impl embedded_io::ReadReady for FakeUart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(!self.rx.is_empty() && self.read_left > 0)
    }
}
impl embedded_io::Write for FakeUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.write_left);
        self.tx.extend_from_slice(&buf[..n]);
        self.write_left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}
impl embedded_io::WriteReady for FakeUart {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.write_left > 0)
    }
}

fn echo_frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; body.len() + 64];
    let n = encode_raw(&mut f, FrameSpec::request(Kind::Echo, id), &[], body).unwrap();
    f.truncate(n);
    f
}

fn packet(frame: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; max_packet_len(frame.len())];
    let n = encode_packet(frame, &mut p).unwrap();
    p.truncate(n);
    p
}

/// A frame the device wrote: kind, request id, whether it is an error, body.
type Answer = (Kind, u32, bool, Vec<u8>);

/// Every frame the device wrote.
fn responses(wire: &[u8]) -> Vec<Answer> {
    let (frames, partial) = frames_in(wire);
    assert_eq!(partial, 0, "the device ends every packet");
    frames
}

/// Hands every complete packet in `wire` to `each`; returns how many bytes of an unfinished
/// packet follow them.
fn packets(wire: &[u8], mut each: impl FnMut(&[u8])) -> usize {
    let mut un = Unframer::<8192>::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let n = un.push(rest);
        rest = &rest[n..];
        if let Some(p) = un.packet() {
            each(p.bytes);
            un.next();
        }
    }
    un.partial()
}

/// The complete frames in `wire`, and how many bytes of an unfinished packet follow them.
fn frames_in(wire: &[u8]) -> (Vec<Answer>, usize) {
    let mut out = Vec::new();
    let partial = packets(wire, |bytes| {
        let f = parse_datagram(bytes, N).expect("the device's packets are intact");
        out.push((
            f.kind(),
            f.request_id(),
            f.flags().contains(Flags::ERROR),
            f.body.to_vec(),
        ));
    });
    (out, partial)
}

/// The device every test serves: one session, a small RAM store in `mem`.
fn device(mem: &mut [u8]) -> Device<'static, (), RamStore<'_, 2>> {
    let config = DeviceConfig {
        name: "serial-test",
        window: 4,
    };
    Device::new(config, RamStore::new(mem), &[], (), N, 1)
}

/// Runs `wire` through a fresh device's serial driver; polls until nothing moves. Time stands
/// still at 0 ms: whatever recovers, recovers without waiting for any deadline.
fn serve(wire: &[u8], per_poll: usize) -> (Vec<u8>, u32, u32) {
    let mut mem = vec![0u8; 8192];
    let mut device = device(&mut mem);
    let mut serial = Serial::<N>::new(Limits::default());
    let mut uart = FakeUart::new(per_poll);
    uart.rx.extend(wire.iter().copied());
    let mut quiet = 0;
    for _ in 0..(wire.len() * 4 + 10_000) {
        uart.reset_budget();
        let moved = serial.poll(0, &mut uart, &mut device).unwrap();
        quiet = if moved { 0 } else { quiet + 1 };
        if quiet > 2 && uart.rx.is_empty() {
            break;
        }
    }
    assert!(uart.rx.is_empty(), "the driver read everything");
    (
        uart.tx,
        device.stats.sessions_opened,
        device.stats.sessions_closed_by_device,
    )
}

fn bodies(k: u32) -> Vec<Vec<u8>> {
    (0..k)
        .map(|i| {
            (0..(20 + i as usize * 7))
                .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8))
                .collect()
        })
        .collect()
}

#[test]
fn clean_frames_are_answered_in_order_through_a_one_byte_uart() {
    let b = bodies(3);
    let mut wire = Vec::new();
    for (i, body) in b.iter().enumerate() {
        wire.extend(packet(&echo_frame(i as u32 + 1, body)));
    }
    for per_poll in [1, 3, 64, usize::MAX] {
        let (tx, opened, closed) = serve(&wire, per_poll);
        let got = responses(&tx);
        assert_eq!(got.len(), 3, "per_poll {per_poll}");
        for (i, (kind, id, err, body)) in got.iter().enumerate() {
            assert_eq!((*kind, *id, *err), (Kind::Echo, i as u32 + 1, false));
            assert_eq!(body, &b[i]);
        }
        assert_eq!((opened, closed), (1, 0));
    }
}

#[test]
fn a_large_answer_crosses_a_one_byte_uart_intact() {
    let body: Vec<u8> = (0..900u32).map(|i| (i % 7) as u8).collect(); // many zero bytes
    let wire = packet(&echo_frame(5, &body));
    let (tx, _, _) = serve(&wire, 1);
    let got = responses(&tx);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].3, body);
}

/// The fault test: every single lost, flipped or inserted byte at every position of a sequence of
/// frames. Asserted: no wrong answer is ever delivered; at most the frame hit and one neighbour
/// go unanswered; the probe frame after the sequence is always answered with time standing
/// still, and the session is never dropped.
#[test]
fn any_single_byte_fault_costs_at_most_two_frames_and_the_link_recovers_at_once() {
    const K: u32 = 4;
    let b = bodies(K + 1);
    let mut frames = Vec::new();
    let mut wire = Vec::new();
    for i in 0..K {
        frames.push(wire.len());
        wire.extend(packet(&echo_frame(i + 1, &b[i as usize])));
    }
    let probe = packet(&echo_frame(K + 1, &b[K as usize]));
    let mut cases = 0;
    for pos in 0..wire.len() {
        let mut damaged: Vec<Vec<u8>> = Vec::new();
        let mut lost = wire.clone();
        lost.remove(pos);
        damaged.push(lost);
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut flipped = wire.clone();
            flipped[pos] ^= mask;
            damaged.push(flipped);
        }
        let mut zeroed = wire.clone();
        zeroed[pos] = 0;
        damaged.push(zeroed);
        for extra in [0x00u8, 0x01, 0x55, 0xE7] {
            let mut inserted = wire.clone();
            inserted.insert(pos, extra);
            damaged.push(inserted);
        }
        for mut w in damaged {
            cases += 1;
            w.extend_from_slice(&probe);
            let (tx, opened, closed) = serve(&w, 64);
            assert_eq!((opened, closed), (1, 0), "pos {pos}: the session stays");
            let got = responses(&tx);
            let mut answered = Vec::new();
            for (kind, id, err, body) in &got {
                if *err || *kind != Kind::Echo {
                    continue;
                }
                assert!((1..=K + 1).contains(id), "pos {pos}: answer to an unknown id {id}");
                assert_eq!(
                    body,
                    &b[*id as usize - 1],
                    "pos {pos}: id {id} answered with a wrong body"
                );
                answered.push(*id);
            }
            assert!(
                answered.contains(&(K + 1)),
                "pos {pos}: the probe after the fault is answered"
            );
            let missing: Vec<u32> = (1..=K).filter(|i| !answered.contains(i)).collect();
            assert!(missing.len() <= 2, "pos {pos}: lost {missing:?}");
            if missing.len() == 2 {
                assert_eq!(
                    missing[1],
                    missing[0] + 1,
                    "pos {pos}: only neighbours are lost together"
                );
            }
        }
    }
    assert!(cases > 1000);
}

#[test]
fn a_frame_cut_short_is_answered_with_an_error_for_its_request() {
    let full = echo_frame(9, &[7u8; 100]);
    let mut wire = packet(&full[..60]);
    wire.extend(packet(&echo_frame(10, b"after")));
    let (tx, _, _) = serve(&wire, 64);
    let got = responses(&tx);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].0, got[0].1, got[0].2), (Kind::Echo, 9, true));
    assert_eq!((got[1].1, got[1].2, &got[1].3[..]), (10, false, &b"after"[..]));
}

/// PROTOCOL.md §17: a packet is served only when its decoded length is its frame's length. One
/// that holds more — a frame and trailing bytes, or two whole frames — is dropped whole at its
/// delimiter (nothing of it served) and answered `Malformed` for the first frame's request.
#[test]
fn a_packet_longer_than_its_frame_is_dropped_whole() {
    let mut trailing = echo_frame(1, b"one");
    trailing.extend_from_slice(b"junk");
    let mut two = echo_frame(2, b"two");
    two.extend(echo_frame(3, b"three"));
    let mut wire = packet(&trailing);
    wire.extend(packet(&two));
    wire.extend(packet(&echo_frame(4, b"after")));
    let (tx, opened, closed) = serve(&wire, 64);
    let got = responses(&tx);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!((got[0].0, got[0].1, got[0].2), (Kind::Echo, 1, true));
    assert_eq!((got[1].0, got[1].1, got[1].2), (Kind::Echo, 2, true));
    let mut un = Unframer::<N>::new();
    let mut rest = &tx[..];
    let mut messages = Vec::new();
    while !rest.is_empty() {
        rest = &rest[un.push(rest)..];
        if let Some(p) = un.packet() {
            if let Some(e) = parse_datagram(p.bytes, N).unwrap().error() {
                messages.push((e.code, e.message.to_string()));
            }
            un.next();
        }
    }
    let malformed = (ErrorCode::Malformed as u16, "packet longer than its frame".to_string());
    assert_eq!(messages, [malformed.clone(), malformed]);
    assert_eq!((got[2].1, got[2].2, &got[2].3[..]), (4, false, &b"after"[..]));
    assert_eq!((opened, closed), (1, 0), "the session goes on");
}

#[test]
fn power_up_noise_is_skipped() {
    let mut wire: Vec<u8> = (0..300u32).map(|i| (i * 37 % 256) as u8).collect();
    wire.extend(packet(&echo_frame(1, b"hello")));
    let (tx, _, _) = serve(&wire, 64);
    let got = responses(&tx);
    let ok: Vec<_> = got.iter().filter(|r| !r.2).collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].3, b"hello");
}

#[test]
fn async_driver_serves_under_tokio() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (device_end, mut host_end) = tokio::io::duplex(64);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let server = tokio::spawn(async move {
            let mut mem = vec![0u8; 8192];
            let mut device = device(&mut mem);
            let mut serial = Serial::<N>::new(Limits::default());
            let mut uart = embedded_io_adapters::tokio_1::FromTokio::new(device_end);
            let start = std::time::Instant::now();
            let clock = move || start.elapsed().as_millis() as u64;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match tokio::time::timeout(
                    std::time::Duration::from_millis(50),
                    serial.serve_async(&clock, &mut uart, &mut device),
                )
                .await
                {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) | Err(_) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
                    Ok(Err(e)) => panic!("{e:?}"),
                }
            }
            device.stats.sessions_opened
        });
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let b = bodies(3);
        let mut wire = Vec::new();
        for (i, body) in b.iter().enumerate() {
            wire.extend(packet(&echo_frame(i as u32 + 1, body)));
        }
        host_end.write_all(&wire).await.unwrap();
        let mut got_wire = Vec::new();
        let mut buf = [0u8; 256];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while frames_in(&got_wire).0.len() < 3 {
            let n = tokio::time::timeout_at(deadline, host_end.read(&mut buf))
                .await
                .expect("answers in time")
                .unwrap();
            got_wire.extend_from_slice(&buf[..n]);
        }
        let got = responses(&got_wire);
        for (i, r) in got.iter().enumerate() {
            assert_eq!((r.1, r.2, &r.3), (i as u32 + 1, false, &b[i]));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let opened = tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(opened, 1);
    });
}

/// A refused handshake over a serial line: the peer reads the refusal before the session is
/// dropped (a TCP peer gets a reset instead; a serial line has none, so without the answer the
/// client would only see a timeout).
#[cfg(feature = "secure")]
#[test]
fn a_refused_handshake_on_a_serial_line_is_answered_before_the_session_is_dropped() {
    use tether_core::secure::{Handshake, Lock, Psk, MSG1_LEN};
    let mut mem = vec![0u8; 8192];
    let mut device = device(&mut mem);
    device.require_key(Lock::new(Psk::from_bytes([1; 32]), [2; 32]));
    let mut wrong =
        Handshake::with_fixed_ephemeral(tether_core::secure::Role::Initiator, &Psk::from_bytes([3; 32]), [4; 32]);
    let mut m1 = [0u8; MSG1_LEN];
    wrong.write_message(&mut m1).unwrap();
    let mut f = vec![0u8; 128];
    let n = encode_raw(&mut f, FrameSpec::request(Kind::Handshake, 7), &[], &m1).unwrap();
    let mut serial = Serial::<N>::new(Limits::default());
    // A slow UART: the refusal takes many polls to leave.
    let mut uart = FakeUart::new(3);
    uart.rx.extend(packet(&f[..n]));
    for _ in 0..2000 {
        uart.reset_budget();
        serial.poll(0, &mut uart, &mut device).unwrap();
    }
    let answers = responses(&uart.tx);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!((answers[0].0, answers[0].1, answers[0].2), (Kind::Handshake, 7, true));
    assert_eq!(device.stats.auth_failures, 1, "and the session was dropped");
}

/// A keyed device on a serial line, driven packet by packet.
#[cfg(feature = "secure")]
struct KeyedLine {
    device: Device<'static, (), RamStore<'static, 2>>,
    serial: Serial<N>,
    uart: FakeUart,
}

#[cfg(feature = "secure")]
impl KeyedLine {
    const KEY: [u8; 32] = [5; 32];

    fn new() -> KeyedLine {
        use tether_core::secure::{Lock, Psk};
        let mut device = device(Box::leak(vec![0u8; 8192].into_boxed_slice()));
        device.require_key(Lock::new(Psk::from_bytes(Self::KEY), [6; 32]));
        KeyedLine {
            device,
            serial: Serial::new(Limits::default()),
            uart: FakeUart::new(usize::MAX),
        }
    }

    /// Sends `bytes` as they are; returns the packets the device wrote back, decoded.
    fn send_raw(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.uart.rx.extend(bytes.iter().copied());
        let from = self.uart.tx.len();
        for _ in 0..100 {
            self.uart.reset_budget();
            self.serial.poll(0, &mut self.uart, &mut self.device).unwrap();
        }
        let mut un = Unframer::<N>::new();
        let mut rest = &self.uart.tx[from..];
        let mut packets = Vec::new();
        while !rest.is_empty() {
            rest = &rest[un.push(rest)..];
            if let Some(p) = un.packet() {
                packets.push(p.bytes.to_vec());
                un.next();
            }
        }
        packets
    }

    /// Sends one frame as a packet.
    fn send(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        self.send_raw(&packet(frame))
    }

    /// A completed handshake (request id `id`): the client's channel.
    fn handshake(&mut self, id: u32) -> tether_core::secure::Channel {
        use tether_core::secure::{Handshake, Psk, Role, MSG1_LEN};
        let mut hs = Handshake::with_fixed_ephemeral(Role::Initiator, &Psk::from_bytes(Self::KEY), [id as u8; 32]);
        let mut m1 = [0u8; MSG1_LEN];
        hs.write_message(&mut m1).unwrap();
        let mut f = vec![0u8; 128];
        let n = encode_raw(&mut f, FrameSpec::request(Kind::Handshake, id), &[], &m1).unwrap();
        let m2 = self.send(&f[..n]);
        hs.read_message(parse_datagram(&m2[0], N).unwrap().body).unwrap();
        hs.into_channel().unwrap()
    }
}

/// Seals `inner` on `channel`.
#[cfg(feature = "secure")]
fn seal(channel: &mut tether_core::secure::Channel, inner: &[u8]) -> Vec<u8> {
    let mut sealed = vec![0u8; inner.len() + 64];
    let n = channel.seal(inner, &mut sealed).unwrap();
    sealed.truncate(n);
    sealed
}

/// On a sealed serial session, a sealed frame cut short is answered with a sealed `Malformed`
/// whose inner frame names no request (kind `0x00`, id 0), as a damaged one is (PROTOCOL.md §16.6):
/// the outer kind `Sealed` is not an inner kind, and a client must refuse an inner `Sealed` frame.
#[cfg(feature = "secure")]
#[test]
fn a_sealed_frame_cut_short_is_answered_with_an_error_a_client_can_open() {
    let mut line = KeyedLine::new();
    let mut channel = line.handshake(1);
    let sealed = seal(&mut channel, &echo_frame(2, b"sealed"));
    let answers = line.send(&sealed[..sealed.len() - 10]);
    assert_eq!(answers.len(), 1);
    let outer = parse_datagram(&answers[0], N).unwrap();
    let mut plain = vec![0u8; outer.body.len()];
    let inner = channel.open(&outer, &mut plain).expect("an answer the client can open");
    assert_eq!((inner.kind(), inner.request_id()), (Kind::Unknown(0), 0));
    assert_eq!(inner.error().map(|e| e.code), Some(ErrorCode::Malformed as u16));
    // The session goes on.
    let answers = line.send(&seal(&mut channel, &echo_frame(3, b"again")));
    let outer = parse_datagram(&answers[0], N).unwrap();
    let inner = channel.open(&outer, &mut plain).unwrap();
    assert_eq!((inner.request_id(), inner.body), (3, &b"again"[..]));
}

/// PROTOCOL.md §16.3: on a serial line "the session ends" means the device forgets it and starts
/// a new, locked one on the line at once: a tampered sealed frame is not answered, the next frame
/// sealed under the old keys is refused in the clear (`Unauthorized`), a `Hello` is answered in
/// the clear and a new handshake opens a new session.
#[cfg(feature = "secure")]
#[test]
fn a_serial_session_that_ends_starts_over_locked() {
    let mut line = KeyedLine::new();
    let mut channel = line.handshake(1);
    let mut tampered = seal(&mut channel, &echo_frame(2, b"x"));
    let header = tether_core::codec::parse_frame(&tampered, N).unwrap().header;
    let last = tampered.len() - 1;
    tampered[last] ^= 1; // the tag, with the CRCs made right again: an attack, not damage
    let payload_crc = tether_core::crc32::checksum(&tampered[24..]);
    tether_core::wire::Header { payload_crc, ..header }.emit(&mut tampered);
    assert!(line.send(&tampered).is_empty(), "nothing is said");
    assert_eq!(line.device.stats.auth_failures, 1);
    // The next frame under the old keys reaches the new, locked session: refused in the clear,
    // as any request before a handshake, which tells the peer to start over.
    let answers = line.send(&seal(&mut channel, &echo_frame(3, b"old keys")));
    let refused = parse_datagram(&answers[0], N).unwrap();
    assert_eq!((refused.kind(), refused.request_id()), (Kind::Sealed, 0));
    assert_eq!(refused.error().map(|e| e.code), Some(ErrorCode::Unauthorized as u16));
    let hello = {
        let mut f = vec![0u8; 64];
        let n = tether_core::codec::encode(
            &mut f,
            FrameSpec::request(Kind::Hello, 4),
            &tether_core::msg::Hello { client: "next" },
            &[],
        )
        .unwrap();
        f.truncate(n);
        f
    };
    let answers = line.send(&hello);
    let info = parse_datagram(&answers[0], N).unwrap();
    assert!(info.meta::<tether_core::msg::Info<'_>>().unwrap().key_required);
    let mut channel = line.handshake(5);
    let answers = line.send(&seal(&mut channel, &echo_frame(6, b"new keys")));
    let outer = parse_datagram(&answers[0], N).unwrap();
    let mut plain = vec![0u8; outer.body.len()];
    assert_eq!(channel.open(&outer, &mut plain).unwrap().body, b"new keys");
    assert_eq!(line.device.stats.sessions_opened, 2);
}

/// Serves `wire` on `serial` and `device` with a slow UART (64 bytes a poll each way) for `polls`
/// polls; returns what the device wrote.
fn serve_for<const M: usize>(
    serial: &mut Serial<M>,
    device: &mut Device<'static, (), RamStore<'_, 2>>,
    uart: &mut FakeUart,
    wire: &[u8],
    polls: usize,
) {
    uart.rx.extend(wire.iter().copied());
    for _ in 0..polls {
        uart.reset_budget();
        serial.poll(0, uart, device).unwrap();
    }
}

/// The intact frames in `wire` (packets cut short or damaged are skipped, as a host drops them):
/// kind, request id, error flag, data bytes (a `Get` chunk's body), frame length.
fn intact_frames(wire: &[u8]) -> Vec<(Kind, u32, bool, usize, usize)> {
    let mut out = Vec::new();
    packets(wire, |bytes| {
        if let Ok(f) = parse_datagram(bytes, 8192) {
            let error = f.flags().contains(Flags::ERROR);
            out.push((f.kind(), f.request_id(), error, f.body.len(), bytes.len()));
        }
    });
    out
}

/// A host that lost a frame of a download (or whose user pressed Ctrl-C) sends its next request;
/// on a line nothing else could stop the stream, which would hold the line for the rest of the
/// file. The device ends the stream and answers the new request at once; and its stream frames
/// stay small on a line, whatever its largest frame.
#[test]
fn a_new_request_on_the_line_supersedes_the_stream_in_progress() {
    use tether_core::service::files::{Owner, Storage};
    const BIG: usize = 4096;
    const SIZE: usize = 64 * 1024;
    let mut mem = vec![0u8; 2 * SIZE];
    let config = DeviceConfig {
        name: "serial-test",
        window: 4,
    };
    let mut device = Device::new(config, RamStore::<2>::new(&mut mem), &[], (), BIG, 1);
    let owner = Owner(99);
    device
        .storage
        .begin("big.bin", owner, SIZE as u64, &[0; 32], false)
        .unwrap();
    device.storage.write("big.bin", owner, 0, &[0x5a; SIZE]).unwrap();
    device.storage.commit("big.bin", owner).unwrap();
    let mut serial = Serial::<BIG>::new(Limits::default());
    let mut uart = FakeUart::new(64);
    let mut get = vec![0u8; 128];
    let meta = tether_core::msg::Get {
        name: "big.bin",
        offset: 0,
    };
    let n = tether_core::codec::encode(&mut get, FrameSpec::request(Kind::Get, 1), &meta, &[]).unwrap();
    // 100 polls of 64 bytes: a few KiB of the stream are out.
    serve_for(&mut serial, &mut device, &mut uart, &packet(&get[..n]), 100);
    let before = uart.tx.len();
    assert!(before > 2000 && before < SIZE / 4, "{before} bytes out");
    serve_for(
        &mut serial,
        &mut device,
        &mut uart,
        &packet(&echo_frame(2, b"stop")),
        2000,
    );
    let frames = intact_frames(&uart.tx);
    let echo = frames
        .iter()
        .position(|f| f.0 == Kind::Echo && f.1 == 2 && !f.2)
        .unwrap_or_else(|| panic!("the echo is answered: {frames:?}"));
    let data: usize = frames.iter().filter(|f| f.0 == Kind::Get).map(|f| f.3).sum();
    assert!(data < SIZE / 4, "the stream stopped: {data} of {SIZE} bytes sent");
    assert!(
        frames[echo..].iter().all(|f| f.0 != Kind::Get),
        "nothing of the stream after the answer: {frames:?}"
    );
    // The echo's answer follows the stream's last frame at once (a cut packet at most between).
    assert!(
        uart.tx.len() - before < 2 * 1024 + 64,
        "{} bytes after the request",
        uart.tx.len() - before
    );
    assert!(
        frames
            .iter()
            .filter(|f| f.0 == Kind::Get)
            .all(|f| f.4 <= tether_core::session::LINE_STREAM_FRAME),
        "stream frames stay within {} bytes on a line: {frames:?}",
        tether_core::session::LINE_STREAM_FRAME
    );
    // The next download runs to its end.
    let n = tether_core::codec::encode(&mut get, FrameSpec::request(Kind::Get, 3), &meta, &[]).unwrap();
    uart.tx.clear();
    serve_for(&mut serial, &mut device, &mut uart, &packet(&get[..n]), 4000);
    let frames = intact_frames(&uart.tx);
    let data: usize = frames
        .iter()
        .filter(|f| f.0 == Kind::Get && f.1 == 3)
        .map(|f| f.3)
        .sum();
    assert_eq!(data, SIZE);
    assert_eq!(device.stats.sessions_closed_by_device, 0);
}

#[test]
fn hello_on_a_line_never_advertises_a_frame_larger_than_the_driver_holds() {
    // A device built for larger frames than this driver's N (a board whose other transport
    // holds more): the line's hello says N, what the line can take.
    let mut mem = vec![0u8; 8192];
    let config = DeviceConfig {
        name: "serial-test",
        window: 4,
    };
    let mut device: Device<'static, (), RamStore<'_, 2>> =
        Device::new(config, RamStore::new(&mut mem), &[], (), 4 * N, 1);
    let mut serial = Serial::<N>::new(Limits::default());
    let mut uart = FakeUart::new(usize::MAX);
    let mut hello = vec![0u8; 128];
    let meta = postcard::to_slice(&tether_core::msg::Hello { client: "test" }, &mut [0u8; 32][..])
        .unwrap()
        .to_vec();
    let n = encode_raw(&mut hello, FrameSpec::request(Kind::Hello, 1), &meta, &[]).unwrap();
    uart.rx.extend(packet(&hello[..n]));
    for _ in 0..100 {
        uart.reset_budget();
        serial.poll(0, &mut uart, &mut device).unwrap();
    }
    let mut max_frame = None;
    packets(&uart.tx, |bytes| {
        let f = parse_datagram(bytes, N).expect("an intact answer");
        let info: tether_core::msg::Info<'_> = f.meta().expect("a hello answer");
        max_frame = Some(info.max_frame);
    });
    assert_eq!(max_frame, Some(N as u32));
}
