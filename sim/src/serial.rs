//! The simulated device's serial line: a pseudo-terminal (or an existing tty) behind
//! `embedded-io`'s UART traits, paced like a real UART and with seeded byte faults.
//!
//! The device side is `tether-core`'s own [`tether_core::serial::Serial`] driver, polled from the
//! sim's main loop beside the network server and sharing its `Device`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

use crate::link::Dice;

/// Byte faults on the line, applied in both directions.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteFaults {
    /// Probability that a byte is lost.
    pub loss: f64,
    /// Probability that a byte has one bit flipped.
    pub corrupt: f64,
    /// Seed of the fault placement.
    pub seed: u64,
}

/// What the line did, for the exit report.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineStats {
    /// Bytes carried (either direction).
    pub bytes: u64,
    /// Bytes the faults dropped.
    pub lost: u64,
    /// Bytes the faults flipped.
    pub corrupted: u64,
}

/// Bytes a second a UART moves at `baud` with 8N1 framing (10 bits a byte).
pub fn bytes_per_second(baud: u32) -> f64 {
    baud as f64 / 10.0
}

/// Line time: a UART moves at most `rate` bytes a second in each direction. Credit accrues only
/// while the line is busy (bytes waiting on its far side, or in the transmit FIFO) and at most a
/// receive ring's worth (`RING` bytes, like a device's DMA buffer): the sim's loop may come late,
/// but it can never move bytes earlier or faster than the line would have.
struct Pacer {
    rate: f64,
    last: Instant,
    rx: f64,
    tx: f64,
}

/// The receive ring of a paced line (and the most its transmit FIFO holds), in bytes: a 4 KiB
/// DMA ring, which also absorbs the sim loop's scheduling delays on a loaded host (44 ms at
/// 921600 baud).
const RING: f64 = 4096.0;

impl Pacer {
    fn new(rate: f64) -> Self {
        Pacer {
            rate,
            last: Instant::now(),
            rx: 0.0,
            tx: 0.0,
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let add = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.last = now;
        self.rx = (self.rx + add).min(RING);
        self.tx = (self.tx + add).min(RING);
    }
}

/// Most bytes read from or queued toward the OS at once.
const CHUNK: usize = 4096;

/// A serial line on a tty file descriptor, implementing the UART traits the driver polls.
pub struct SerialLine {
    file: File,
    /// A pty's own slave end, held open so that the line survives peers opening and closing it.
    _slave: Option<OwnedFd>,
    path: PathBuf,
    pacer: Option<Pacer>,
    faults: ByteFaults,
    dice: Dice,
    rx: VecDeque<u8>,
    tx: Vec<u8>,
    stats: LineStats,
}

fn raw(fd: impl AsFd) -> io::Result<()> {
    let mut t = tcgetattr(&fd)?;
    cfmakeraw(&mut t);
    tcsetattr(&fd, SetArg::TCSANOW, &t)?;
    Ok(())
}

fn nonblocking(fd: impl AsFd) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok(())
}

impl SerialLine {
    /// A new pseudo-terminal; peers open [`SerialLine::path`]. `baud` paces it (none: as fast as
    /// the OS moves bytes).
    pub fn pty(baud: Option<u32>, faults: ByteFaults) -> io::Result<Self> {
        let pty = nix::pty::openpty(None, None)?;
        raw(&pty.slave)?;
        let path = nix::unistd::ttyname(&pty.slave)?;
        nonblocking(&pty.master)?;
        Ok(Self::new(File::from(pty.master), Some(pty.slave), path, baud, faults))
    }

