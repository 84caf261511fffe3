//! SMSC LAN9118 Ethernet controller: a smoltcp [`phy::Device`].
//!
//! Written from the register map in SMSC's LAN9118 datasheet, checked against what QEMU's
//! model does. The chip has a MAC, a PHY and FIFOs; the host sees 32-bit registers:
//!
//! - RX: each received frame leaves a *status word* in the RX status FIFO (length including
//!   the 4-byte FCS, error flags) and its bytes, little-endian, in the RX data FIFO. Popping the
//!   status word, then reading `ceil(len / 4)` data words, takes exactly one frame out.
//! - TX: a frame is written to the TX data FIFO as two command words (A: segment flags and
//!   buffer length; B: tag and frame length) followed by the data words; the chip sends it once
//!   the last word is in, and leaves a TX status word (tag, error flags).
//! - MAC registers (MAC_CR, the address, the MII port to the PHY) are reached indirectly through
//!   MAC_CSR_CMD / MAC_CSR_DATA; PHY registers through the MAC's MII_ACC / MII_DATA.
//!
//! All MMIO goes through [`crate::mmio`]; this file is safe code.
//!
//! Under QEMU every register access takes the emulator's global lock, so the driver reads as
//! few registers as it can: one status read per received frame, one FIFO-space read per sent
//! frame, and nothing while the firmware sleeps.

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::mmio::LAN9118 as REGS;

// Register offsets (bytes from the chip's base).
const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const TX_STATUS_FIFO: usize = 0x48;
const ID_REV: usize = 0x50;
const IRQ_CFG: usize = 0x54;
const INT_STS: usize = 0x58;
const INT_EN: usize = 0x5C;
const BYTE_TEST: usize = 0x64;
const RX_CFG: usize = 0x6C;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_FIFO_INF: usize = 0x7C;
const TX_FIFO_INF: usize = 0x80;
const PMT_CTRL: usize = 0x84;
const FREE_RUN: usize = 0x9C;
const RX_DROP: usize = 0xA0;
const MAC_CSR_CMD: usize = 0xA4;
const MAC_CSR_DATA: usize = 0xA8;

// Register bits.
const BYTE_TEST_VALUE: u32 = 0x8765_4321;
const HW_CFG_SRST: u32 = 1 << 0;
const PMT_CTRL_READY: u32 = 1 << 0;
const IRQ_CFG_TYPE_PUSH_PULL: u32 = 1 << 0;
const IRQ_CFG_POL_HIGH: u32 = 1 << 4;
const IRQ_CFG_EN: u32 = 1 << 8;
/// RX status FIFO level interrupt: set when the status FIFO holds more words than FIFO_INT's
/// RX status level, which is 0 after reset: "a frame has arrived".
const INT_RSFL: u32 = 1 << 3;
const TX_CFG_ON: u32 = 1 << 1;
/// Let the TX status FIFO overrun rather than stop the transmitter when nobody reads it.
const TX_CFG_SAO: u32 = 1 << 2;
const MAC_CSR_BUSY: u32 = 1 << 31;
const MAC_CSR_READ: u32 = 1 << 30;
const TX_CMD_A_FIRST: u32 = 1 << 13;
const TX_CMD_A_LAST: u32 = 1 << 12;
const STATUS_ERROR: u32 = 1 << 15;

// MAC CSR indices.
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MII_ACC: u32 = 6;
const MII_DATA: u32 = 7;

const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_FDPX: u32 = 1 << 20;
/// Pass all multicast frames (feature `mdns`: the mDNS group's 01:00:5e:00:00:fb among them).
#[cfg(feature = "mdns")]
const MAC_CR_MCPAS: u32 = 1 << 19;

const MII_BUSY: u32 = 1 << 0;
const MII_WRITE: u32 = 1 << 1;
/// The internal PHY answers at MII address 1.
const PHY_ADDR: u32 = 1;
const PHY_BCR: u32 = 0;
const PHY_BSR: u32 = 1;
const PHY_ANAR: u32 = 4;
const BCR_RESET: u32 = 1 << 15;
const BCR_AUTONEG: u32 = 1 << 12;
const BCR_RESTART_AUTONEG: u32 = 1 << 9;
const BSR_LINK_UP: u32 = 1 << 2;
/// Advertise 10/100, half and full duplex, IEEE 802.3.
const ANAR_ALL: u32 = 0x01E1;

