//! Every error path of the file services, in-process against the real server.

use crate::common::*;
use tether_core::msg;
use tether_core::wire::{ErrorCode, Kind};
use tether_sim::inproc::{Stack, StackConfig};

#[test]
fn not_found_for_get_stat_remove() {
    let stack = stack();
    let mut c = client(&stack);
    assert_eq!(code(c.stat("missing.txt")), ErrorCode::NotFound);
    assert_eq!(code(get(&mut c, "missing.txt")), ErrorCode::NotFound);
    assert_eq!(code(c.remove("missing.txt")), ErrorCode::NotFound);
    put(&mut c, "here.txt", b"here", false).unwrap();
    c.remove("here.txt").unwrap();
    assert_eq!(code(c.remove("here.txt")), ErrorCode::NotFound, "removed twice");
    assert_eq!(code(c.stat("here.txt")), ErrorCode::NotFound);
    assert_eq!(code(get(&mut c, "here.txt")), ErrorCode::NotFound);
    // Names are case-sensitive.
    put(&mut c, "Case.txt", b"x", false).unwrap();
    assert_eq!(code(c.stat("case.txt")), ErrorCode::NotFound);
    assert_eq!(c.echo(b"alive", false).unwrap(), b"alive");
}

#[test]
fn already_exists_without_overwrite_and_replacement_only_at_commit() {
    let stack = stack();
    let mut a = client(&stack);
    let mut b = client(&stack);
    let old = data(1000, 1);
    put(&mut a, "f.bin", &old, false).unwrap();
    let new = data(3 * MAX_CHUNK + 123, 2);
    assert_eq!(code(put(&mut a, "f.bin", &new, false)), ErrorCode::AlreadyExists);
    assert!(get(&mut b, "f.bin").unwrap() == old, "a refused upload changes nothing");
    assert_eq!(names(&mut b), ["f.bin"]);

    // Overwrite, by hand, stopping halfway.
    let begin = msg::PutBegin {
        name: "f.bin",
        size: new.len() as u64,
        sha256: sha(&new),
        overwrite: true,
    };
    let id = a.send(Kind::PutBegin, &begin, &[]).unwrap();
    let ready = answer!(a, id, msg::PutReady).unwrap();
    assert_eq!(ready.offset, 0);
    assert_eq!(ready.chunk as usize, MAX_CHUNK);
    let mut at = 0;
    for _ in 0..2 {
        let chunk = &new[at..at + MAX_CHUNK];
        let id = a
            .send(Kind::PutData, &msg::PutData { offset: at as u64 }, chunk)
            .unwrap();
        at += chunk.len();
        assert_eq!(answer!(a, id, msg::PutAck).unwrap().received, at as u64);
    }
    // During the upload, other sessions see the old file, whole.
    assert!(get(&mut b, "f.bin").unwrap() == old, "old content during the upload");
    assert_eq!(b.stat("f.bin").unwrap(), (old.len() as u64, sha(&old)));
    assert_eq!(
        b.list()
            .unwrap()
            .iter()
            .map(|f| (f.name.as_str(), f.size))
            .collect::<Vec<_>>(),
        [("f.bin", 1000)]
    );
    // Finish and commit: now everyone sees the new file.
    send_rest(&mut a, &new, at);
    assert!(get(&mut b, "f.bin").unwrap() == old, "still old before the commit");
    let id = a.send(Kind::PutCommit, &msg::NameRef { name: "f.bin" }, &[]).unwrap();
    let done = answer!(a, id, msg::FileDone).unwrap();
    assert_eq!((done.size, done.sha256), (new.len() as u64, sha(&new)));
    assert!(get(&mut b, "f.bin").unwrap() == new, "new content after the commit");
    assert_eq!(names(&mut b), ["f.bin"], "replaced, not added");
    assert_eq!(
        b.hello("t").unwrap().storage_used,
        new.len() as u64,
        "the old bytes are freed"
    );

    // The client's own put with overwrite.
    let t = put(&mut a, "f.bin", &old, true).unwrap();
    assert_eq!(t.resumed_from, 0);
    assert!(get(&mut b, "f.bin").unwrap() == old);
}

