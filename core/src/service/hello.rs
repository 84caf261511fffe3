//! Hello (0x01): who the device is and what it can do.

use super::policy::{Rule, ServedBy};
use super::stats::Service;
use super::{Context, Device, Failure, Storage};
use crate::msg;
use crate::wire::{Frame, FrameSpec, Kind, VERSION};
use heapless::Vec;

/// `Hello`: the one request served before the handshake, and everywhere.
pub(crate) const RULES: [Rule; 1] = [Rule {
    before_handshake: true,
    ..Rule::anywhere(Kind::Hello, ServedBy::Hello, false, true)
}];

impl<C: Context + 'static, S: Storage> Device<'_, C, S> {
    pub(super) fn hello(&mut self, frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
        self.stats.count(Service::Hello);
        let req = frame.meta::<msg::Hello<'_>>().map_err(|c| (c, "hello metadata"))?;
        super::within(req.client, msg::MAX_CLIENT_LEN, "Hello.client is longer than 32 bytes")?;
        let mut commands: Vec<&str, { msg::MAX_COMMANDS }> = Vec::new();
        let _ = commands.push("help");
        for c in self.commands {
            if commands.push(c.name).is_err() {
                break;
            }
        }
        let info = msg::Info {
            version: VERSION,
            device: self.config.name,
            max_frame: self.max_frame as u32,
            max_chunk: self.max_chunk() as u32,
            sessions: self.sessions,
            storage_capacity: self.storage.capacity(),
            storage_used: self.storage.used(),
            uptime_ms: self.uptime_ms,
            commands,
            udp_port: self.udp_port,
            clock_synced: self.clock.synced(),
            key_required: self.key_required(),
        };
        Ok(self.reply(out, FrameSpec::response(Kind::Hello, frame.request_id()), &info, &[]))
    }
}
