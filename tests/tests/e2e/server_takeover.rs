//! Uploads survive their client: the same upload from a new session takes over one whose session
//! went silent, the old session can never write into it again, and another upload of the name is
//! `Busy` only while the owning session lives. In-process against the real server, on the RAM
//! store and on the directory store.

use std::path::PathBuf;

use crate::common::*;
use tether_core::msg;
use tether_core::wire::{ErrorCode, Kind};
use tether_host::Client;
use tether_sim::inproc::{Conn, Shared, Stack, StackConfig};
use tether_sim::store::SimStore;

/// A directory for a directory store, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("tether-takeover-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `test` on a stack over the RAM store, then over a directory store.
fn on_both_stores(label: &str, test: impl Fn(&Shared)) {
    test(&stack());
    let dir = Dir::new(label);
    let store = SimStore::dir(&dir.0, 64 << 20).expect("a directory store");
    test(&Stack::with_store(StackConfig::default(), store));
}

fn begin_of<'a>(name: &'a str, bytes: &[u8]) -> msg::PutBegin<'a> {
    msg::PutBegin {
        name,
        size: bytes.len() as u64,
        sha256: sha(bytes),
        overwrite: true,
    }
}

/// Sends `PutBegin`; the offset the device resumes from, or its error code.
fn begin(c: &mut Client<Conn>, name: &str, bytes: &[u8]) -> Result<u64, ErrorCode> {
    let id = c.send(Kind::PutBegin, &begin_of(name, bytes), &[]).unwrap();
    answer!(c, id, msg::PutReady).map(|r| r.offset)
}

/// One `PutData` of `bytes[at..end]`: the total received, or the error code and message.
fn chunk(c: &mut Client<Conn>, bytes: &[u8], at: usize, end: usize) -> Result<u64, (ErrorCode, String)> {
    let id = c
        .send(Kind::PutData, &msg::PutData { offset: at as u64 }, &bytes[at..end])
        .unwrap();
    let f = c.receive(id).expect("a PutData response");
    match frame_error(&f) {
        Some(code) => Err((code, f.error().unwrap().message.to_string())),
        None => Ok(f.meta::<msg::PutAck>().unwrap().received),
    }
}

fn commit(c: &mut Client<Conn>, name: &str) -> Result<msg::FileDone, ErrorCode> {
    let id = c.send(Kind::PutCommit, &msg::NameRef { name }, &[]).unwrap();
    answer!(c, id, msg::FileDone)
}

fn abort(c: &mut Client<Conn>, name: &str) -> Result<(), ErrorCode> {
    let id = c.send(Kind::PutAbort, &msg::NameRef { name }, &[]).unwrap();
    answer!(c, id, ())
}

#[test]
fn a_silent_sessions_upload_is_taken_over_by_the_same_upload_and_resumes() {
    on_both_stores("resume", |stack| {
        let bytes = data(10 * MAX_CHUNK + 77, 1);
        let mut old = client(stack);
        assert_eq!(begin(&mut old, "fw.bin", &bytes), Ok(0));
        for i in 0..3 {
            chunk(&mut old, &bytes, i * MAX_CHUNK, (i + 1) * MAX_CHUNK).unwrap();
        }
        // The old client vanishes without a FIN: its session is still open, just silent. The
        // re-run of the same put resumes at once instead of answering Busy.
        let mut new = client(stack);
        let t = put(&mut new, "fw.bin", &bytes, true).unwrap();
        assert_eq!(
            t.resumed_from,
            3 * MAX_CHUNK as u64,
            "resumed where the old session stood"
        );
        assert!(get(&mut new, "fw.bin").unwrap() == bytes);

        // The old session is locked out, with a clear error, and writes nothing.
        let (code, message) = chunk(&mut old, &bytes, 3 * MAX_CHUNK, 4 * MAX_CHUNK).unwrap_err();
        assert_eq!(code, ErrorCode::NoTransfer);
        assert!(message.contains("taken over"), "{message}");
        assert_eq!(commit(&mut old, "fw.bin"), Err(ErrorCode::NoTransfer));
        assert_eq!(abort(&mut old, "fw.bin"), Err(ErrorCode::NoTransfer));
        assert!(get(&mut new, "fw.bin").unwrap() == bytes, "the file is untouched");
        // Its end suspends nothing of the new owner's: closing it is harmless.
        old.into_inner().abort();
        assert!(get(&mut new, "fw.bin").unwrap() == bytes);
        assert_eq!(new.echo(b"alive", false).unwrap(), b"alive");
    });
}