#[test]
fn no_space_for_a_file_larger_than_the_store() {
    let capacity = 64 * 1024;
    let stack = Stack::new(StackConfig {
        store_capacity: capacity,
        ..StackConfig::default()
    });
    let mut c = client(&stack);
    assert_eq!(
        code(put(&mut c, "huge.bin", &data(capacity + 1, 1), false)),
        ErrorCode::NoSpace
    );
    assert_eq!(c.hello("t").unwrap().storage_used, 0, "nothing reserved");
    // Exactly the capacity fits.
    let full = data(capacity, 2);
    put(&mut c, "full.bin", &full, false).unwrap();
    assert_eq!(code(put(&mut c, "one-more", b"x", false)), ErrorCode::NoSpace);
    c.remove("full.bin").unwrap();
    // Two files that do not fit together.
    let a = data(40 * 1024, 3);
    put(&mut c, "a.bin", &a, false).unwrap();
    assert_eq!(
        code(put(&mut c, "b.bin", &data(30 * 1024, 4), false)),
        ErrorCode::NoSpace
    );
    assert_eq!(names(&mut c), ["a.bin"]);
    // A replacement needs room for both copies until its commit.
    assert_eq!(
        code(put(&mut c, "a.bin", &data(30 * 1024, 5), true)),
        ErrorCode::NoSpace
    );
    assert!(get(&mut c, "a.bin").unwrap() == a, "the old file is intact");
    put(&mut c, "b.bin", &data(24 * 1024, 6), false).unwrap();
    assert_eq!(c.hello("t").unwrap().storage_used, 64 * 1024);
    // A NoSpace error leaves the session usable.
    assert_eq!(c.echo(b"ok", true).unwrap(), b"OK");
}

#[test]
fn no_space_when_the_file_table_is_full() {
    let stack = stack();
    let mut c = client(&stack);
    let files = tether_sim::device::FILES;
    for i in 0..files {
        put(&mut c, &format!("t{i}"), &[i as u8], false).unwrap();
    }
    assert_eq!(code(put(&mut c, "one-too-many", b"x", false)), ErrorCode::NoSpace);
    assert_eq!(c.list().unwrap().len(), files);
    // Overwriting needs a second entry until the commit, so it is refused too.
    assert_eq!(code(put(&mut c, "t0", b"y", true)), ErrorCode::NoSpace);
    c.remove("t5").unwrap();
    put(&mut c, "one-too-many", b"x", false).unwrap();
    assert_eq!(get(&mut c, "t0").unwrap(), [0]);
}

#[test]
fn digest_mismatch_discards_the_upload() {
    let stack = stack();
    let mut c = client(&stack);
    let mut other = client(&stack);
    let bytes = data(2 * MAX_CHUNK + 5, 1);
    let mut wrong = sha(&bytes);
    wrong[0] ^= 1;
    let r = c.put(
        "d.bin",
        &mut std::io::Cursor::new(&bytes),
        bytes.len() as u64,
        wrong,
        false,
        |_| {},
    );
    assert_eq!(code(r), ErrorCode::DigestMismatch);
    assert_eq!(
        code(other.stat("d.bin")),
        ErrorCode::NotFound,
        "no file becomes visible"
    );
    assert!(names(&mut other).is_empty());
    assert_eq!(
        other.hello("t").unwrap().storage_used,
        0,
        "the pending bytes are dropped"
    );

    // With an old file of that name: it stays intact.
    let old = data(500, 2);
    put(&mut c, "d.bin", &old, false).unwrap();
    let r = c.put(
        "d.bin",
        &mut std::io::Cursor::new(&bytes),
        bytes.len() as u64,
        wrong,
        true,
        |_| {},
    );
    assert_eq!(code(r), ErrorCode::DigestMismatch);
    assert!(get(&mut other, "d.bin").unwrap() == old, "old file intact");
    assert_eq!(other.stat("d.bin").unwrap(), (500, sha(&old)));
    assert_eq!(other.hello("t").unwrap().storage_used, 500);

    // A correct upload afterwards works from the start (nothing left to resume).
    let t = put(&mut c, "d.bin", &bytes, true).unwrap();
    assert_eq!(t.resumed_from, 0);
    assert!(get(&mut other, "d.bin").unwrap() == bytes);
}

