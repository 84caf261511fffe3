//! Hello (0x01): who the device is and what it can do.

use super::exec::Exec;
use super::policy::{Rule, ServedBy};
use super::{Failure, Shared, Storage};
use crate::msg;
use crate::wire::{Frame, FrameSpec, Kind, VERSION};
use heapless::Vec;

/// `Hello`: the one request served before the handshake, and everywhere.
pub(crate) const RULES: [Rule; 1] = [Rule {
    before_handshake: true,
    ..Rule::anywhere(Kind::Hello, ServedBy::Hello, false, true)
}];

/// Answers `Hello` with the device's [`msg::Info`]: its facts, its store, its clock and the
/// names of its commands (`exec`'s table).
pub(super) fn serve<C, S: Storage>(
    sh: &mut Shared<'_, C, S>,
    exec: &Exec<C>,
    frame: &Frame<'_>,
    out: &mut [u8],
) -> Result<usize, Failure> {
    let req = frame.meta::<msg::Hello<'_>>().map_err(|c| (c, "hello metadata"))?;
    super::within(req.client, msg::MAX_CLIENT_LEN, "Hello.client is longer than 32 bytes")?;
    let mut commands: Vec<&str, { msg::MAX_COMMANDS }> = Vec::new();
    for name in exec.names() {
        if commands.push(name).is_err() {
            break;
        }
    }
    let facts = sh.facts;
    let info = msg::Info {
        version: VERSION,
        device: facts.config.name,
        max_frame: facts.max_frame as u32,
        max_chunk: facts.max_chunk() as u32,
        sessions: facts.sessions,
        storage_capacity: sh.storage.capacity(),
        storage_used: sh.storage.used(),
        uptime_ms: facts.uptime_ms,
        commands,
        udp_port: facts.udp_port,
        clock_synced: sh.clock.synced(),
        key_required: facts.key_required,
    };
    Ok(sh.reply(out, FrameSpec::response(Kind::Hello, frame.request_id()), &info, &[]))
}
