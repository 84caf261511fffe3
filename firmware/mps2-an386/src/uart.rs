//! The board's two CMSDK APB UARTs: UART1 is the console (log lines, transmit only, polled),
//! UART0 is the Tether serial port, driven from its interrupts.
//!
//! A CMSDK UART holds one character each way and has no FIFO, so at 115200 baud a received
//! byte must be taken within ~87 us or the next one overruns it. The main loop cannot promise
//! that (a smoltcp poll, a RAM store compaction or a SHA-256 over a chunk take longer), so the
//! port's RX and TX interrupt handlers ([`on_rx`], [`on_tx`]) move bytes between the UART and
//! two small rings, and the main loop works on the rings only, through the `embedded-io` traits
//! of [`Serial`]. Every ring access is inside a critical section (`interrupt::free`), which
//! is what makes the state shared with the handlers sound.
//!
//! When the RX ring is full the byte is left in the UART: under QEMU this back-pressures the
//! host (QEMU offers the next byte only once DATA has been read), on a board the next byte
//! overruns it and the hardware's overrun flag is counted ([`Counters::overruns`]). The
//! session's CRCs catch such a loss; the counters make it visible (`exec uart`).

use core::cell::RefCell;
use core::convert::Infallible;
use core::fmt;

use cortex_m::interrupt::{self, Mutex};

use crate::mmio::{Block, UART0, UART1};

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const INTSTATUS: usize = 0x0C;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const STATE_TX_OVERRUN: u32 = 1 << 2;
const STATE_RX_OVERRUN: u32 = 1 << 3;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_TX_INTEN: u32 = 1 << 2;
const CTRL_RX_INTEN: u32 = 1 << 3;
const CTRL_RX_OVERRUN_INTEN: u32 = 1 << 5;
const INT_TX: u32 = 1 << 0;
const INT_RX: u32 = 1 << 1;
const INT_TX_OVERRUN: u32 = 1 << 2;
const INT_RX_OVERRUN: u32 = 1 << 3;
/// 25 MHz / 115200 baud (QEMU does not pace by it; a board does).
const DIVIDER: u32 = 25_000_000 / 115_200;

/// The console UART.
const CONSOLE: Block = UART1;
/// The Tether serial port.
const PORT: Block = UART0;

/// A `fmt::Write` to the serial console (UART1).
#[derive(Debug, Clone, Copy)]
pub struct Console;

impl Console {
    /// Sets the baud rate and enables the transmitter.
    pub fn init() -> Self {
        CONSOLE.write(BAUDDIV, DIVIDER);
        CONSOLE.write(CTRL, CTRL_TX_EN);
        Console
    }