#[test]
fn bad_offset_for_data_out_of_place() {
    let stack = stack();
    let mut c = client(&stack);
    let bytes = data(100, 1);
    let begin = msg::PutBegin {
        name: "o.bin",
        size: 100,
        sha256: sha(&bytes),
        overwrite: false,
    };
    let id = c.send(Kind::PutBegin, &begin, &[]).unwrap();
    assert_eq!(answer!(c, id, msg::PutReady).unwrap().offset, 0);
    // Ahead of where the upload stands.
    let id = c
        .send(Kind::PutData, &msg::PutData { offset: 5 }, &bytes[5..10])
        .unwrap();
    assert_eq!(answer!(c, id, msg::PutAck), Err(ErrorCode::BadOffset));
    let id = c
        .send(Kind::PutData, &msg::PutData { offset: 0 }, &bytes[..40])
        .unwrap();
    assert_eq!(answer!(c, id, msg::PutAck).unwrap().received, 40);
    // Behind it (a repeated chunk).
    let id = c
        .send(Kind::PutData, &msg::PutData { offset: 0 }, &bytes[..40])
        .unwrap();
    assert_eq!(answer!(c, id, msg::PutAck), Err(ErrorCode::BadOffset));
    // Past the announced size.
    let id = c
        .send(Kind::PutData, &msg::PutData { offset: 40 }, &data(61, 9))
        .unwrap();
    assert_eq!(answer!(c, id, msg::PutAck), Err(ErrorCode::BadOffset));
    // A commit before all bytes are in fails, and makes nothing visible.
    let id = c.send(Kind::PutCommit, &msg::NameRef { name: "o.bin" }, &[]).unwrap();
    let early = answer!(c, id, msg::FileDone).unwrap_err();
    assert!(
        matches!(early, ErrorCode::BadOffset | ErrorCode::DigestMismatch),
        "{early:?}"
    );
    assert_eq!(code(c.stat("o.bin")), ErrorCode::NotFound);
    // The refusals did not disturb the upload: it carries on from the last acknowledged byte.
    let id = c
        .send(Kind::PutData, &msg::PutData { offset: 40 }, &bytes[40..])
        .unwrap();
    assert_eq!(answer!(c, id, msg::PutAck).unwrap().received, 100);
    let id = c.send(Kind::PutCommit, &msg::NameRef { name: "o.bin" }, &[]).unwrap();
    assert_eq!(answer!(c, id, msg::FileDone).unwrap().sha256, sha(&bytes));
    assert_eq!(get(&mut c, "o.bin").unwrap(), bytes);

    // Downloads: an offset past the end is BadOffset; at the end, an empty stream.
    let id = c
        .send(
            Kind::Get,
            &msg::Get {
                name: "o.bin",
                offset: 101,
            },
            &[],
        )
        .unwrap();
    assert_eq!(finish_get(&mut c, id, 101, 4).unwrap_err(), ErrorCode::BadOffset);
    let id = c
        .send(
            Kind::Get,
            &msg::Get {
                name: "o.bin",
                offset: 100,
            },
            &[],
        )
        .unwrap();
    let (rest, done) = finish_get(&mut c, id, 100, 4).unwrap();
    assert!(rest.is_empty());
    assert_eq!((done.size, done.sha256), (100, sha(&bytes)));
    let id = c
        .send(
            Kind::Get,
            &msg::Get {
                name: "o.bin",
                offset: 60,
            },
            &[],
        )
        .unwrap();
    assert_eq!(finish_get(&mut c, id, 60, 4).unwrap().0, &bytes[60..]);
}

