//! The simulator's directory store: sandboxing, crash safety, resume, capacity, listing; and the
//! device on it end to end.

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::common::{data, sha};
use sha2::{Digest as _, Sha256};
use tether_core::msg;
use tether_core::service::files::{FileName, Owner, Storage, StoreError, Version};
use tether_core::wire::{ErrorCode, Kind};
use tether_host::client::sha256_of;
use tether_sim::inproc::{Stack, StackConfig};
use tether_sim::store::{DirStore, SimStore};

/// A fresh `root/` (the store) and `outside/` (must stay untouched) under the temp directory,
/// removed when dropped.
struct Sandbox {
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new(test: &str) -> Sandbox {
        static N: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir().join(format!(
            "tether-dirstore-{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&base);
        let (root, outside) = (base.join("root"), base.join("outside"));
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        Sandbox { base, root, outside }
    }

    fn store(&self, capacity: u64) -> DirStore {
        DirStore::open(&self.root, capacity).unwrap()
    }

    /// Names in a directory, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn outside_names(&self) -> Vec<String> {
        Self::names(&self.outside)
    }

    fn root_names(&self) -> Vec<String> {
        Self::names(&self.root)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// The session the direct store calls act for.
const O: Owner = Owner(1);

/// What the file service does for a whole upload: begin, chunks, commit.
fn put(s: &mut impl Storage, name: &str, bytes: &[u8], overwrite: bool) -> Result<(), StoreError> {
    let held = s.begin(name, O, bytes.len() as u64, &sha(bytes), overwrite)?;
    assert_eq!(held, 0);
    for (i, chunk) in bytes.chunks(1000).enumerate() {
        s.write(name, O, (i * 1000) as u64, chunk)?;
    }
    s.commit(name, O)
}

fn content(s: &mut impl Storage, name: &str) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    let mut buf = [0u8; 777];
    let version = s.stat(name)?.version;
    loop {
        let n = s.read(name, version, out.len() as u64, &mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn listing(s: &mut impl Storage) -> Vec<(String, u64)> {
    let mut name = FileName::new();
    (0..)
        .map_while(|i| s.entry(i, &mut name).map(|size| (name.to_string(), size)))
        .collect()
}

#[test]
fn traversal_and_hidden_names_are_refused() {
    let sb = Sandbox::new("traversal");
    fs::write(sb.base.join("x"), b"beside the root").unwrap();
    let mut s = sb.store(1 << 20);
    let d = sha(b"abc");
    for bad in [
        "..",
        "../x",
        "/etc/passwd",
        "a/b",
        ".hidden",
        ".",
        "",
        "../outside/y",
        ".tether-upload-f",
        ".tether-sha-f",
        "a\\b",
    ] {
        assert_eq!(
            s.begin(bad, O, 3, &d, true),
            Err(StoreError::InvalidName),
            "begin {bad:?}"
        );
        assert_eq!(s.stat(bad), Err(StoreError::InvalidName), "stat {bad:?}");
        assert_eq!(
            s.read(bad, Version::default(), 0, &mut [0; 8]),
            Err(StoreError::InvalidName),
            "read {bad:?}"
        );
        assert_eq!(s.remove(bad), Err(StoreError::InvalidName), "remove {bad:?}");
        assert_eq!(s.write(bad, O, 0, b"abc"), Err(StoreError::NotFound), "write {bad:?}");
        assert_eq!(s.commit(bad, O), Err(StoreError::NotFound), "commit {bad:?}");
        assert_eq!(s.abort(bad, O), Err(StoreError::NotFound), "abort {bad:?}");
        s.suspend(bad, O);
    }
    assert!(sb.root_names().is_empty(), "{:?}", sb.root_names());
    assert!(sb.outside_names().is_empty());
    assert_eq!(fs::read(sb.base.join("x")).unwrap(), b"beside the root");
    assert_eq!(Sandbox::names(&sb.base), ["outside", "root", "x"]);
}

#[test]
fn symlinks_to_outside_are_never_followed() {
    let sb = Sandbox::new("symlink");
    let secret = sb.outside.join("secret.txt");
    fs::write(&secret, b"secret").unwrap();
    symlink(&secret, sb.root.join("link.txt")).unwrap();
    symlink(&sb.outside, sb.root.join("linkdir")).unwrap();
    symlink(sb.outside.join("ghost-target"), sb.root.join("ghost")).unwrap();
    // Planted where the store keeps its own files, before it starts and while it runs.
    symlink(&secret, sb.root.join(".tether-sha-real.txt")).unwrap();
    symlink(
        sb.outside.join("planted-upload"),
        sb.root.join(".tether-upload-early.bin"),
    )
    .unwrap();
    symlink(&secret, sb.root.join(".tether-upmeta-early.bin")).unwrap();
    let mut s = sb.store(1 << 20);

    put(&mut s, "real.txt", b"inside", false).unwrap();
    assert_eq!(
        listing(&mut s),
        [("real.txt".to_string(), 6)],
        "symlinks are not listed"
    );
    for name in ["link.txt", "linkdir", "ghost"] {
        assert_eq!(s.stat(name), Err(StoreError::NotFound), "stat {name}");
        assert_eq!(
            s.read(name, Version::default(), 0, &mut [0; 16]),
            Err(StoreError::Changed),
            "read {name}: not the file that was statted"
        );
        assert_eq!(s.remove(name), Err(StoreError::NotFound), "remove {name}");
        assert_eq!(
            s.begin(name, O, 5, &sha(b"evil!"), true),
            Err(StoreError::AlreadyExists),
            "overwrite {name}"
        );
        assert_eq!(
            s.begin(name, O, 5, &sha(b"evil!"), false),
            Err(StoreError::AlreadyExists),
            "create {name}"
        );
        assert!(
            fs::symlink_metadata(sb.root.join(name))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{name} left alone"
        );
    }

    // Symlinks planted at the store's own hidden paths while it runs.
    symlink(
        sb.outside.join("planted-upload2"),
        sb.root.join(".tether-upload-new.bin"),
    )
    .unwrap();
    symlink(sb.outside.join("planted-meta2"), sb.root.join(".tether-upmeta-new.bin")).unwrap();
    let _ = fs::remove_file(sb.root.join(".tether-sha-real.txt"));
    symlink(&secret, sb.root.join(".tether-sha-real.txt")).unwrap();
    put(&mut s, "new.bin", b"new bytes", false).unwrap();
    put(&mut s, "early.bin", b"early", false).unwrap();
    assert_eq!(content(&mut s, "new.bin").unwrap(), b"new bytes");
    let info = s.stat("real.txt").unwrap();
    assert_eq!((info.size, info.sha256), (6, sha(b"inside")));
    assert_eq!(content(&mut s, "real.txt").unwrap(), b"inside");
    put(&mut s, "real.txt", b"replaced", true).unwrap();
    assert_eq!(s.stat("real.txt").unwrap().sha256, sha(b"replaced"));

    assert_eq!(fs::read(&secret).unwrap(), b"secret", "the outside file is unchanged");
    assert_eq!(sb.outside_names(), ["secret.txt"], "nothing created outside");
    let names: Vec<_> = listing(&mut s).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["early.bin", "new.bin", "real.txt"]);
}

#[test]
fn nothing_is_written_outside_the_directory() {
    let sb = Sandbox::new("outside");
    let mut s = sb.store(1 << 20);
    let big = data(50_000, 1);
    put(&mut s, "a.bin", &big, false).unwrap();
    put(&mut s, "a.bin", &data(20_000, 2), true).unwrap();
    s.begin("b.bin", O, 30_000, &sha(&big[..30_000]), false).unwrap();
    s.write("b.bin", O, 0, &big[..10_000]).unwrap();
    s.suspend("b.bin", O);
    drop(s);
    let mut s = sb.store(1 << 20);
    assert_eq!(s.begin("b.bin", O, 30_000, &sha(&big[..30_000]), false), Ok(10_000));
    s.write("b.bin", O, 10_000, &big[10_000..30_000]).unwrap();
    s.commit("b.bin", O).unwrap();
    s.stat("a.bin").unwrap();
    s.remove("a.bin").unwrap();
    s.begin("c.bin", O, 10, &sha(b"0123456789"), false).unwrap();
    s.abort("c.bin", O).unwrap();
    assert!(sb.outside_names().is_empty(), "{:?}", sb.outside_names());
    assert_eq!(Sandbox::names(&sb.base), ["outside", "root"]);
    assert_eq!(sb.root_names(), [".tether-sha-b.bin", "b.bin"]);
}

#[test]
fn interrupted_upload_leaves_the_old_file_and_no_partial_one() {
    let sb = Sandbox::new("interrupted");
    let mut s = sb.store(1 << 20);
    put(&mut s, "cfg.txt", b"old contents", false).unwrap();
    let new = data(5000, 3);
    assert_eq!(
        s.begin("cfg.txt", O, 5000, &sha(&new), false),
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(s.begin("cfg.txt", O, 5000, &sha(&new), true), Ok(0));
    assert_eq!(
        s.begin("cfg.txt", Owner(2), 4000, &sha(&new), true),
        Err(StoreError::Busy),
        "another session's other upload"
    );
    s.write("cfg.txt", O, 0, &new[..2000]).unwrap();
    assert_eq!(s.write("cfg.txt", O, 1000, &new[..10]), Err(StoreError::BadOffset));
    assert_eq!(
        s.write("cfg.txt", O, 2000, &new),
        Err(StoreError::BadOffset),
        "past the announced size"
    );
    assert_eq!(
        s.commit("cfg.txt", O),
        Err(StoreError::BadOffset),
        "incomplete upload must not commit"
    );
    assert_eq!(content(&mut s, "cfg.txt").unwrap(), b"old contents");
    assert_eq!(listing(&mut s), [("cfg.txt".to_string(), 12)]);
    assert_eq!(s.stat("cfg.txt").unwrap().sha256, sha(b"old contents"));
    s.suspend("cfg.txt", O);
    // The simulator dies (no clean shutdown) and starts again.
    drop(s);
    let mut s = sb.store(1 << 20);
    assert_eq!(content(&mut s, "cfg.txt").unwrap(), b"old contents");
    assert_eq!(listing(&mut s), [("cfg.txt".to_string(), 12)]);
    let visible: Vec<_> = sb.root_names().into_iter().filter(|n| !n.starts_with('.')).collect();
    assert_eq!(visible, ["cfg.txt"], "no partial file visible");
    assert_eq!(s.used(), 12 + 5000, "the suspended upload keeps its reservation");
}

#[test]
fn upload_resumes_after_a_restart_from_the_held_offset() {
    let sb = Sandbox::new("resume");
    let file = data(10_000, 4);
    let d = sha(&file);
    let mut s = sb.store(1 << 20);
    assert_eq!(s.begin("fw.bin", O, 10_000, &d, false), Ok(0));
    s.write("fw.bin", O, 0, &file[..4000]).unwrap();
    // A crash: no suspend, the store just goes away.
    drop(s);

    let mut s = sb.store(1 << 20);
    assert_eq!(s.stat("fw.bin"), Err(StoreError::NotFound));
    assert_eq!(
        s.begin("fw.bin", O, 10_000, &d, false),
        Ok(4000),
        "resumes where it stood"
    );
    let mut back = vec![0u8; 5000];
    assert_eq!(s.read_pending("fw.bin", O, 0, &mut back), Ok(4000));
    assert_eq!(&back[..4000], &file[..4000]);
    assert_eq!(s.read_pending("fw.bin", O, 4001, &mut back), Err(StoreError::BadOffset));
    assert_eq!(s.write("fw.bin", O, 0, &file[..10]), Err(StoreError::BadOffset));
    s.write("fw.bin", O, 4000, &file[4000..7000]).unwrap();
    s.suspend("fw.bin", O);
    drop(s);

    let mut s = sb.store(1 << 20);
    assert_eq!(s.begin("fw.bin", O, 10_000, &d, false), Ok(7000));
    s.write("fw.bin", O, 7000, &file[7000..]).unwrap();
    s.commit("fw.bin", O).unwrap();
    assert_eq!(content(&mut s, "fw.bin").unwrap(), file);
    let info = s.stat("fw.bin").unwrap();
    assert_eq!((info.size, info.sha256), (10_000, d));
    assert_eq!(sb.root_names(), [".tether-sha-fw.bin", "fw.bin"]);

    // A different digest for the same name starts over.
    let other = data(10_000, 5);
    assert_eq!(s.begin("g.bin", O, 10_000, &sha(&file), false), Ok(0));
    s.write("g.bin", O, 0, &file[..100]).unwrap();
    s.suspend("g.bin", O);
    assert_eq!(s.begin("g.bin", O, 10_000, &sha(&other), false), Ok(0));
    s.abort("g.bin", O).unwrap();
    assert_eq!(sb.root_names(), [".tether-sha-fw.bin", "fw.bin"]);
}

#[test]
fn digest_mismatch_or_abort_leaves_nothing() {
    let sb = Sandbox::new("abort");
    let mut s = sb.store(1 << 20);
    let file = data(3000, 6);
    s.begin("x.bin", O, 3000, &sha(b"something else"), false).unwrap();
    s.write("x.bin", O, 0, &file).unwrap();
    // The file service checks the digest and aborts.
    s.abort("x.bin", O).unwrap();
    assert_eq!(s.stat("x.bin"), Err(StoreError::NotFound));
    assert!(listing(&mut s).is_empty());
    assert!(sb.root_names().is_empty(), "{:?}", sb.root_names());
    assert_eq!(s.used(), 0);
}

#[test]
fn capacity_no_space_and_reclaiming_suspended_uploads() {
    let sb = Sandbox::new("capacity");
    let mut s = sb.store(1000);
    assert_eq!(s.capacity(), 1000);
    put(&mut s, "a", &[b'a'; 600], false).unwrap();
    assert_eq!(s.used(), 600);
    assert_eq!(s.begin("big", O, 1001, &sha(b""), false), Err(StoreError::NoSpace));
    assert_eq!(s.begin("b", O, 401, &sha(b""), false), Err(StoreError::NoSpace));
    let b = [b'b'; 400];
    assert_eq!(s.begin("b", O, 400, &sha(&b), false), Ok(0));
    assert_eq!(s.used(), 1000, "a pending upload reserves its size");
    s.write("b", O, 0, &b[..100]).unwrap();
    s.suspend("b", O);
    let c = [b'c'; 300];
    // Only by reclaiming the suspended upload of b is there room for c.
    assert_eq!(s.begin("c", O, 300, &sha(&c), false), Ok(0));
    assert_eq!(s.begin("c", Owner(2), 200, &sha(&c), false), Err(StoreError::Busy));
    assert_eq!(
        s.begin("b", O, 400, &sha(&b), false),
        Err(StoreError::NoSpace),
        "b was reclaimed"
    );
    s.write("c", O, 0, &c).unwrap();
    s.commit("c", O).unwrap();
    assert_eq!(s.used(), 900);
    s.remove("a").unwrap();
    assert_eq!(s.used(), 300);
    assert_eq!(s.remove("a"), Err(StoreError::NotFound));
    // Files copied in by hand can exceed the budget: used never exceeds capacity, nothing fits.
    fs::write(sb.root.join("huge.bin"), vec![0u8; 5000]).unwrap();
    assert_eq!(s.used(), 1000);
    assert_eq!(s.begin("d", O, 1, &sha(b"d"), false), Err(StoreError::NoSpace));
    assert_eq!(s.stat("huge.bin").unwrap().sha256, sha(&[0u8; 5000]));
}

#[test]
fn list_is_sorted_and_skips_hidden_and_odd_entries() {
    let sb = Sandbox::new("list");
    for (name, len) in [
        ("b", 2),
        ("a", 1),
        ("C", 3),
        ("a.txt", 4),
        ("Z-1", 5),
        (".hidden", 6),
        ("has space", 7),
    ] {
        fs::write(sb.root.join(name), vec![b'x'; len]).unwrap();
    }
    fs::create_dir(sb.root.join("subdir")).unwrap();
    symlink(sb.root.join("a"), sb.root.join("lnk")).unwrap();
    let mut s = sb.store(1 << 20);
    let want: Vec<(String, u64)> = [("C", 3), ("Z-1", 5), ("a", 1), ("a.txt", 4), ("b", 2)]
        .iter()
        .map(|(n, l)| (n.to_string(), *l))
        .collect();
    assert_eq!(listing(&mut s), want);
    put(&mut s, "aa", b"zz", false).unwrap();
    s.begin("pending", O, 10, &sha(b"0123456789"), false).unwrap();
    let names: Vec<_> = listing(&mut s).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["C", "Z-1", "a", "a.txt", "aa", "b"],
        "pending uploads and sidecars are not listed"
    );
    assert_eq!(s.used(), 15 + 2 + 10);
    assert_eq!(s.stat("subdir"), Err(StoreError::NotFound));
    assert_eq!(s.stat("has space"), Err(StoreError::InvalidName));
}

#[test]
fn digest_cache_follows_files_edited_by_hand() {
    let sb = Sandbox::new("digest");
    let mut s = sb.store(1 << 20);
    fs::write(sb.root.join("manual.txt"), b"first version").unwrap();
    assert_eq!(s.stat("manual.txt").unwrap().sha256, sha(b"first version"));
    assert!(sb.root.join(".tether-sha-manual.txt").exists(), "digest cached");
    assert_eq!(s.stat("manual.txt").unwrap().sha256, sha(b"first version"));
    std::thread::sleep(Duration::from_millis(20));
    fs::write(sb.root.join("manual.txt"), b"other version").unwrap();
    assert_eq!(
        s.stat("manual.txt").unwrap().sha256,
        sha(b"other version"),
        "same size, new content"
    );
    fs::write(sb.root.join(".tether-sha-manual.txt"), b"garbage").unwrap();
    assert_eq!(s.stat("manual.txt").unwrap().sha256, sha(b"other version"));
    fs::remove_file(sb.root.join("manual.txt")).unwrap();
    assert_eq!(s.stat("manual.txt"), Err(StoreError::NotFound));
    drop(s);
    let _s = sb.store(1 << 20);
    assert!(
        sb.root_names().is_empty(),
        "a stale digest cache is cleaned up: {:?}",
        sb.root_names()
    );
}

#[test]
fn device_on_a_directory_end_to_end() {
    let sb = Sandbox::new("e2e");
    let config = StackConfig::default();
    let store = SimStore::dir(&sb.root, 8 << 20).unwrap();
    let stack = Stack::with_store(config, store);
    let mut c = Stack::client(&stack).unwrap();
    let info = c.hello("test").unwrap();
    assert_eq!((info.storage_capacity, info.storage_used), (8 << 20, 0));

    let file = data(300_000, 9);
    let (d, size) = sha256_of(&file[..]).unwrap();
    let t = c
        .put("data.bin", &mut Cursor::new(&file), size, d, false, |_| {})
        .unwrap();
    assert_eq!((t.size, t.resumed_from), (300_000, 0));
    assert_eq!(
        fs::read(sb.root.join("data.bin")).unwrap(),
        file,
        "the file is on disk as is"
    );
    let mut back = Vec::new();
    c.get("data.bin", 0, &mut back, Sha256::new(), |_| {}).unwrap();
    assert!(back == file);
    assert_eq!(c.stat("data.bin").unwrap(), (300_000, d));
    let names: Vec<_> = c.list().unwrap().into_iter().map(|f| (f.name, f.size)).collect();
    assert_eq!(names, [("data.bin".to_string(), 300_000)]);

    // A wrong digest: refused, nothing visible.
    let r = c.put(
        "bad.bin",
        &mut Cursor::new(&file[..1000]),
        1000,
        sha(b"nope"),
        false,
        |_| {},
    );
    assert_eq!(r.unwrap_err().code(), Some(ErrorCode::DigestMismatch));
    assert_eq!(c.list().unwrap().len(), 1);
    assert!(!sb.root.join("bad.bin").exists());

    // An upload cut off halfway (the connection dies), resumed on a new connection.
    let big = data(100_000, 10);
    let bd = sha(&big);
    let begin = msg::PutBegin {
        name: "cut.bin",
        size: 100_000,
        sha256: bd,
        overwrite: false,
    };
    let ready: msg::PutReady = c.call(Kind::PutBegin, &begin, &[]).unwrap().meta().unwrap();
    assert_eq!(ready.offset, 0);
    c.call(Kind::PutData, &msg::PutData { offset: 0 }, &big[..8000])
        .unwrap();
    drop(c);
    let mut c = Stack::client(&stack).unwrap();
    let t = c
        .put("cut.bin", &mut Cursor::new(&big), 100_000, bd, false, |_| {})
        .unwrap();
    assert_eq!(t.resumed_from, 8000);
    assert_eq!(fs::read(sb.root.join("cut.bin")).unwrap(), big);

    // A reboot keeps a directory's files.
    let mut out = Vec::new();
    assert_eq!(c.exec("reboot", &[], |b| out.extend_from_slice(b)).unwrap(), 0);
    drop(c);
    for _ in 0..100 {
        stack.borrow_mut().poll();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(!stack.borrow().server.device.ctx.reboot_requested, "rebooted");
    let mut c = Stack::client(&stack).unwrap();
    let names: Vec<_> = c.list().unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["cut.bin", "data.bin"]);
    c.remove("data.bin").unwrap();
    drop(c);
    drop(stack);

    // A new simulator on the same directory sees the same files.
    let stack = Stack::with_store(config, SimStore::dir(&sb.root, 8 << 20).unwrap());
    let mut c = Stack::client(&stack).unwrap();
    assert_eq!(c.stat("cut.bin").unwrap(), (100_000, bd));
    assert_eq!(c.hello("test").unwrap().storage_used, 100_000);
    assert!(sb.outside_names().is_empty());
}

#[test]
fn ram_store_is_cleared_by_a_reboot() {
    let stack = Stack::new(StackConfig::default());
    let mut c = Stack::client(&stack).unwrap();
    c.put("f", &mut Cursor::new(b"abc"), 3, sha(b"abc"), false, |_| {})
        .unwrap();
    c.exec("reboot", &[], |_| {}).unwrap();
    drop(c);
    for _ in 0..100 {
        stack.borrow_mut().poll();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut c = Stack::client(&stack).unwrap();
    assert!(c.list().unwrap().is_empty());
}

#[test]
fn the_same_upload_is_taken_over_and_the_old_owner_locked_out() {
    let sb = Sandbox::new("takeover");
    let mut s = sb.store(1 << 20);
    let (a, b) = (O, Owner(2));
    let file = data(3000, 21);
    assert_eq!(s.begin("t.bin", a, 3000, &sha(&file), false), Ok(0));
    s.write("t.bin", a, 0, &file[..1000]).unwrap();
    // a's session went silent; b presents the same upload and takes it over.
    assert_eq!(s.begin("t.bin", b, 3000, &sha(&file), false), Ok(1000));
    assert_eq!(s.write("t.bin", a, 1000, &file[1000..2000]), Err(StoreError::TakenOver));
    assert_eq!(s.read_pending("t.bin", a, 0, &mut [0; 8]), Err(StoreError::TakenOver));
    assert_eq!(s.commit("t.bin", a), Err(StoreError::TakenOver));
    assert_eq!(s.abort("t.bin", a), Err(StoreError::TakenOver));
    s.suspend("t.bin", a); // a's end: nothing of b's is touched
    s.write("t.bin", b, 1000, &file[1000..]).unwrap();
    s.commit("t.bin", b).unwrap();
    assert_eq!(content(&mut s, "t.bin").unwrap(), file);
    // Another upload of a name is Busy while its owner is attached, and replaces it once not.
    assert_eq!(s.begin("u.bin", a, 10, &sha(b"0123456789"), false), Ok(0));
    assert_eq!(
        s.begin("u.bin", b, 10, &sha(b"abcdefghij"), false),
        Err(StoreError::Busy)
    );
    s.suspend("u.bin", a);
    assert_eq!(s.begin("u.bin", b, 10, &sha(b"abcdefghij"), false), Ok(0));
    assert_eq!(s.pending_uploads(), [("u.bin".to_string(), 0, 10)]);
}

#[test]
fn reads_are_pinned_to_the_version_statted() {
    let sb = Sandbox::new("version");
    let mut s = sb.store(1 << 20);
    put(&mut s, "v.bin", &data(5000, 22), false).unwrap();
    let v1 = s.stat("v.bin").unwrap().version;
    let mut buf = [0u8; 100];
    assert_eq!(s.read("v.bin", v1, 0, &mut buf), Ok(100));
    // Replaced by a commit of the same size.
    put(&mut s, "v.bin", &data(5000, 23), true).unwrap();
    assert_eq!(s.read("v.bin", v1, 100, &mut buf), Err(StoreError::Changed));
    let v2 = s.stat("v.bin").unwrap().version;
    assert_ne!(v1, v2);
    assert_eq!(s.read("v.bin", v2, 100, &mut buf), Ok(100));
    // Written in place by another process (after the timestamp tick).
    std::thread::sleep(Duration::from_millis(50));
    fs::write(sb.root.join("v.bin"), data(5000, 24)).unwrap();
    assert_eq!(s.read("v.bin", v2, 200, &mut buf), Err(StoreError::Changed));
    let v3 = s.stat("v.bin").unwrap().version;
    assert_eq!(s.stat("v.bin").unwrap().sha256, sha(&data(5000, 24)));
    // Removed.
    s.remove("v.bin").unwrap();
    assert_eq!(s.read("v.bin", v3, 0, &mut buf), Err(StoreError::Changed));
}