#[test]
fn the_old_owner_cannot_commit_abort_or_write_after_a_takeover() {
    on_both_stores("lockout", |stack| {
        let bytes = data(4 * MAX_CHUNK, 2);
        let mut old = client(stack);
        let mut new = client(stack);
        assert_eq!(begin(&mut old, "f.bin", &bytes), Ok(0));
        for i in 0..4 {
            chunk(&mut old, &bytes, i * MAX_CHUNK, (i + 1) * MAX_CHUNK).unwrap();
        }
        // Complete on the old session, but taken over before its commit.
        assert_eq!(begin(&mut new, "f.bin", &bytes), Ok(bytes.len() as u64));
        assert_eq!(commit(&mut old, "f.bin"), Err(ErrorCode::NoTransfer));
        assert_eq!(
            code(new.stat("f.bin")),
            ErrorCode::NotFound,
            "the old commit made nothing visible"
        );
        let done = commit(&mut new, "f.bin").unwrap();
        assert_eq!(done.sha256, sha(&bytes));
        assert!(get(&mut new, "f.bin").unwrap() == bytes);

        // An abort by the old owner does not discard the new owner's upload.
        let other = data(3 * MAX_CHUNK, 3);
        assert_eq!(begin(&mut old, "g.bin", &other), Ok(0));
        chunk(&mut old, &other, 0, MAX_CHUNK).unwrap();
        assert_eq!(begin(&mut new, "g.bin", &other), Ok(MAX_CHUNK as u64));
        assert_eq!(abort(&mut old, "g.bin"), Err(ErrorCode::NoTransfer));
        // Taken back and forth: each takeover locks out the one before.
        assert_eq!(begin(&mut old, "g.bin", &other), Ok(MAX_CHUNK as u64));
        assert_eq!(
            chunk(&mut new, &other, MAX_CHUNK, 2 * MAX_CHUNK).unwrap_err().0,
            ErrorCode::NoTransfer
        );
        send_rest(&mut old, &other, MAX_CHUNK);
        commit(&mut old, "g.bin").unwrap();
        assert!(get(&mut new, "g.bin").unwrap() == other);

        // Incomplete on the old connection: its commit is NoTransfer for the takeover, not
        // BadOffset (which would tell it to carry on), and so is a chunk where it never stood.
        let third = data(4 * MAX_CHUNK, 6);
        assert_eq!(begin(&mut old, "h.bin", &third), Ok(0));
        chunk(&mut old, &third, 0, MAX_CHUNK).unwrap();
        assert_eq!(begin(&mut new, "h.bin", &third), Ok(MAX_CHUNK as u64));
        chunk(&mut new, &third, MAX_CHUNK, 2 * MAX_CHUNK).unwrap();
        assert_eq!(commit(&mut old, "h.bin"), Err(ErrorCode::NoTransfer));
        assert_eq!(begin(&mut old, "h.bin", &third), Ok(2 * MAX_CHUNK as u64));
        assert_eq!(begin(&mut new, "h.bin", &third), Ok(2 * MAX_CHUNK as u64));
        let (code, message) = chunk(&mut old, &third, 3 * MAX_CHUNK, 4 * MAX_CHUNK).unwrap_err();
        assert_eq!(code, ErrorCode::NoTransfer, "{message}");
        send_rest(&mut new, &third, 2 * MAX_CHUNK);
        assert_eq!(commit(&mut new, "h.bin").unwrap().sha256, sha(&third));
    });
}

#[test]
fn another_upload_is_busy_while_the_owner_lives_and_replaces_it_once_it_ended() {
    on_both_stores("busy", |stack| {
        let mine = data(5 * MAX_CHUNK, 4);
        let mut theirs = mine.clone();
        theirs[10] ^= 0xff; // same size, another digest
        let mut owner = client(stack);
        let mut other = client(stack);
        assert_eq!(begin(&mut owner, "cfg.bin", &mine), Ok(0));
        chunk(&mut owner, &mine, 0, MAX_CHUNK).unwrap();
        assert_eq!(code(put(&mut other, "cfg.bin", &theirs, true)), ErrorCode::Busy);
        assert_eq!(code(put(&mut other, "cfg.bin", b"short", true)), ErrorCode::Busy);
        // The owner's session ends (here by a reset, like a crashed client): the upload is
        // suspended, and another upload of the name replaces it.
        owner.into_inner().abort();
        let t = put(&mut other, "cfg.bin", &theirs, true).unwrap();
        assert_eq!(t.resumed_from, 0, "a different upload starts over");
        assert!(get(&mut other, "cfg.bin").unwrap() == theirs);
        // Nothing of the replaced upload is left holding room.
        assert_eq!(other.hello("t").unwrap().storage_used, theirs.len() as u64);
    });
}

#[test]
fn an_ended_sessions_upload_resumes_from_a_new_session() {
    on_both_stores("ended", |stack| {
        let bytes = data(6 * MAX_CHUNK + 5, 5);
        let mut first = client(stack);
        assert_eq!(begin(&mut first, "log.bin", &bytes), Ok(0));
        chunk(&mut first, &bytes, 0, MAX_CHUNK).unwrap();
        chunk(&mut first, &bytes, MAX_CHUNK, 2 * MAX_CHUNK).unwrap();
        first.into_inner().abort();
        let mut second = client(stack);
        assert_eq!(
            put(&mut second, "log.bin", &bytes, true).unwrap().resumed_from,
            2 * MAX_CHUNK as u64
        );
        assert!(get(&mut second, "log.bin").unwrap() == bytes);
    });
}
