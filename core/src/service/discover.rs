//! Discover (0x05): who the device is and where to reach it, for hosts looking for devices.
//!
//! A host sends a `Discover` datagram to one address, to a range of them, or to a broadcast
//! address, and every device that gets it answers with its [`msg::Presence`]: its id, name,
//! protocol and firmware versions, framed ports, whether it requires its key, and its own
//! addresses. The UDP port's rule that no answer is larger than its request holds as for every
//! kind (`docs/PROTOCOL.md` §1, §19): a probe padded to [`msg::MAX_PRESENCE_FRAME`] bytes always
//! gets its answer.

use super::policy::{Rule, ServedBy};
use crate::wire::Kind;
#[cfg(feature = "discover")]
use {
    super::{cut_to, Failure, Shared},
    crate::msg,
    crate::wire::{ErrorCode, Frame, FrameSpec, VERSION},
    heapless::{String, Vec},
};

/// `Discover`: served everywhere it can be asked, a keyed device's UDP port included, since it
/// changes nothing and tells no more than `Hello` does (plus addresses and ports a peer that
/// reached the device can see anyway); a session before its handshake asks `Hello` instead.
pub(crate) const RULES: [Rule; 1] = [Rule::anywhere(Kind::Discover, ServedBy::Discover, false, true)];

/// What `Discover` reports beyond the facts every service shares: set by the application (id,
/// firmware version) and by the server (its TCP port, the interface's addresses).
#[cfg(feature = "discover")]
#[derive(Debug, Clone, Default)]
pub(crate) struct Discovery {
    /// The device's unique id (0: not set; the server then uses the interface's MAC address).
    pub(crate) id: u64,
    /// The firmware's version.
    pub(crate) firmware: String<{ msg::MAX_FIRMWARE_LEN }>,
    /// The framed TCP port peers reach.
    pub(crate) tcp_port: u16,
    /// The device's own IPv4 addresses.
    pub(crate) addresses: Vec<[u8; 4], { msg::MAX_ADDRESSES }>,
}

#[cfg(feature = "discover")]
impl Discovery {
    /// Sets the firmware version, cut to [`msg::MAX_FIRMWARE_LEN`] bytes at a character boundary.
    pub(crate) fn set_firmware(&mut self, version: &str) {
        self.firmware.clear();
        // Cut to the capacity first, so the push always fits.
        let _ = self.firmware.push_str(cut_to(version, msg::MAX_FIRMWARE_LEN));
    }

    /// Sets the addresses (the first [`msg::MAX_ADDRESSES`] of them).
    pub(crate) fn set_addresses(&mut self, addresses: &[[u8; 4]]) {
        if self.addresses.as_slice() != addresses {
            self.addresses.clear();
            for a in addresses.iter().take(msg::MAX_ADDRESSES) {
                let _ = self.addresses.push(*a);
            }
        }
    }
}

/// Answers `Discover` with the device's [`msg::Presence`].
#[cfg(feature = "discover")]
pub(super) fn serve<C, S>(
    sh: &mut Shared<'_, C, S>,
    discovery: &Discovery,
    frame: &Frame<'_>,
    out: &mut [u8],
) -> Result<usize, Failure> {
    frame.meta::<()>().map_err(|c| (c, "discover takes no metadata"))?;
    if !frame.body.is_empty() {
        return Err((ErrorCode::InvalidArgument, "discover takes no body"));
    }
    let facts = sh.facts;
    let presence = presence(discovery, &facts);
    Ok(sh.reply(
        out,
        FrameSpec::response(Kind::Discover, frame.request_id()),
        &presence,
        &[],
    ))
}

/// The device's [`msg::Presence`]: what `Discover` answers and mDNS announces.
#[cfg(feature = "discover")]
pub(super) fn presence<'a>(discovery: &'a Discovery, facts: &super::Facts<'a>) -> msg::Presence<'a> {
    msg::Presence {
        version: VERSION,
        id: discovery.id,
        name: facts.config.name,
        firmware: &discovery.firmware,
        tcp_port: discovery.tcp_port,
        udp_port: facts.udp_port,
        key_required: facts.key_required,
        addresses: discovery.addresses.clone(),
    }
}

/// The id of a device whose MAC address is `mac` (6 bytes): the address as a 48-bit number.
#[cfg(all(feature = "smoltcp", feature = "discover"))]
pub(crate) fn id_of_mac(mac: &[u8]) -> u64 {
    mac.iter().take(6).fold(0, |id, b| id << 8 | u64::from(*b))
}
