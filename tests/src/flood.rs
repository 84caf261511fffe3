//! A bounded flood of connections from peers without the device's key, in every shape such a
//! peer can take, for the attacker-side tests of `docs/SECURITY.md` (denial of service) against
//! the sim and the emulated board.
//!
//! One thread opens connections at a fixed rate for a fixed time — never more than
//! `rate × seconds` in all — and keeps each open for at most [`Flood::hold`], the way an attacker
//! keeps connections as long as the device lets it. Traffic goes to the address given, which the
//! tests keep on 127.0.0.1.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tether_core::codec::{encode, encode_raw};
use tether_core::msg;
use tether_core::secure::{Handshake, Psk, MSG1_LEN};
use tether_core::wire::{FrameSpec, Kind};

use crate::random_bytes;

/// What one flooding connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Connects and says nothing.
    Silent,
    /// Sends a `Hello` in the clear (which a locked session answers).
    Hello,
    /// Sends half of a handshake frame, then nothing.
    HalfHandshake,
    /// Sends a `Hello`, then the first bytes of another frame.
    HelloAndFragment,
    /// A handshake with a wrong key (a random message 1).
    WrongKey,
    /// Replays a key holder's recorded message 1 (the flood's recordings in turn), then keeps the
    /// connection busy with one garbage byte every 200 ms.
    Replay,
}

impl Shape {
    /// Every shape, in the order the flood cycles through them ([`Shape::Replay`] only when the
    /// flood has recorded messages 1).
    pub const ALL: [Shape; 6] = [
        Shape::Silent,
        Shape::Hello,
        Shape::HalfHandshake,
        Shape::HelloAndFragment,
        Shape::WrongKey,
        Shape::Replay,
    ];
}

/// How a flood runs.
#[derive(Debug, Clone)]
pub struct Flood {
    /// Where the device listens.
    pub to: SocketAddr,
    /// New connections per second.
    pub rate: u32,
    /// How long the flood lasts.
    pub duration: Duration,
    /// The longest each connection is kept open.
    pub hold: Duration,
    /// The shapes to cycle through.
    pub shapes: Vec<Shape>,
    /// Key holders' messages 1 as recorded on the wire (whole `Handshake` request frames), for
    /// [`Shape::Replay`], replayed in turn: more than the device remembers (32), and it answers
    /// the ones it has forgotten.
    pub recorded: Vec<Vec<u8>>,
}

/// What a flood did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Report {
    /// Connections that were established.
    pub connected: u32,
    /// Connection attempts that failed (refused, reset or timed out).
    pub failed: u32,
    /// Connections the device ended before the flood let go of them.
    pub ended_by_device: u32,
}

/// A flood in progress; [`Running::finish`] stops it and reports.
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Report>>,
}

impl Running {
    /// Waits for the flood to run its course (every connection made and let go) and reports.
    pub fn wait(mut self) -> Report {
        self.thread
            .take()
            .map(|t| t.join().expect("the flood thread does not panic"))
            .unwrap_or_default()
    }

    /// Stops the flood (if it is still running) and reports what it did.
    pub fn finish(mut self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().expect("the flood thread does not panic"))
            .unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A key holder's message 1 for `key`, as a `Handshake` request frame: what an attacker who once
/// watched that key holder connect has recorded.
pub fn recorded_message1(key: &Psk) -> Vec<u8> {
    let mut hs = Handshake::initiator(key, &mut rand_core::UnwrapErr(getrandom::SysRng));
    let mut m1 = [0u8; MSG1_LEN];
    hs.write_message(&mut m1).expect("message 1 fits");
    handshake_frame(&m1)
}

/// `n` messages 1 for `key` ([`recorded_message1`]): an attacker who watched key holders connect
/// `n` times.
pub fn recorded_messages1(key: &Psk, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|_| recorded_message1(key)).collect()
}

/// A `Handshake` request frame carrying `body`.
pub fn handshake_frame(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 64 + body.len()];
    let n = encode_raw(&mut out, FrameSpec::request(Kind::Handshake, 1), &[], body).expect("fits");
    out.truncate(n);
    out
}

