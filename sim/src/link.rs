//! A virtual Ethernet cable between two smoltcp interfaces in one process, with faults and
//! capture.
//!
//! Frames a [`Port`] transmits are queued for the other port. On the way the link can drop a
//! frame (`loss`), flip one bit in it (`corrupt`: IPv4/TCP/UDP checksums then reject it, as a
//! NIC's FCS check would), and refuse frames above its MTU; every frame that is delivered is
//! written to a pcap capture if one is attached.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::rc::Rc;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Fault settings of a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability that a frame is lost, 0.0..=1.0.
    pub loss: f64,
    /// Probability that a frame has one bit flipped, 0.0..=1.0.
    pub corrupt: f64,
    /// Largest IP packet the link carries (Ethernet payload), e.g. 1500.
    pub mtu: usize,
    /// Seed of the fault generator, so a failing run can be repeated.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            loss: 0.0,
            corrupt: 0.0,
            mtu: 65_000,
            seed: 0x7e7e_0001,
        }
    }
}

/// Frames seen by a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames delivered.
    pub delivered: u64,
    /// Frames dropped by `loss`.
    pub lost: u64,
    /// Frames with a flipped bit.
    pub corrupted: u64,
    /// Frames refused for exceeding the MTU.
    pub oversized: u64,
}

struct Wire {
    queues: [VecDeque<Vec<u8>>; 2],
    /// Frame buffers that were delivered and consumed, for reuse: no allocation per frame.
    spare: Vec<Vec<u8>>,
    faults: Faults,
    rng: Dice,
    pcap: Option<BufWriter<File>>,
    stats: LinkStats,
}

/// A seeded random source to place faults (on this link and on the simulated serial line).
#[derive(Debug, Clone)]
pub struct Dice(u64);

impl Dice {
    /// A source for `seed` (0 is taken as 1).
    pub fn new(seed: u64) -> Self {
        Dice(seed.max(1))
    }