    /// An existing tty (a real UART, or one end of a pty pair made elsewhere), in raw mode.
    pub fn open(path: &Path, baud: Option<u32>, faults: ByteFaults) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        raw(&file)?;
        nonblocking(&file)?;
        Ok(Self::new(file, None, path.to_path_buf(), baud, faults))
    }

    fn new(file: File, slave: Option<OwnedFd>, path: PathBuf, baud: Option<u32>, faults: ByteFaults) -> Self {
        let pacer = baud.map(|b| Pacer::new(bytes_per_second(b)));
        SerialLine {
            file,
            _slave: slave,
            path,
            pacer,
            faults,
            dice: Dice::new(faults.seed),
            rx: VecDeque::new(),
            tx: Vec::new(),
            stats: LineStats::default(),
        }
    }

    /// The tty peers open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the line has carried and damaged so far.
    pub fn stats(&self) -> LineStats {
        self.stats
    }

    /// Whether the line is held back by its pace (the loop should come back soon).
    pub fn paced(&self) -> bool {
        self.pacer.is_some()
    }

    /// Passes one byte through the faults: `None` if it is lost.
    fn damage(&mut self, b: u8) -> Option<u8> {
        self.stats.bytes += 1;
        if self.dice.chance(self.faults.loss) {
            self.stats.lost += 1;
            return None;
        }
        if self.dice.chance(self.faults.corrupt) {
            self.stats.corrupted += 1;
            return Some(b ^ (1 << (self.dice.random() % 8)));
        }
        Some(b)
    }

    fn budget(&mut self, rx: bool) -> usize {
        match &mut self.pacer {
            None => CHUNK,
            Some(p) => {
                p.refill();
                (if rx { p.rx } else { p.tx }).floor().min(CHUNK as f64) as usize
            }
        }
    }

    fn idle(&mut self, rx: bool) {
        if let Some(p) = &mut self.pacer {
            if rx {
                p.rx = 0.0;
            } else {
                p.tx = 0.0;
            }
        }
    }

    fn spend(&mut self, rx: bool, n: usize) {
        if let Some(p) = &mut self.pacer {
            if rx {
                p.rx -= n as f64;
            } else {
                p.tx -= n as f64;
            }
        }
    }

    /// Reads what the line's pace allows into `rx`.
    fn fill(&mut self) -> io::Result<()> {
        if !self.rx.is_empty() {
            return Ok(());
        }
        let want = self.budget(true);
        if want == 0 {
            return Ok(());
        }
        let mut buf = [0u8; CHUNK];
        let n = match self.file.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            // A pty whose peer side is not open reads EIO; a real tty never does. Nothing came.
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => 0,
            Err(e) => return Err(e),
        };
        self.spend(true, n);
        if n < want {
            // Everything the peer had sent has arrived: the line idles and saves no credit.
            self.idle(true);
        }
        for &b in &buf[..n] {
            if let Some(b) = self.damage(b) {
                self.rx.push_back(b);
            }
        }
        Ok(())
    }

    /// Hands queued bytes to the OS as fast as the line's pace allows.
    fn drain(&mut self) -> io::Result<()> {
        let mut allowed = self.budget(false);
        while !self.tx.is_empty() && allowed > 0 {
            let n = allowed.min(self.tx.len());
            match self.file.write(&self.tx[..n]) {
                Ok(0) => break,
                Ok(n) => {
                    self.tx.drain(..n);
                    self.spend(false, n);
                    allowed -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => break,
                Err(e) => return Err(e),
            }
        }
        if self.tx.is_empty() {
            self.idle(false);
        }
        Ok(())
    }

    /// Bytes the transmit FIFO holds: 20 ms of the line (256 bytes to the 4 KiB ring), like a
    /// device that hands its UART a little at a time. Bytes in it go out whatever the device
    /// decides next, so a larger one would make a superseded stream (docs/PROTOCOL.md §17.2) run
    /// on longer (0.36 s at 115 200 baud for 4 KiB); 20 ms still absorbs the loop's delays.
    fn fifo(&self) -> usize {
        match &self.pacer {
            Some(p) => ((p.rate * 0.020) as usize).clamp(256, RING as usize),
            None => CHUNK,
        }
    }
}

impl embedded_io::ErrorType for SerialLine {
    type Error = io::Error;
}

impl embedded_io::ReadReady for SerialLine {
    fn read_ready(&mut self) -> io::Result<bool> {
        self.fill()?;
        Ok(!self.rx.is_empty())
    }
}

impl embedded_io::Read for SerialLine {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.fill()?;
        let n = buf.len().min(self.rx.len());
        for (slot, b) in buf.iter_mut().zip(self.rx.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }
}

impl embedded_io::WriteReady for SerialLine {
    fn write_ready(&mut self) -> io::Result<bool> {
        self.drain()?;
        Ok(self.tx.len() < self.fifo())
    }
}

impl embedded_io::Write for SerialLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.drain()?;
        let n = buf.len().min(self.fifo().saturating_sub(self.tx.len()));
        for &b in &buf[..n] {
            if let Some(b) = self.damage(b) {
                self.tx.push(b);
            }
        }
        self.drain()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()
    }
}
