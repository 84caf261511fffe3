//! List, Stat and Remove.

use heapless::Vec;

use super::{FileName, Storage};
use crate::msg;
use crate::service::{Conn, Failure, Shared, Stream};
use crate::wire::{Frame, FrameSpec, Kind, MAX_META_LEN};

/// Answers `List`: its first page, the rest as `conn`'s stream.
pub(in crate::service) fn list<C, S: Storage>(
    sh: &mut Shared<'_, C, S>,
    conn: &mut Conn,
    frame: &Frame<'_>,
    out: &mut [u8],
) -> Result<usize, Failure> {
    let req = frame.meta::<msg::ListRequest>().map_err(|c| (c, "list metadata"))?;
    let (n, next) = list_step(sh, frame.request_id(), req.start, out);
    conn.stream = next;
    Ok(n)
}

/// The next page of a listing, from entry `start`; returns its length and what the stream does
/// next.
pub(in crate::service) fn list_step<C, S: Storage>(
    sh: &mut Shared<'_, C, S>,
    id: u32,
    start: u32,
    out: &mut [u8],
) -> (usize, Stream) {
    // A page holds up to LIST_PAGE entries, and fewer when long names would push its
    // metadata past MAX_META_LEN (8 names of 64 bytes would).
    let mut names: Vec<(FileName, u64), { msg::LIST_PAGE }> = Vec::new();
    let mut name = FileName::new();
    let mut meta_len = 1; // the entry count
    let mut next = start;
    while !names.is_full() {
        let Some(size) = sh.storage.entry(next as usize, &mut name) else {
            break;
        };
        let cost = varint_len(name.len() as u64) + name.len() + varint_len(size);
        if meta_len + cost > MAX_META_LEN {
            break;
        }
        meta_len += cost;
        let _ = names.push((name.clone(), size));
        next += 1;
    }
    let more = sh.storage.entry(next as usize, &mut name).is_some();
    let entries = names
        .iter()
        .map(|(n, size)| msg::Entry { name: n, size: *size })
        .collect();
    let page = msg::ListPage { entries };
    if more {
        (
            sh.reply(out, FrameSpec::more(Kind::List, id), &page, &[]),
            Stream::List { id, next },
        )
    } else {
        (
            sh.reply(out, FrameSpec::response(Kind::List, id), &page, &[]),
            Stream::Idle,
        )
    }
}

/// Answers `Stat`: a file's size and digest.
pub(in crate::service) fn stat<C, S: Storage>(
    sh: &mut Shared<'_, C, S>,
    frame: &Frame<'_>,
    out: &mut [u8],
) -> Result<usize, Failure> {
    let req = frame.meta::<msg::NameRef<'_>>().map_err(|c| (c, "stat metadata"))?;
    let info = sh.storage.stat(req.name).map_err(|e| (e.into(), "stat failed"))?;
    let reply = msg::StatInfo {
        name: req.name,
        size: info.size,
        sha256: info.sha256,
    };
    Ok(sh.reply(out, FrameSpec::response(Kind::Stat, frame.request_id()), &reply, &[]))
}

/// Answers `Remove`.
pub(in crate::service) fn remove<C, S: Storage>(
    sh: &mut Shared<'_, C, S>,
    frame: &Frame<'_>,
    out: &mut [u8],
) -> Result<usize, Failure> {
    let req = frame.meta::<msg::NameRef<'_>>().map_err(|c| (c, "remove metadata"))?;
    sh.storage.remove(req.name).map_err(|e| (e.into(), "remove failed"))?;
    Ok(sh.reply(out, FrameSpec::response(Kind::Remove, frame.request_id()), &(), &[]))
}

/// Bytes of a postcard (LEB128) varint.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        for (v, n) in [(0u64, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (u64::MAX, 10)] {
            let mut buf = [0u8; 16];
            assert_eq!(postcard::to_slice(&v, &mut buf).unwrap().len(), n, "{v}");
            assert_eq!(varint_len(v), n, "{v}");
        }
    }
}