fn hello_frame() -> Vec<u8> {
    let mut out = vec![0u8; 256];
    let hello = msg::Hello { client: "flood" };
    let n = encode(&mut out, FrameSpec::request(Kind::Hello, 1), &hello, &[]).expect("fits");
    out.truncate(n);
    out
}

struct Conn {
    stream: TcpStream,
    until: Instant,
    shape: Shape,
    next_drip: Instant,
}

impl Flood {
    /// A flood of every shape at a device's framed TCP port on 127.0.0.1: 200 connections a
    /// second for one second, each held up to 2 s, no recorded message 1. Change what a test
    /// needs with struct update syntax.
    pub fn at(port: u16) -> Flood {
        Flood {
            to: ([127, 0, 0, 1], port).into(),
            rate: 200,
            duration: Duration::from_secs(1),
            hold: Duration::from_secs(2),
            shapes: Shape::ALL.to_vec(),
            recorded: Vec::new(),
        }
    }

    /// Starts the flood on its own thread.
    pub fn start(self) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || self.run(&flag));
        Running {
            stop,
            thread: Some(thread),
        }
    }

    fn run(self, stop: &AtomicBool) -> Report {
        let shapes: Vec<Shape> = self
            .shapes
            .iter()
            .copied()
            .filter(|s| *s != Shape::Replay || !self.recorded.is_empty())
            .collect();
        let hello = hello_frame();
        let mut report = Report::default();
        let mut open: Vec<Conn> = Vec::new();
        let started = Instant::now();
        let total = u64::from(self.rate) * self.duration.as_millis() as u64 / 1000;
        let mut made = 0u64;
        let mut replays = 0usize;
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::SeqCst) && (made < total || !open.is_empty()) {
            let now = Instant::now();
            // Connections due by now, on the rate's schedule.
            let due = (now.duration_since(started).as_micros() as u64 * u64::from(self.rate) / 1_000_000).min(total);
            while made < due && !shapes.is_empty() {
                let shape = shapes[made as usize % shapes.len()];
                made += 1;
                match TcpStream::connect_timeout(&self.to, Duration::from_millis(250)) {
                    Ok(mut stream) => {
                        report.connected += 1;
                        let _ = stream.set_nodelay(true);
                        let first: Vec<u8> = match shape {
                            Shape::Silent => Vec::new(),
                            Shape::Hello => hello.clone(),
                            Shape::HalfHandshake => {
                                let full = handshake_frame(&random_bytes(MSG1_LEN, made));
                                full[..full.len() / 2].to_vec()
                            }
                            Shape::HelloAndFragment => {
                                let mut v = hello.clone();
                                v.extend_from_slice(&hello[..10]);
                                v
                            }
                            Shape::WrongKey => handshake_frame(&random_bytes(MSG1_LEN, made)),
                            Shape::Replay => {
                                replays += 1;
                                self.recorded[replays % self.recorded.len()].clone()
                            }
                        };
                        let _ = stream.write_all(&first);
                        let _ = stream.set_nonblocking(true);
                        open.push(Conn {
                            stream,
                            until: Instant::now() + self.hold,
                            shape,
                            next_drip: Instant::now() + Duration::from_millis(200),
                        });
                    }
                    Err(_) => report.failed += 1,
                }
            }
            // Read and drop whatever the device says; let go of connections it ended or whose
            // time is up; keep the replayed ones busy.
            let now = Instant::now();
            open.retain_mut(|c| {
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            report.ended_by_device += 1;
                            return false;
                        }
                        Ok(_) => continue,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => {
                            report.ended_by_device += 1;
                            return false;
                        }
                    }
                }
                if c.shape == Shape::Replay && now >= c.next_drip {
                    c.next_drip = now + Duration::from_millis(200);
                    let _ = c.stream.write(&[0x5a]);
                }
                now < c.until
            });
            std::thread::sleep(Duration::from_millis(1));
        }
        report
    }
}