/// Largest Ethernet frame handed to smoltcp (no FCS, no VLAN tag).
pub const MTU: usize = 1514;
/// Frame buffers: a full frame with its FCS, in whole words.
const BUF: usize = 1520;

/// Bound on register polls that wait for the chip (reset, MAC CSR, PHY). A real chip answers
/// within microseconds, QEMU at once.
const SPIN: u32 = 100_000;

/// Why the chip could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// BYTE_TEST did not read 0x87654321: no chip, or a bus problem.
    NotFound(u32),
    /// The soft reset or the power-management READY bit did not complete.
    ResetTimeout,
    /// An indirect MAC register access stayed busy.
    MacBusy,
    /// A PHY register access stayed busy.
    PhyBusy,
}

/// Frame and error counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Frames handed to smoltcp.
    pub rx_frames: u32,
    /// Frames the chip flagged as bad, or too long for the buffer: read and dropped.
    pub rx_errors: u32,
    /// Frames the chip reports as dropped (its RX_DROP counter; QEMU always reads 0).
    pub rx_dropped: u32,
    /// Frames written to the TX FIFO.
    pub tx_frames: u32,
    /// TX status words with the error flag.
    pub tx_errors: u32,
    /// Times a frame had to wait for TX FIFO space.
    pub tx_waits: u32,
}

/// The driver: the chip's registers plus one frame buffer each way.
pub struct Lan9118 {
    mac: [u8; 6],
    rx: [u8; BUF],
    tx: [u8; BUF],
    counters: Counters,
}

fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    (0..SPIN).any(|_| done())
}