    fn put(self, byte: u8) {
        // Bounded: at 115200 baud a byte leaves in ~87 us; a stuck UART loses the byte.
        for _ in 0..100_000 {
            if CONSOLE.read(STATE) & STATE_TX_FULL == 0 {
                CONSOLE.write(DATA, u32::from(byte));
                return;
            }
        }
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

/// Bytes each ring holds. The RX ring is the slack the main loop has: 128 bytes are 11 ms at
/// 115200 baud, far more than one pass of the loop; the TX ring only has to keep the transmitter
/// busy between passes.
pub const RING: usize = 128;

/// A byte ring of [`RING`] bytes.
struct Ring {
    buf: [u8; RING],
    head: usize,
    len: usize,
}

impl Ring {
    const fn new() -> Self {
        Ring {
            buf: [0; RING],
            head: 0,
            len: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.len == RING
    }

    fn push(&mut self, byte: u8) {
        debug_assert!(!self.is_full());
        self.buf[(self.head + self.len) % RING] = byte;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % RING;
        self.len -= 1;
        Some(b)
    }

    /// Moves up to `out.len()` bytes out of the ring (two copies at most, not a byte at a time:
    /// the main loop's side of every byte); returns how many.
    fn take(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        let first = n.min(RING - self.head);
        out[..first].copy_from_slice(&self.buf[self.head..self.head + first]);
        out[first..n].copy_from_slice(&self.buf[..n - first]);
        self.head = (self.head + n) % RING;
        self.len -= n;
        n
    }

    /// Moves as much of `data` into the ring as fits (two copies at most); returns how much.
    fn give(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(RING - self.len);
        let tail = (self.head + self.len) % RING;
        let first = n.min(RING - tail);
        self.buf[tail..tail + first].copy_from_slice(&data[..first]);
        self.buf[..n - first].copy_from_slice(&data[first..n]);
        self.len += n;
        n
    }
}

/// What the serial port has done since boot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Bytes received from the UART.
    pub rx_bytes: u64,
    /// Bytes handed to the UART.
    pub tx_bytes: u64,
    /// Times a byte had to wait in the UART because the RX ring was full (back-pressure in QEMU;
    /// on a board, a likely overrun).
    pub rx_stalls: u32,
    /// Bytes the hardware lost because the previous one had not been read (RXOVR).
    pub overruns: u32,
}

/// The state shared between the handlers and the main loop.
struct Port {
    rx: Ring,
    tx: Ring,
    counters: Counters,
    /// A handler ran since [`Serial::take_event`]: a byte came in or room was made.
    event: bool,
}

impl Port {
    /// Moves received bytes from the UART into the RX ring while there is room. Raises the
    /// event (the main loop serves the port) only at the end of a packet (a zero byte: serial
    /// framing's delimiter), when the ring reaches half full, or when it is full: the loop then
    /// takes a packet or half a ring at once instead of waking for every byte, which would cost
    /// it a pass per byte (docs/BENCHMARKS.md, "What a byte costs on the device"). Bytes short of
    /// that wait at most until the next 1 kHz tick, whose pass serves the port too.
    fn pull(&mut self) {
        while PORT.read(STATE) & STATE_RX_FULL != 0 {
            if self.rx.is_full() {
                self.counters.rx_stalls = self.counters.rx_stalls.wrapping_add(1);
                self.event = true;
                return;
            }
            let byte = PORT.read(DATA) as u8;
            self.rx.push(byte);
            self.counters.rx_bytes += 1;
            if byte == 0 || self.rx.len == RING / 2 {
                self.event = true;
            }
        }
    }

    /// Moves bytes from the TX ring into the UART while it takes them. Raises the event when the
    /// ring drains to half (room for the main loop to refill it) and when it empties, not for
    /// every byte.
    fn push(&mut self) {
        while PORT.read(STATE) & STATE_TX_FULL == 0 {
            let Some(b) = self.tx.pop() else { return };
            PORT.write(DATA, u32::from(b));
            self.counters.tx_bytes += 1;
            if self.tx.len == RING / 2 || self.tx.len == 0 {
                self.event = true;
            }
        }
    }

    fn note_overruns(&mut self) {
        let state = PORT.read(STATE);
        if state & STATE_RX_OVERRUN != 0 {
            self.counters.overruns = self.counters.overruns.wrapping_add(1);
        }
        // Write-1-to-clear; a TX overrun cannot happen (DATA is written only when not full).
        PORT.write(STATE, state & (STATE_RX_OVERRUN | STATE_TX_OVERRUN));
        PORT.write(INTSTATUS, INT_RX_OVERRUN | INT_TX_OVERRUN);
    }
}

static SHARED: Mutex<RefCell<Port>> = Mutex::new(RefCell::new(Port {
    rx: Ring::new(),
    tx: Ring::new(),
    counters: Counters {
        rx_bytes: 0,
        tx_bytes: 0,
        rx_stalls: 0,
        overruns: 0,
    },
    event: false,
}));

/// Runs `f` on the shared port state, inside a critical section.
fn with_port<R>(f: impl FnOnce(&mut Port) -> R) -> R {
    interrupt::free(|cs| f(&mut SHARED.borrow(cs).borrow_mut()))
}

/// The RX interrupt (IRQ 0): a byte has arrived.
pub fn on_rx() {
    with_port(|p| {
        // Clear first: a byte arriving after the reads below raises the interrupt again.
        PORT.write(INTSTATUS, INT_RX);
        p.pull();
    });
}

/// The TX interrupt (IRQ 1): the UART took its byte and can take the next.
pub fn on_tx() {
    with_port(|p| {
        PORT.write(INTSTATUS, INT_TX);
        p.push();
    });
}

/// The combined overrun interrupt of UARTs 0–2 (IRQ 12).
pub fn on_overrun() {
    with_port(Port::note_overruns);
}

/// The Tether serial port (UART0) as an `embedded-io` byte stream.
///
/// Reads and writes never fail: a byte the hardware loses is counted, not reported, since the
/// framing above detects it anyway. [`Serial::read_ready`]/[`Serial::write_ready`] tell a
/// poll-driven caller when the blocking calls would not block.
#[derive(Debug)]
pub struct Serial {
    _private: (),
}

impl Serial {
    /// Sets the baud rate and enables the port with its RX, TX and RX-overrun interrupts. The
    /// interrupts reach the handlers once `rt::enable_interrupts` has run.
    pub fn init() -> Self {
        PORT.write(BAUDDIV, DIVIDER);
        PORT.write(INTSTATUS, INT_TX | INT_RX | INT_TX_OVERRUN | INT_RX_OVERRUN);
        PORT.write(STATE, STATE_TX_OVERRUN | STATE_RX_OVERRUN);
        PORT.write(
            CTRL,
            CTRL_TX_EN | CTRL_RX_EN | CTRL_TX_INTEN | CTRL_RX_INTEN | CTRL_RX_OVERRUN_INTEN,
        );
        Serial { _private: () }
    }

    /// Bytes waiting to be read. No register access: the RX handler fills the ring, and a byte it
    /// had to leave in the UART is pulled in by [`Serial::take`] once it has made room (each
    /// register access is slow in QEMU, and this is asked on every pass of the main loop).
    pub fn readable(&self) -> usize {
        with_port(|p| p.rx.len)
    }

    /// Bytes [`embedded_io::Write::write`] would take now.
    pub fn writable(&self) -> usize {
        with_port(|p| RING - p.tx.len)
    }

    /// Whether every byte written has left the ring and the UART.
    pub fn is_drained(&self) -> bool {
        with_port(|p| p.tx.len == 0 && PORT.read(STATE) & STATE_TX_FULL == 0)
    }

    /// Whether a handler raised the event since the last call (a packet's end, a half-full RX
    /// ring, a TX ring drained to half or empty: see `Port::pull` and `Port::push`), and clears
    /// that. A caller that served the port until nothing moved, and then finds no event (with
    /// interrupts masked), may sleep: the handlers or the next tick wake it.
    pub fn take_event(&self) -> bool {
        with_port(|p| core::mem::take(&mut p.event))
    }

    /// Whether a handler raised the event since [`Serial::take_event`], without clearing it.
    pub fn has_event(&self) -> bool {
        with_port(|p| p.event)
    }

    /// The port's counters.
    pub fn counters(&self) -> Counters {
        with_port(|p| p.counters)
    }

    /// Takes up to `buf.len()` received bytes without waiting.
    pub fn take(&mut self, buf: &mut [u8]) -> usize {
        with_port(|p| {
            let n = p.rx.take(buf);
            // Room was made: a byte the handler had to leave in the UART comes in now.
            p.pull();
            n
        })
    }

    /// Queues as many bytes of `buf` as fit, without waiting; returns how many.
    pub fn give(&mut self, buf: &[u8]) -> usize {
        with_port(|p| {
            let n = p.tx.give(buf);
            // The TX interrupt fires only when a byte leaves: an idle transmitter is started here.
            p.push();
            n
        })
    }
}

impl embedded_io::ErrorType for Serial {
    type Error = Infallible;
}

impl embedded_io::ReadReady for Serial {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.readable() > 0)
    }
}

impl embedded_io::WriteReady for Serial {
    fn write_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.writable() > 0)
    }
}

impl embedded_io::Read for Serial {
    /// Waits (asleep) for at least one byte, then takes what is there.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.take(buf);
            if n > 0 {
                return Ok(n);
            }
            crate::rt::sleep_unless(|| with_port(|p| p.rx.len > 0 || PORT.read(STATE) & STATE_RX_FULL != 0));
        }
    }
}

impl embedded_io::Write for Serial {
    /// Waits (asleep) for room in the TX ring, then queues what fits.
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.give(buf);
            if n > 0 {
                return Ok(n);
            }
            crate::rt::sleep_unless(|| self.writable() > 0);
        }
    }

    /// Waits (asleep) until every queued byte has left the UART.
    fn flush(&mut self) -> Result<(), Infallible> {
        while !self.is_drained() {
            // The last byte's completion raises the TX interrupt, which ends the sleep.
            crate::rt::sleep_unless(|| self.is_drained());
        }
        Ok(())
    }
}