/// PROTOCOL.md §13: a `PutData` body above `PutReady.chunk` is `TooLarge`, even when its frame is
/// within `max_frame` (the metadata room a chunk leaves is not more room for data), and nothing of
/// it is written.
#[test]
fn a_chunk_above_put_ready_chunk_is_too_large_though_its_frame_fits() {
    let stack = stack();
    let mut c = client(&stack);
    let bytes = data(MAX_CHUNK + 15, 3);
    assert_eq!(
        put_begin(&mut c, "c.bin", &bytes, false).unwrap().chunk as usize,
        MAX_CHUNK
    );
    // 24 + 1 + (MAX_CHUNK + 15) = MAX_FRAME: the frame is as large as the device takes.
    let id = c.send(Kind::PutData, &msg::PutData { offset: 0 }, &bytes).unwrap();
    assert_eq!(answer!(c, id, msg::PutAck), Err(ErrorCode::TooLarge));
    let id = c
        .send(Kind::PutData, &msg::PutData { offset: 0 }, &bytes[..MAX_CHUNK + 1])
        .unwrap();
    assert_eq!(answer!(c, id, msg::PutAck), Err(ErrorCode::TooLarge));
    // Nothing was taken: the upload goes on from 0 in chunks of the size it was given.
    send_rest(&mut c, &bytes, 0);
    let id = c.send(Kind::PutCommit, &msg::NameRef { name: "c.bin" }, &[]).unwrap();
    assert_eq!(answer!(c, id, msg::FileDone).unwrap().sha256, sha(&bytes));
}

#[test]
fn invalid_names_are_refused_everywhere() {
    let stack = stack();
    let mut c = client(&stack);
    put(&mut c, "etc", b"a real file", false).unwrap();
    let long = "a".repeat(65);
    let bad = [
        "..",
        ".",
        "../x",
        "../etc",
        "/etc/passwd",
        "a/b",
        "a\\b",
        "",
        &long,
        ".hidden",
        "sp ace",
        "ü",
        "nul\0",
    ];
    for name in bad {
        assert_eq!(
            code(put(&mut c, name, b"data", false)),
            ErrorCode::InvalidName,
            "put {name:?}"
        );
        assert_eq!(
            code(put(&mut c, name, b"data", true)),
            ErrorCode::InvalidName,
            "put {name:?} overwrite"
        );
        assert_eq!(code(c.stat(name)), ErrorCode::InvalidName, "stat {name:?}");
        assert_eq!(code(get(&mut c, name)), ErrorCode::InvalidName, "get {name:?}");
        assert_eq!(code(c.remove(name)), ErrorCode::InvalidName, "remove {name:?}");
    }
    assert_eq!(names(&mut c), ["etc"]);
    // The limits themselves are fine.
    let longest = "b".repeat(64);
    for good in [longest.as_str(), "a", "x..y", "v1.2-rc_3"] {
        put(&mut c, good, good.as_bytes(), false).unwrap();
        assert_eq!(get(&mut c, good).unwrap(), good.as_bytes());
    }
}