impl Lan9118 {
    /// Resets the chip and brings it up: MAC address (the one it loaded from its EEPROM, or
    /// `fallback_mac` when that is not a valid unicast address), PHY auto-negotiation, MAC
    /// transmitter and receiver on, receive interrupt on (active high, push-pull).
    pub fn new(fallback_mac: [u8; 6]) -> Result<Self, Error> {
        // The chip may still be coming out of power-on reset: BYTE_TEST reads correctly first.
        let mut test = 0;
        if !spin_until(|| {
            test = REGS.read(BYTE_TEST);
            test == BYTE_TEST_VALUE
        }) {
            return Err(Error::NotFound(test));
        }
        REGS.write(HW_CFG, HW_CFG_SRST);
        if !spin_until(|| REGS.read(HW_CFG) & HW_CFG_SRST == 0)
            || !spin_until(|| REGS.read(PMT_CTRL) & PMT_CTRL_READY != 0)
        {
            return Err(Error::ResetTimeout);
        }
        let mut nic = Lan9118 {
            mac: fallback_mac,
            rx: [0; BUF],
            tx: [0; BUF],
            counters: Counters::default(),
        };

        // MAC address: ADDRL holds bytes 0-3, ADDRH bytes 4-5, least significant first.
        let lo = nic.mac_read(MAC_ADDRL)?.to_le_bytes();
        let hi = nic.mac_read(MAC_ADDRH)?.to_le_bytes();
        let loaded = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]];
        let unicast = loaded[0] & 1 == 0 && loaded != [0; 6];
        if unicast {
            nic.mac = loaded;
        } else {
            let m = fallback_mac;
            nic.mac_write(MAC_ADDRL, u32::from_le_bytes([m[0], m[1], m[2], m[3]]))?;
            nic.mac_write(MAC_ADDRH, u32::from_le_bytes([m[4], m[5], 0, 0]))?;
        }

        // PHY: reset, advertise everything, auto-negotiate.
        nic.phy_write(PHY_BCR, BCR_RESET)?;
        let mut bcr = BCR_RESET;
        for _ in 0..1000 {
            bcr = nic.phy_read(PHY_BCR)?;
            if bcr & BCR_RESET == 0 {
                break;
            }
        }
        if bcr & BCR_RESET != 0 {
            return Err(Error::PhyBusy);
        }
        nic.phy_write(PHY_ANAR, ANAR_ALL)?;
        nic.phy_write(PHY_BCR, BCR_AUTONEG | BCR_RESTART_AUTONEG)?;

        // FIFOs: frames start at word 0 of the RX FIFO, no padding at the end; TX on, and the
        // TX status FIFO may overrun (it is read only to count errors).
        REGS.write(RX_CFG, 0);
        REGS.write(TX_CFG, TX_CFG_ON | TX_CFG_SAO);
        // Exact address filter plus broadcast (for ARP), full duplex; not promiscuous. With mDNS
        // every multicast frame too (smoltcp drops the groups it has not joined).
        #[cfg(not(feature = "mdns"))]
        let multicast = 0;
        #[cfg(feature = "mdns")]
        let multicast = MAC_CR_MCPAS;
        nic.mac_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX | multicast)?;

        // One interrupt source: "a frame is in the RX status FIFO". The firmware never takes
        // the interrupt; it only wakes the core from WFI (see `rt`).
        REGS.write(INT_STS, u32::MAX);
        REGS.write(INT_EN, INT_RSFL);
        REGS.write(IRQ_CFG, IRQ_CFG_EN | IRQ_CFG_POL_HIGH | IRQ_CFG_TYPE_PUSH_PULL);
        Ok(nic)
    }

    /// The MAC address in use.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Chip ID and revision (0x0118_xxxx for a LAN9118).
    pub fn id_rev(&self) -> u32 {
        REGS.read(ID_REV)
    }

    /// Whether the PHY reports link (basic status register, read twice: the bit latches low).
    pub fn link_up(&self) -> Result<bool, Error> {
        let _ = self.phy_read(PHY_BSR)?;
        Ok(self.phy_read(PHY_BSR)? & BSR_LINK_UP != 0)
    }

    /// The chip's free-running counter: 25 MHz, wraps every 171.8 s.
    pub fn free_run(&self) -> u32 {
        ticks()
    }

    /// Clears the receive interrupt, so the line drops until the next frame arrives.
    pub fn ack_interrupt(&self) {
        REGS.write(INT_STS, INT_RSFL);
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Folds the chip's own drop counter (RX_DROP, clears on read) into the counters.
    pub fn update_drop_count(&mut self) {
        self.counters.rx_dropped = self.counters.rx_dropped.wrapping_add(REGS.read(RX_DROP));
    }

    fn mac_wait(&self) -> Result<(), Error> {
        if spin_until(|| REGS.read(MAC_CSR_CMD) & MAC_CSR_BUSY == 0) {
            Ok(())
        } else {
            Err(Error::MacBusy)
        }
    }

    fn mac_read(&self, index: u32) -> Result<u32, Error> {
        self.mac_wait()?;
        REGS.write(MAC_CSR_CMD, MAC_CSR_BUSY | MAC_CSR_READ | index);
        self.mac_wait()?;
        Ok(REGS.read(MAC_CSR_DATA))
    }

    fn mac_write(&self, index: u32, value: u32) -> Result<(), Error> {
        self.mac_wait()?;
        REGS.write(MAC_CSR_DATA, value);
        REGS.write(MAC_CSR_CMD, MAC_CSR_BUSY | index);
        self.mac_wait()
    }

    fn mii_wait(&self) -> Result<(), Error> {
        for _ in 0..1000 {
            if self.mac_read(MII_ACC)? & MII_BUSY == 0 {
                return Ok(());
            }
        }
        Err(Error::PhyBusy)
    }

    fn phy_read(&self, reg: u32) -> Result<u32, Error> {
        self.mii_wait()?;
        self.mac_write(MII_ACC, (PHY_ADDR << 11) | (reg << 6) | MII_BUSY)?;
        self.mii_wait()?;
        Ok(self.mac_read(MII_DATA)? & 0xFFFF)
    }

    fn phy_write(&self, reg: u32, value: u32) -> Result<(), Error> {
        self.mii_wait()?;
        self.mac_write(MII_DATA, value & 0xFFFF)?;
        self.mac_write(MII_ACC, (PHY_ADDR << 11) | (reg << 6) | MII_WRITE | MII_BUSY)?;
        self.mii_wait()
    }

    /// Takes the next good frame out of the RX FIFOs into the RX buffer; returns its length
    /// (without FCS), or `None` when no frame is waiting. Bad frames are read out and counted.
    fn pull_frame(&mut self) -> Option<usize> {
        loop {
            if (REGS.read(RX_FIFO_INF) >> 16) & 0xFF == 0 {
                return None;
            }
            let status = REGS.read(RX_STATUS_FIFO);
            let len = ((status >> 16) & 0x3FFF) as usize;
            let words = len.div_ceil(4);
            let good = status & STATUS_ERROR == 0 && (14 + 4..=BUF).contains(&len);
            if !good {
                for _ in 0..words {
                    let _ = REGS.read(RX_DATA_FIFO);
                }
                self.counters.rx_errors = self.counters.rx_errors.wrapping_add(1);
                continue;
            }
            // Whole words (`as_chunks_mut`: no per-word slicing), one FIFO read each.
            for word in self.rx[..words * 4].as_chunks_mut::<4>().0 {
                *word = REGS.read(RX_DATA_FIFO).to_le_bytes();
            }
            self.counters.rx_frames = self.counters.rx_frames.wrapping_add(1);
            return Some(len - 4);
        }
    }

    /// Free bytes in the TX data FIFO; reads (and counts errors of) pending TX status words.
    fn tx_space(&mut self) -> usize {
        let inf = REGS.read(TX_FIFO_INF);
        for _ in 0..(inf >> 16) & 0xFF {
            if REGS.read(TX_STATUS_FIFO) & STATUS_ERROR != 0 {
                self.counters.tx_errors = self.counters.tx_errors.wrapping_add(1);
            }
        }
        (inf & 0xFFFF) as usize
    }
}

