//! A port of a [`Link`] switch wired to a real network interface (`sim --devices N --tap`): every
//! device of the fleet sits on the TAP's segment, as boards plugged into one switch with the PC's
//! interface on another of its ports.
//!
//! The uplink moves whole Ethernet frames both ways and nothing else: the switch learns where the
//! PC's MAC is, applies the link's faults to what the PC sends, and captures it like any frame.

use smoltcp::phy::{Device, RxToken as _, TxToken as _};
use smoltcp::time::Instant;

use crate::link::Port;

/// The most frames moved each way in one [`Uplink::pump`], so a flood on one side cannot starve
/// the devices' polls.
const BURST: usize = 64;

/// A switch port and the interface (`phy`) it is wired to.
pub struct Uplink<D: Device> {
    /// The real interface (a TAP, or any smoltcp `phy::Device`).
    pub phy: D,
    port: Port,
}

impl<D: Device> Uplink<D> {
    /// Wires `phy` to the switch `port`.
    pub fn new(phy: D, port: Port) -> Self {
        Uplink { phy, port }
    }

    /// Moves the frames waiting on either side to the other (up to [`BURST`] each way); returns
    /// whether any moved.
    pub fn pump(&mut self, now: Instant) -> bool {
        let up = carry(&mut self.phy, &mut self.port, now);
        carry(&mut self.port, &mut self.phy, now) | up
    }
}

/// Copies up to [`BURST`] frames waiting on `from` out of `to`; returns whether any moved. When
/// `to` has no room, the frame taken is dropped, as a switch does with a full queue, and the rest
/// wait for the next pump.
fn carry(from: &mut impl Device, to: &mut impl Device, now: Instant) -> bool {
    let mut moved = false;
    for _ in 0..BURST {
        let Some((rx, _)) = from.receive(now) else {
            break;
        };
        let Some(tx) = to.transmit(now) else {
            break;
        };
        rx.consume(|frame| tx.consume(frame.len(), |b| b.copy_from_slice(frame)));
        moved = true;
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{Faults, Link};

    /// Sends `frame` out of `port`.
    fn send(port: &mut Port, frame: &[u8]) {
        port.transmit(Instant::ZERO)
            .expect("a port always transmits")
            .consume(frame.len(), |b| b.copy_from_slice(frame));
    }

    /// The next frame waiting for `port`.
    fn take(port: &mut Port) -> Option<Vec<u8>> {
        let (rx, _) = port.receive(Instant::ZERO)?;
        Some(rx.consume(|f| f.to_vec()))
    }

    #[test]
    fn frames_cross_both_ways_and_unicast_reaches_only_its_port() {
        // A switch with two devices and the uplink; the uplink's far side is a cable whose other
        // end plays the PC's interface.
        let switch = Link::switch(Faults::default(), 3);
        let cable = Link::new(Faults::default());
        let (mut dev0, mut dev1) = (switch.port(0), switch.port(1));
        let mut pc = cable.port(1);
        let mut uplink = Uplink::new(cable.port(0), switch.port(2));
        let (pc_mac, dev0_mac) = ([0x02, 0, 0, 0, 0, 0xaa], [0x02, 0, 0, 0, 0, 0x01]);

        // The PC broadcasts: both devices get it.
        let hello = [&[0xff; 6][..], &pc_mac, &[0x08, 0x06]].concat();
        send(&mut pc, &hello);
        assert!(uplink.pump(Instant::ZERO));
        assert_eq!(take(&mut dev0).as_deref(), Some(&hello[..]));
        assert_eq!(take(&mut dev1).as_deref(), Some(&hello[..]));

        // Device 0 answers the PC's MAC, learned on the uplink's port: only the PC gets it.
        let answer = [&pc_mac[..], &dev0_mac, &[0x08, 0x06]].concat();
        send(&mut dev0, &answer);
        assert!(take(&mut dev1).is_none());
        assert!(uplink.pump(Instant::ZERO));
        assert_eq!(take(&mut pc).as_deref(), Some(&answer[..]));

        // The PC to device 0 (learned now): device 1 does not see it.
        let unicast = [&dev0_mac[..], &pc_mac, &[0x08, 0x00]].concat();
        send(&mut pc, &unicast);
        uplink.pump(Instant::ZERO);
        assert_eq!(take(&mut dev0).as_deref(), Some(&unicast[..]));
        assert!(take(&mut dev1).is_none());
        assert!(!uplink.pump(Instant::ZERO), "nothing left to move");
    }
}