#[test]
fn busy_while_another_session_uploads_the_same_name() {
    let stack = stack();
    let mut a = client(&stack);
    let mut b = client(&stack);
    let bytes = data(30_000, 1);
    let begin = msg::PutBegin {
        name: "same.bin",
        size: bytes.len() as u64,
        sha256: sha(&bytes),
        overwrite: false,
    };
    let id = a.send(Kind::PutBegin, &begin, &[]).unwrap();
    answer!(a, id, msg::PutReady).unwrap();
    let id = a
        .send(Kind::PutData, &msg::PutData { offset: 0 }, &bytes[..1000])
        .unwrap();
    answer!(a, id, msg::PutAck).unwrap();
    // Another upload of the name from another session: Busy, whatever the overwrite flag, be
    // it another size or the same size with another digest. (The same upload would take it
    // over: see server_takeover.rs.)
    let mut same_size = bytes.clone();
    same_size[0] ^= 1;
    assert_eq!(code(put(&mut b, "same.bin", &same_size, false)), ErrorCode::Busy);
    assert_eq!(code(put(&mut b, "same.bin", &same_size, true)), ErrorCode::Busy);
    assert_eq!(code(put(&mut b, "same.bin", b"other", true)), ErrorCode::Busy);
    // Another name is fine meanwhile.
    put(&mut b, "other.bin", b"other", false).unwrap();
    // The first upload is not disturbed.
    send_rest(&mut a, &bytes, 1000);
    let id = a
        .send(Kind::PutCommit, &msg::NameRef { name: "same.bin" }, &[])
        .unwrap();
    answer!(a, id, msg::FileDone).unwrap();
    assert!(get(&mut b, "same.bin").unwrap() == bytes);

    // An aborted upload frees the name at once.
    let id = a
        .send(
            Kind::PutBegin,
            &msg::PutBegin {
                name: "again.bin",
                ..begin
            },
            &[],
        )
        .unwrap();
    answer!(a, id, msg::PutReady).unwrap();
    assert_eq!(code(put(&mut b, "again.bin", b"mine", false)), ErrorCode::Busy);
    let id = a
        .send(Kind::PutAbort, &msg::NameRef { name: "again.bin" }, &[])
        .unwrap();
    answer!(a, id, ()).unwrap();
    assert_eq!(put(&mut b, "again.bin", b"mine", false).unwrap().resumed_from, 0);
    assert_eq!(get(&mut a, "again.bin").unwrap(), b"mine");
}

#[test]
fn no_transfer_without_put_begin() {
    let stack = stack();
    let mut c = client(&stack);
    let id = c.send(Kind::PutData, &msg::PutData { offset: 0 }, b"data").unwrap();
    assert_eq!(answer!(c, id, msg::PutAck), Err(ErrorCode::NoTransfer));
    let id = c.send(Kind::PutCommit, &msg::NameRef { name: "x.bin" }, &[]).unwrap();
    assert_eq!(answer!(c, id, msg::FileDone), Err(ErrorCode::NoTransfer));
    let id = c.send(Kind::PutAbort, &msg::NameRef { name: "x.bin" }, &[]).unwrap();
    assert_eq!(answer!(c, id, ()), Err(ErrorCode::NoTransfer));
    assert_eq!(code(c.stat("x.bin")), ErrorCode::NotFound);

    // An upload on one connection is not another connection's transfer.
    let mut other = client(&stack);
    let begin = msg::PutBegin {
        name: "x.bin",
        size: 4,
        sha256: sha(b"data"),
        overwrite: false,
    };
    let id = c.send(Kind::PutBegin, &begin, &[]).unwrap();
    answer!(c, id, msg::PutReady).unwrap();
    let id = other.send(Kind::PutData, &msg::PutData { offset: 0 }, b"data").unwrap();
    assert_eq!(answer!(other, id, msg::PutAck), Err(ErrorCode::NoTransfer));
    let id = other
        .send(Kind::PutCommit, &msg::NameRef { name: "x.bin" }, &[])
        .unwrap();
    assert_eq!(answer!(other, id, msg::FileDone), Err(ErrorCode::NoTransfer));
    // Nor is a commit or abort under another name.
    let id = c.send(Kind::PutData, &msg::PutData { offset: 0 }, b"data").unwrap();
    answer!(c, id, msg::PutAck).unwrap();
    let id = c.send(Kind::PutCommit, &msg::NameRef { name: "y.bin" }, &[]).unwrap();
    assert_eq!(answer!(c, id, msg::FileDone), Err(ErrorCode::NoTransfer));
    let id = c.send(Kind::PutAbort, &msg::NameRef { name: "y.bin" }, &[]).unwrap();
    assert_eq!(answer!(c, id, ()), Err(ErrorCode::NoTransfer));
    let id = c.send(Kind::PutCommit, &msg::NameRef { name: "x.bin" }, &[]).unwrap();
    answer!(c, id, msg::FileDone).unwrap();
    // After the commit the transfer is over.
    let id = c.send(Kind::PutData, &msg::PutData { offset: 4 }, b"more").unwrap();
    assert_eq!(answer!(c, id, msg::PutAck), Err(ErrorCode::NoTransfer));
    let id = c.send(Kind::PutCommit, &msg::NameRef { name: "x.bin" }, &[]).unwrap();
    assert_eq!(answer!(c, id, msg::FileDone), Err(ErrorCode::NoTransfer));
    assert_eq!(get(&mut other, "x.bin").unwrap(), b"data");
}