/// Free bytes in the TX data FIFO.
fn tx_free() -> usize {
    (REGS.read(TX_FIFO_INF) & 0xFFFF) as usize
}

/// FIFO bytes a frame of `len` bytes takes: two command words and the data words.
fn tx_need(len: usize) -> usize {
    8 + len.div_ceil(4) * 4
}

/// Writes the first `len` bytes of `buf` to the TX FIFO as one frame.
fn push_frame(buf: &[u8], len: usize, counters: &mut Counters) {
    let len = len.min(MTU);
    // Command A: first and last segment, buffer length. Command B: tag (the length, for
    // debugging) and frame length.
    REGS.write(TX_DATA_FIFO, TX_CMD_A_FIRST | TX_CMD_A_LAST | len as u32);
    REGS.write(TX_DATA_FIFO, ((len as u32) << 16) | len as u32);
    // Whole words (`as_chunks`: no per-word slicing; ARMv7-M loads them unaligned), one FIFO
    // write each.
    let (words, rest) = buf[..len].as_chunks::<4>();
    for w in words {
        REGS.write(TX_DATA_FIFO, u32::from_le_bytes(*w));
    }
    if !rest.is_empty() {
        let mut last = [0u8; 4];
        last[..rest.len()].copy_from_slice(rest);
        REGS.write(TX_DATA_FIFO, u32::from_le_bytes(last));
    }
    counters.tx_frames = counters.tx_frames.wrapping_add(1);
}

/// A received frame, already in the driver's RX buffer.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

/// Room to send one frame.
pub struct TxToken<'a> {
    buf: &'a mut [u8; BUF],
    counters: &'a mut Counters,
    /// FIFO space known to be free, or 0 when it still has to be checked.
    space: usize,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MTU);
        let r = f(&mut self.buf[..len]);
        let need = tx_need(len);
        if self.space < need && tx_free() < need {
            // Handed out with an RX token, before the FIFO was checked, and the FIFO is full:
            // wait (bounded; a real chip drains a full frame in about 120 us at 100 Mbit/s).
            self.counters.tx_waits = self.counters.tx_waits.wrapping_add(1);
            if !spin_until(|| tx_free() >= need) {
                // The transmitter is stuck; drop the frame rather than overflow the FIFO.
                self.counters.tx_errors = self.counters.tx_errors.wrapping_add(1);
                return r;
            }
        }
        push_frame(&self.buf[..], len, self.counters);
        r
    }
}

impl phy::Device for Lan9118 {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let len = self.pull_frame()?;
        let Lan9118 { rx, tx, counters, .. } = self;
        Some((
            RxToken { frame: &rx[..len] },
            TxToken {
                buf: tx,
                counters,
                space: 0,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        let space = self.tx_space();
        if space < tx_need(MTU) {
            self.counters.tx_waits = self.counters.tx_waits.wrapping_add(1);
            return None;
        }
        Some(TxToken {
            buf: &mut self.tx,
            counters: &mut self.counters,
            space,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = None;
        caps
    }
}

/// The free-running counter without the driver (reading it changes nothing), for timing code
/// that has no access to the driver, such as a command (`noise time`).
pub fn ticks() -> u32 {
    REGS.read(FREE_RUN)
}
