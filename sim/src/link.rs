//! A virtual Ethernet cable between two smoltcp interfaces in one process, or a switch between
//! many, with faults and capture.
//!
//! On a cable ([`Link::new`]) frames a [`Port`] transmits are queued for the other port. On a
//! switch ([`Link::switch`]) a frame goes to the port its destination MAC address was last seen
//! on as a source, and a broadcast, multicast or not yet seen destination goes to every other
//! port, as a learning Ethernet switch does. On the way the link can drop a frame (`loss`),
//! flip one bit in it (`corrupt`: IPv4/TCP/UDP checksums then reject it, as a NIC's FCS check
//! would), and refuse frames above its MTU; every frame that is delivered is written to a pcap
//! capture if one is attached.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
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
    /// Frames waiting for each port.
    queues: Vec<VecDeque<Vec<u8>>>,
    /// Where each source MAC address was last seen (a switch's forwarding table).
    learned: HashMap<[u8; 6], usize>,
    /// Frame buffers that were delivered and consumed, for reuse: no allocation per frame.
    spare: Vec<Vec<u8>>,
    faults: Faults,
    rng: Dice,
    pcap: Option<BufWriter<File>>,
    stats: LinkStats,
    /// A real stack is on the link ([`Link::checksummed`]): it checks every checksum.
    checksummed: bool,
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

    fn carry(&mut self, from: usize, mut frame: Vec<u8>, now: Instant) {
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
        self.forward(from, frame);
    }

    /// Queues `frame` from port `from` for the port(s) it is for: on a cable the other end; on a
    /// switch the port its destination was learned on, or every other port.
    fn forward(&mut self, from: usize, frame: Vec<u8>) {
        let ports = self.queues.len();
        if ports == 2 {
            self.queues[1 - from].push_back(frame);
            return;
        }
        let mac = |at: usize| -> Option<[u8; 6]> { frame.get(at..at + 6)?.try_into().ok() };
        if let Some(src) = mac(6).filter(|m| m[0] & 1 == 0) {
            self.learned.insert(src, from);
        }
        // The group bit: broadcast and multicast go everywhere, like an unknown destination.
        let to = mac(0)
            .filter(|m| m[0] & 1 == 0)
            .and_then(|dst| self.learned.get(&dst).copied());
        match to {
            Some(port) if port != from => self.queues[port].push_back(frame),
            Some(_) => {}
            None => {
                for port in (0..ports).filter(|&p| p != from) {
                    let mut copy = self.spare.pop().unwrap_or_default();
                    copy.clear();
                    copy.extend_from_slice(&frame);
                    self.queues[port].push_back(copy);
                }
                self.recycle(frame);
            }
        }
    }

    /// Keeps a consumed frame's buffer for reuse.
    fn recycle(&mut self, frame: Vec<u8>) {
        if self.spare.len() < 64 {
            self.spare.push(frame);
        }
    }
}

/// A link: create it, then take its two ports.
#[derive(Clone)]
pub struct Link {
    wire: Rc<RefCell<Wire>>,
}

impl Link {
    /// A link with the given faults: a cable with two ports.
    pub fn new(faults: Faults) -> Self {
        Link::switch(faults, 2)
    }

    /// A switch with `ports` ports (at least 2) and the given faults. Two ports are a cable.
    pub fn switch(faults: Faults, ports: usize) -> Self {
        assert!(ports >= 2, "a link has at least two ports");
        let rng = Dice::new(faults.seed);
        let wire = Wire {
            queues: (0..ports).map(|_| VecDeque::new()).collect(),
            learned: HashMap::new(),
            spare: Vec::new(),
            faults,
            rng,
            pcap: None,
            stats: LinkStats::default(),
            checksummed: false,
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

    /// From now on the devices compute and check checksums even on a link without corruption:
    /// call it before building the devices when a real stack (the kernel's, through an
    /// [`Uplink`](crate::uplink::Uplink)) is on the link, since it drops what fails them.
    pub fn checksummed(&self) {
        self.wire.borrow_mut().checksummed = true;
    }

    /// Writes buffered capture records out.
    pub fn flush_capture(&self) -> std::io::Result<()> {
        match self.wire.borrow_mut().pcap.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }

    /// The port `side`: 0 and 1 on a cable, `0..ports` on a switch.
    pub fn port(&self, side: usize) -> Port {
        assert!(side < self.ports(), "no port {side} on this link");
        Port {
            wire: self.wire.clone(),
            side,
        }
    }

    /// How many ports the link has.
    pub fn ports(&self) -> usize {
        self.wire.borrow().queues.len()
    }

    /// Whether frames wait for port `side` (its interface has something to receive).
    pub fn pending(&self, side: usize) -> bool {
        self.wire.borrow().queues.get(side).is_some_and(|q| !q.is_empty())
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
        if wire.faults.corrupt == 0.0 && !wire.checksummed {
            // Nothing on this cable damages a frame, so IP, TCP and UDP checksums would only
            // cost time. With corruption on, they are computed and checked, like a real NIC's FCS;
            // with a real stack on the link, for its sake.
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
                from: self.side,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken> {
        Some(TxToken {
            wire: self.wire.clone(),
            from: self.side,
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
        self.wire.borrow_mut().recycle(self.frame);
        r
    }
}

#[doc(hidden)]
pub struct TxToken {
    wire: Rc<RefCell<Wire>>,
    from: usize,
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
            .carry(self.from, frame, Instant::from_micros(now.as_micros() as i64));
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

    /// An Ethernet frame from `src` to `dst` (only the addresses matter to the switch).
    fn eth(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = [dst, src].concat();
        f.extend_from_slice(&[0x08, 0x00, 0xAA]);
        f
    }

    fn drain(port: &mut Port) -> usize {
        let mut n = 0;
        while let Some((rx, _)) = port.receive(Instant::ZERO) {
            rx.consume(|_| ());
            n += 1;
        }
        n
    }

    #[test]
    fn a_switch_floods_broadcasts_and_unknown_destinations_and_learns_the_rest() {
        let link = Link::switch(Faults::default(), 4);
        let mut ports: Vec<Port> = (0..4).map(|i| link.port(i)).collect();
        let mac = |i: u8| [0x02, 0, 0, 0, 0, i];
        // A broadcast from 0 reaches 1, 2 and 3, not 0 itself.
        send(&mut ports[0], &eth([0xff; 6], mac(0)));
        assert_eq!(ports.iter_mut().map(drain).collect::<Vec<_>>(), [0, 1, 1, 1]);
        // 0 was learned: a frame to it goes to port 0 only.
        send(&mut ports[2], &eth(mac(0), mac(2)));
        assert!(link.pending(0) && !link.pending(1) && !link.pending(3));
        assert_eq!(ports.iter_mut().map(drain).collect::<Vec<_>>(), [1, 0, 0, 0]);
        // 3 was never seen: flooded. Multicast (group bit) too.
        send(&mut ports[0], &eth(mac(3), mac(0)));
        assert_eq!(ports.iter_mut().map(drain).collect::<Vec<_>>(), [0, 1, 1, 1]);
        send(&mut ports[1], &eth([0x01, 0, 0x5e, 0, 0, 0xfb], mac(1)));
        assert_eq!(ports.iter_mut().map(drain).collect::<Vec<_>>(), [1, 0, 1, 1]);
        assert_eq!(link.ports(), 4);
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