#[test]
fn malformed_metadata_is_refused() {
    let stack = stack();
    let mut c = client(&stack);
    // A Stat whose metadata is not a NameRef, and a PutBegin cut short.
    let id = c.send(Kind::Stat, &msg::ListRequest { start: 3 }, &[]).unwrap();
    assert_eq!(answer!(c, id, ()), Err(ErrorCode::Malformed));
    let id = c.send(Kind::PutBegin, &msg::NameRef { name: "x" }, &[]).unwrap();
    assert_eq!(answer!(c, id, msg::PutReady), Err(ErrorCode::Malformed));
    // Trailing bytes after valid metadata.
    let id = c
        .send(Kind::Get, &(msg::Get { name: "x", offset: 0 }, 7u8), &[])
        .unwrap();
    assert_eq!(answer!(c, id, ()), Err(ErrorCode::Malformed));
    assert_eq!(code(c.stat("x")), ErrorCode::NotFound);
}

#[test]
fn listing_long_names_splits_pages_within_the_metadata_limit() {
    let stack = stack();
    let mut c = client(&stack);
    let mut want = Vec::new();
    for i in 0..17 {
        // 64-byte names: eight of them would not fit one page's 512 bytes of metadata.
        let name = format!("{i:02}{}", "n".repeat(62));
        put(&mut c, &name, &[i as u8], false).unwrap();
        want.push(name);
    }
    want.sort();
    let mut got = names(&mut c);
    got.sort();
    assert_eq!(got, want);
    // Pages really were split: count the frames of the stream.
    let mut pages = 0;
    c.stream(Kind::List, &msg::ListRequest { start: 0 }, &[], |f| {
        let page: msg::ListPage<'_> = f.meta().expect("a list page");
        assert!(f.meta.len() <= tether_core::wire::MAX_META_LEN);
        assert!(!page.entries.is_empty());
        pages += 1;
        Ok(())
    })
    .unwrap();
    assert!(pages >= 3, "17 long names need at least 3 pages, got {pages}");
}

#[test]
fn files_cannot_be_touched_over_udp() {
    // A datagram's source is easy to forge: no file service answers on UDP.
    let stack = stack();
    let mut c = client(&stack);
    put(&mut c, "keep.txt", b"keep", false).unwrap();
    let port = stack.borrow().server.config().udp_port;
    let mut d = Stack::udp(&stack);
    for (i, kind) in [Kind::Remove, Kind::Stat].into_iter().enumerate() {
        let req = frame!(kind, 40 + i as u32, &msg::NameRef { name: "keep.txt" }, &[]);
        let r = parse(&udp_call(&mut d, port, &req));
        assert!(is_response(&r, kind, 40 + i as u32));
        assert_eq!(r.error(), Some(ErrorCode::InvalidArgument), "{kind:?}");
    }
    assert_eq!(get(&mut c, "keep.txt").unwrap(), b"keep");
    let _ = StackConfig::default();
}
