//! Echo (0x02) and Upper (0x03): the body back, as sent or upper-cased.

use super::policy::{Rule, ServedBy};
use super::Failure;
use crate::codec::encode_with;
use crate::wire::{ErrorCode, Frame, FrameSpec, Kind};

/// `Echo`, `Upper`: served everywhere, change nothing.
pub(crate) const RULES: [Rule; 2] = [
    Rule::anywhere(Kind::Echo, ServedBy::Echo, false, true),
    Rule::anywhere(Kind::Upper, ServedBy::Echo, false, true),
];

/// Answers `Echo` or `Upper`.
pub(super) fn serve(frame: &Frame<'_>, out: &mut [u8]) -> Result<usize, Failure> {
    // Echo and Upper take no metadata: bytes there are not the empty message the kind expects,
    // so `Malformed` like any other metadata that does not decode (`docs/PROTOCOL.md` §8).
    frame.meta::<()>().map_err(|c| (c, "echo and upper take no metadata"))?;
    let spec = FrameSpec::response(frame.kind(), frame.request_id());
    let upper = frame.kind() == Kind::Upper;
    let body = frame.body;
    encode_with(out, spec, &(), |room| {
        let room = room.get_mut(..body.len()).ok_or(body.len())?;
        room.copy_from_slice(body);
        if upper {
            room.make_ascii_uppercase();
        }
        Ok(body.len())
    })
    .map_err(|_| (ErrorCode::TooLarge, "echo body exceeds the response buffer"))
}