    /// The next number.
    pub fn random(&mut self) -> u64 {
        // xorshift64*: fast, seedable, good enough to place faults.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.random() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

impl Wire {
    fn random(&mut self) -> u64 {
        self.rng.random()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.chance(p)
    }

    fn carry(&mut self, to: usize, mut frame: Vec<u8>, now: Instant) {
        if frame.len() > self.faults.mtu + 14 {
            self.stats.oversized += 1;
            return;
        }
        if self.chance(self.faults.loss) {
            self.stats.lost += 1;
            return;
        }
        if !frame.is_empty() && self.chance(self.faults.corrupt) {
            // Only past the Ethernet header, so the frame still reaches its interface and the
            // checksums, not the MAC filter, have to catch it.
            let at = match frame.len() {
                n if n > 14 => 14 + (self.random() as usize) % (n - 14),
                n => (self.random() as usize) % n,
            };
            frame[at] ^= 1 << (self.random() % 8);
            self.stats.corrupted += 1;
        }
        if let Some(pcap) = self.pcap.as_mut() {
            let micros = now.total_micros().max(0) as u64;
            let mut rec = [0u8; 16];
            rec[0..4].copy_from_slice(&((micros / 1_000_000) as u32).to_le_bytes());
            rec[4..8].copy_from_slice(&((micros % 1_000_000) as u32).to_le_bytes());
            rec[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
            rec[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
            if pcap.write_all(&rec).and_then(|_| pcap.write_all(&frame)).is_err() {
                log::warn!("pcap capture failed; capture stopped");
                self.pcap = None;
            }
        }
        self.stats.delivered += 1;
        self.queues[to].push_back(frame);
    }
}

/// A link: create it, then take its two ports.
#[derive(Clone)]
pub struct Link {
    wire: Rc<RefCell<Wire>>,
}

impl Link {
    /// A link with the given faults.
    pub fn new(faults: Faults) -> Self {
        let rng = Dice::new(faults.seed);
        let wire = Wire {
            queues: [VecDeque::new(), VecDeque::new()],
            spare: Vec::new(),
            faults,
            rng,
            pcap: None,
            stats: LinkStats::default(),
        };
        Link {
            wire: Rc::new(RefCell::new(wire)),
        }
    }

    /// Captures every delivered frame to `path` in pcap format (link type Ethernet).
    pub fn capture(&self, path: &Path) -> std::io::Result<()> {
        let mut w = BufWriter::new(File::create(path)?);
        // Global header: magic, version 2.4, zone 0, sigfigs 0, snaplen, LINKTYPE_ETHERNET.
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&65_535u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        w.write_all(&h)?;
        self.wire.borrow_mut().pcap = Some(w);
        Ok(())
    }

    /// Writes buffered capture records out.
    pub fn flush_capture(&self) -> std::io::Result<()> {
        match self.wire.borrow_mut().pcap.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// The two ends: 0 and 1.
    pub fn port(&self, side: usize) -> Port {
        assert!(side < 2, "a link has two ports");
        Port {
            wire: self.wire.clone(),
            side,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        self.wire.borrow().stats
    }
}

/// One end of a [`Link`], a smoltcp `phy::Device`.
pub struct Port {
    wire: Rc<RefCell<Wire>>,
    side: usize,
}

impl Device for Port {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken;

    fn capabilities(&self) -> DeviceCapabilities {
        let wire = self.wire.borrow();
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = wire.faults.mtu + 14;
        if wire.faults.corrupt == 0.0 {
            // Nothing on this cable damages a frame, so IP, TCP and UDP checksums would only
            // cost time. With corruption on, they are computed and checked, like a real NIC's FCS.
            caps.checksum = phy::ChecksumCapabilities::ignored();
        }
        caps
    }

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken)> {
        let frame = self.wire.borrow_mut().queues[self.side].pop_front()?;
        let rx = RxToken {
            frame,
            wire: self.wire.clone(),
        };
        Some((
            rx,
            TxToken {
                wire: self.wire.clone(),
                to: 1 - self.side,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken> {
        Some(TxToken {
            wire: self.wire.clone(),
            to: 1 - self.side,
        })
    }
}

#[doc(hidden)]
pub struct RxToken {
    frame: Vec<u8>,
    wire: Rc<RefCell<Wire>>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.frame);
        let mut wire = self.wire.borrow_mut();
        if wire.spare.len() < 64 {
            wire.spare.push(self.frame);
        }
        r
    }
}

#[doc(hidden)]
pub struct TxToken {
    wire: Rc<RefCell<Wire>>,
    to: usize,
}

impl phy::TxToken for TxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = self.wire.borrow_mut().spare.pop().unwrap_or_default();
        // A reused buffer keeps its old bytes: smoltcp writes every byte of the frame it emits,
        // so only growth needs initialising.
        if frame.len() >= len {
            frame.truncate(len);
        } else {
            frame.resize(len, 0);
        }
        let r = f(&mut frame);
        // smoltcp gives no timestamp here; the capture uses the wall clock since the epoch.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.wire
            .borrow_mut()
            .carry(self.to, frame, Instant::from_micros(now.as_micros() as i64));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{RxToken as _, TxToken as _};

    fn send(port: &mut Port, data: &[u8]) {
        port.transmit(Instant::ZERO)
            .unwrap()
            .consume(data.len(), |b| b.copy_from_slice(data));
    }

    #[test]
    fn frames_cross_in_order_and_faults_are_counted() {
        let link = Link::new(Faults::default());
        let (mut a, mut b) = (link.port(0), link.port(1));
        send(&mut a, b"one");
        send(&mut a, b"two");
        assert!(a.receive(Instant::ZERO).is_none());
        let (rx, _) = b.receive(Instant::ZERO).unwrap();
        assert_eq!(rx.consume(|f| f.to_vec()), b"one");
        let lossy = Link::new(Faults {
            loss: 0.5,
            corrupt: 0.5,
            ..Faults::default()
        });
        let mut a = lossy.port(0);
        for _ in 0..1000 {
            send(&mut a, &[0u8; 64]);
        }
        let s = lossy.stats();
        assert!((400..600).contains(&s.lost), "{s:?}");
        assert!((150..350).contains(&s.corrupted), "{s:?}");
        assert_eq!(s.lost + s.delivered, 1000);
    }

    #[test]
    fn oversized_frames_are_refused() {
        let link = Link::new(Faults {
            mtu: 100,
            ..Faults::default()
        });
        let mut a = link.port(0);
        send(&mut a, &[0u8; 115]);
        send(&mut a, &[0u8; 114]);
        assert_eq!(link.stats().oversized, 1);
        assert_eq!(link.stats().delivered, 1);
    }
}
