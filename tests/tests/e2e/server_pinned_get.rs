//! Downloads pin what they read: a `Get` stream delivers one version of a file. Replaced (by a
//! commit, or by another process on the directory store), removed, or rewritten in place, the
//! stream ends with `Changed` before any byte of the other version, and `FileDone` only ever
//! carries the digest of the bytes delivered. In-process against the real server on both
//! stores, and against `Device` directly with a store that misses a change.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use tether_core::codec::parse_datagram;
use tether_core::msg::{self, Digest};
use tether_core::service::files::{FileInfo, FileName, Owner, Storage, StoreError, Version};
use tether_core::service::ramstore::RamStore;
use tether_core::service::{Conn as DeviceConn, Device, DeviceConfig, Transport};
use tether_core::wire::{ErrorCode, Flags, Kind};
use tether_host::Client;
use tether_sim::inproc::{Conn, Shared, Stack, StackConfig};
use tether_sim::store::SimStore;

/// A directory for a directory store, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("tether-pinned-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn dir_stack(dir: &Dir) -> Shared {
    let store = SimStore::dir(&dir.0, 64 << 20).expect("a directory store");
    Stack::with_store(StackConfig::default(), store)
}

/// Large enough that the stream is still going once the socket buffers (64 KiB each way) are
/// full.
const SIZE: usize = 1 << 20;

/// How a `Get` stream ended.
#[derive(Debug, PartialEq)]
enum End {
    Done(msg::FileDone),
    Error(ErrorCode, String),
}

/// A `Get` from 0 in progress on `c`: its request id and the bytes delivered so far.
struct Download {
    id: u32,
    bytes: Vec<u8>,
}

impl Download {
    fn start(c: &mut Client<Conn>, name: &str) -> Download {
        let id = c.send(Kind::Get, &msg::Get { name, offset: 0 }, &[]).unwrap();
        let mut d = Download { id, bytes: Vec::new() };
        assert_eq!(d.step(c), None, "the first frame is data");
        d
    }

    /// Reads one frame: `None` for data, the end otherwise.
    fn step(&mut self, c: &mut Client<Conn>) -> Option<End> {
        let f = c.receive(self.id).expect("a Get response frame");
        if let Some(code) = frame_error(&f) {
            return Some(End::Error(code, f.error().unwrap().message.to_string()));
        }
        if f.flags().contains(Flags::MORE) {
            let d = f.meta::<msg::GetData>().expect("GetData");
            assert_eq!(d.offset, self.bytes.len() as u64, "in order, without gaps");
            self.bytes.extend_from_slice(f.body);
            None
        } else {
            Some(End::Done(f.meta::<msg::FileDone>().expect("FileDone")))
        }
    }

    /// Reads to the end of the stream.
    fn finish(&mut self, c: &mut Client<Conn>) -> End {
        for _ in 0..2 * SIZE / MAX_CHUNK + 10 {
            if let Some(end) = self.step(c) {
                return end;
            }
        }
        panic!("the stream does not end");
    }
}

/// Checks that a stream cut by a change delivered only bytes of `old` and ended with `Changed`.
fn assert_cut(d: &mut Download, c: &mut Client<Conn>, old: &[u8]) {
    match d.finish(c) {
        End::Error(ErrorCode::Changed, message) => assert!(message.contains("mid-stream"), "{message}"),
        other => panic!("expected Changed, got {other:?} after {} bytes", d.bytes.len()),
    }
    assert!(d.bytes.len() < old.len(), "cut short");
    assert!(
        d.bytes == old[..d.bytes.len()],
        "only bytes of the old version were sent"
    );
}

fn replaced_by_a_commit(stack: &Shared) {
    let (mut reader, mut writer) = (client(stack), client(stack));
    let old = data(SIZE, 1);
    let new = data(SIZE, 2);
    put(&mut writer, "f.bin", &old, false).unwrap();
    let mut d = Download::start(&mut reader, "f.bin");
    put(&mut writer, "f.bin", &new, true).unwrap();
    assert_cut(&mut d, &mut reader, &old);
    // Getting it again reads the new version, whole (the client checks the digest).
    assert!(get(&mut reader, "f.bin").unwrap() == new);
}

fn removed(stack: &Shared) {
    let (mut reader, mut writer) = (client(stack), client(stack));
    let old = data(SIZE, 3);
    put(&mut writer, "r.bin", &old, false).unwrap();
    let mut d = Download::start(&mut reader, "r.bin");
    writer.remove("r.bin").unwrap();
    assert_cut(&mut d, &mut reader, &old);
    assert_eq!(code(get(&mut reader, "r.bin")), ErrorCode::NotFound);
    // Put back with the very same bytes: still another version for a stream of the old one.
    put(&mut writer, "r.bin", &old, false).unwrap();
    let mut d = Download::start(&mut reader, "r.bin");
    writer.remove("r.bin").unwrap();
    put(&mut writer, "r.bin", &old, false).unwrap();
    assert_cut(&mut d, &mut reader, &old);
}

fn undisturbed(stack: &Shared) {
    // A commit of another file, or of an upload of this name that is not committed, does not
    // disturb the stream: it completes with the digest of what it delivered.
    let (mut reader, mut writer) = (client(stack), client(stack));
    let file = data(SIZE, 4);
    put(&mut writer, "u.bin", &file, false).unwrap();
    let mut d = Download::start(&mut reader, "u.bin");
    put(&mut writer, "other.bin", &data(SIZE, 5), false).unwrap();
    let id = writer
        .send(
            Kind::PutBegin,
            &msg::PutBegin {
                name: "u.bin",
                size: 10,
                sha256: sha(b"0123456789"),
                overwrite: true,
            },
            &[],
        )
        .unwrap();
    answer!(writer, id, msg::PutReady).unwrap();
    match d.finish(&mut reader) {
        End::Done(done) => {
            assert_eq!(done.size, SIZE as u64);
            assert_eq!(
                done.sha256,
                sha(&d.bytes),
                "FileDone carries the digest of the bytes sent"
            );
        }
        other => panic!("expected FileDone, got {other:?}"),
    }
    assert!(d.bytes == file);
}

#[test]
fn a_replacement_mid_get_ends_the_stream_with_changed_ram_store() {
    replaced_by_a_commit(&stack());
}

#[test]
fn a_replacement_mid_get_ends_the_stream_with_changed_dir_store() {
    let dir = Dir::new("replaced");
    replaced_by_a_commit(&dir_stack(&dir));
}

#[test]
fn a_removal_mid_get_ends_the_stream_with_changed_ram_store() {
    removed(&stack());
}

#[test]
fn a_removal_mid_get_ends_the_stream_with_changed_dir_store() {
    let dir = Dir::new("removed");
    removed(&dir_stack(&dir));
}

#[test]
fn other_changes_do_not_disturb_a_get_ram_store() {
    undisturbed(&stack());
}

#[test]
fn other_changes_do_not_disturb_a_get_dir_store() {
    let dir = Dir::new("undisturbed");
    undisturbed(&dir_stack(&dir));
}

/// Puts `old` as `name` and waits past the file system's timestamp tick, so that a later write
/// in place moves the file's mtime.
fn put_and_age(stack: &Shared, name: &str, old: &[u8]) {
    put(&mut client(stack), name, old, false).unwrap();
    std::thread::sleep(Duration::from_millis(50));
}

#[test]
fn another_process_rewriting_the_file_in_place_mid_get_is_caught() {
    let dir = Dir::new("inplace");
    let stack = dir_stack(&dir);
    let mut reader = client(&stack);
    let old = data(SIZE, 6);
    put_and_age(&stack, "p.bin", &old);
    let mut d = Download::start(&mut reader, "p.bin");
    // Same size, same inode: only the time stamps tell. The whole file, so that any byte the
    // device would read from now on is new.
    let file = OpenOptions::new().write(true).open(dir.0.join("p.bin")).unwrap();
    file.write_all_at(&data(SIZE, 7), 0).unwrap();
    drop(file);
    assert_cut(&mut d, &mut reader, &old);
    assert!(
        get(&mut reader, "p.bin").unwrap() == data(SIZE, 7),
        "the rewrite is served next"
    );

    // A write of one byte near the end, too.
    let old = data(SIZE, 7);
    std::thread::sleep(Duration::from_millis(50));
    let mut d = Download::start(&mut reader, "p.bin");
    let file = OpenOptions::new().write(true).open(dir.0.join("p.bin")).unwrap();
    file.write_all_at(&[!old[SIZE - 2]], SIZE as u64 - 2).unwrap();
    drop(file);
    assert_cut(&mut d, &mut reader, &old);
}

#[test]
fn another_process_replacing_or_truncating_the_file_mid_get_is_caught() {
    let dir = Dir::new("outside");
    let stack = dir_stack(&dir);
    let mut reader = client(&stack);
    let old = data(SIZE, 8);
    put_and_age(&stack, "q.bin", &old);
    // Replaced by a rename, like an editor's save or `mv`.
    let mut d = Download::start(&mut reader, "q.bin");
    let tmp = dir.0.join("q.bin.new");
    fs::write(&tmp, data(SIZE, 9)).unwrap();
    fs::rename(&tmp, dir.0.join("q.bin")).unwrap();
    assert_cut(&mut d, &mut reader, &old);
    // Truncated and rewritten in place to the same size.
    let old = data(SIZE, 9);
    std::thread::sleep(Duration::from_millis(50));
    let mut d = Download::start(&mut reader, "q.bin");
    fs::write(dir.0.join("q.bin"), data(SIZE, 10)).unwrap();
    assert_cut(&mut d, &mut reader, &old);
    // Removed by hand.
    let mut d = Download::start(&mut reader, "q.bin");
    fs::remove_file(dir.0.join("q.bin")).unwrap();
    assert_cut(&mut d, &mut reader, &data(SIZE, 10));
}

#[test]
fn a_digest_cache_that_lies_fails_one_get_and_is_then_dropped() {
    // As left by a write in place within one timestamp tick of the digest cache: the stamps
    // match, the recorded digest does not.
    let dir = Dir::new("stale-cache");
    let stack = dir_stack(&dir);
    let mut c = client(&stack);
    let file = data(SIZE, 12);
    put(&mut c, "s.bin", &file, false).unwrap();
    let cache = dir.0.join(".tether-sha-s.bin");
    let text = fs::read_to_string(&cache).unwrap();
    let right: String = sha(&file).iter().map(|b| format!("{b:02x}")).collect();
    let wrong: String = sha(b"other").iter().map(|b| format!("{b:02x}")).collect();
    assert!(text.contains(&right), "{text}");
    fs::write(&cache, text.replace(&right, &wrong)).unwrap();
    assert_eq!(
        c.stat("s.bin").unwrap().1,
        sha(b"other"),
        "the cache is trusted while its stamp matches"
    );
    // The stream's own hash shows the mismatch: no FileDone with a digest the bytes do not have.
    let mut d = Download::start(&mut c, "s.bin");
    match d.finish(&mut c) {
        End::Error(ErrorCode::Changed, message) => assert!(message.contains("in place"), "{message}"),
        other => panic!("expected Changed, got {other:?}"),
    }
    assert!(d.bytes == file);
    // And the cache is gone: the next get hashes the file and succeeds.
    assert!(get(&mut c, "s.bin").unwrap() == file);
    assert_eq!(c.stat("s.bin").unwrap().1, sha(&file));
}

/// A store that misses a change: it serves `flip` inverted at one offset without a new version,
/// as the directory store would for a write in place within one timestamp tick.
struct Blind {
    inner: RamStore<'static, 8>,
    flip: Option<u64>,
    verify: bool,
}

impl Storage for Blind {
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
    fn used(&self) -> u64 {
        self.inner.used()
    }
    fn entry(&mut self, index: usize, name: &mut FileName) -> Option<u64> {
        self.inner.entry(index, name)
    }
    fn stat(&mut self, name: &str) -> Result<FileInfo, StoreError> {
        self.inner.stat(name)
    }
    fn read(&mut self, name: &str, version: Version, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let n = self.inner.read(name, version, offset, buf)?;
        if let Some(at) = self.flip.filter(|at| (offset..offset + n as u64).contains(at)) {
            buf[(at - offset) as usize] ^= 0xff;
        }
        Ok(n)
    }
    fn verify_reads(&self) -> bool {
        self.verify
    }
    fn remove(&mut self, name: &str) -> Result<(), StoreError> {
        self.inner.remove(name)
    }
    fn begin(
        &mut self,
        name: &str,
        owner: Owner,
        size: u64,
        sha256: &Digest,
        overwrite: bool,
    ) -> Result<u64, StoreError> {
        self.inner.begin(name, owner, size, sha256, overwrite)
    }
    fn write(&mut self, name: &str, owner: Owner, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        self.inner.write(name, owner, offset, data)
    }
    fn read_pending(&mut self, name: &str, owner: Owner, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        self.inner.read_pending(name, owner, offset, buf)
    }
    fn commit(&mut self, name: &str, owner: Owner) -> Result<(), StoreError> {
        self.inner.commit(name, owner)
    }
    fn abort(&mut self, name: &str, owner: Owner) -> Result<(), StoreError> {
        self.inner.abort(name, owner)
    }
    fn suspend(&mut self, name: &str, owner: Owner) {
        self.inner.suspend(name, owner)
    }
}

const FRAME: usize = 4096;

/// Sends one request frame (its bytes) to `device` and collects every response frame's bytes.
fn exchange(device: &mut Device<'_, (), Blind>, conn: &mut DeviceConn, request: &[u8]) -> Vec<Vec<u8>> {
    let frame = parse_datagram(request, FRAME).unwrap();
    let mut out = vec![0u8; FRAME];
    let mut frames = Vec::new();
    let mut n = device.handle(conn, &frame, Transport::Session, &mut out);
    loop {
        frames.push(out[..n].to_vec());
        if !conn.streaming() {
            return frames;
        }
        n = device.resume(conn, &mut out);
        assert!(frames.len() < 1000);
    }
}

/// Uploads `file` and downloads it from `offset` through a [`Blind`] store.
fn blind_get(file: &[u8], flip: Option<u64>, verify: bool, offset: u64) -> (Vec<u8>, End) {
    let mem = Box::leak(vec![0u8; 4 * file.len()].into_boxed_slice());
    let store = Blind {
        inner: RamStore::new(mem),
        flip: None,
        verify,
    };
    let config = DeviceConfig { name: "t", window: 1 };
    let mut device = Device::new(config, store, &[], (), FRAME, 1);
    let mut conn = DeviceConn::new();
    let begin = msg::PutBegin {
        name: "b.bin",
        size: file.len() as u64,
        sha256: sha(file),
        overwrite: false,
    };
    exchange(&mut device, &mut conn, &frame!(Kind::PutBegin, 1, &begin, &[]));
    for (i, chunk) in file.chunks(1000).enumerate() {
        let data = msg::PutData {
            offset: i as u64 * 1000,
        };
        exchange(&mut device, &mut conn, &frame!(Kind::PutData, 1, &data, chunk));
    }
    let commit = frame!(Kind::PutCommit, 1, &msg::NameRef { name: "b.bin" }, &[]);
    let r = exchange(&mut device, &mut conn, &commit);
    assert_eq!(frame_error(&parse_datagram(&r[0], FRAME).unwrap()), None, "committed");
    device.storage.flip = flip;
    let get = frame!(Kind::Get, 1, &msg::Get { name: "b.bin", offset }, &[]);
    let frames = exchange(&mut device, &mut conn, &get);
    let (last, data) = frames.split_last().unwrap();
    let bytes: Vec<u8> = data
        .iter()
        .flat_map(|f| parse_datagram(f, FRAME).unwrap().body.to_vec())
        .collect();
    let last = parse_datagram(last, FRAME).unwrap();
    let end = match last.error() {
        Some(info) => End::Error(ErrorCode::from_u16(info.code).unwrap(), info.message.to_string()),
        None => End::Done(last.meta::<msg::FileDone>().unwrap()),
    };
    (bytes, end)
}

#[test]
fn a_change_the_store_misses_is_caught_by_hashing_the_stream() {
    let file = data(20_000, 11);
    // Unchanged: FileDone, with or without hashing.
    for verify in [false, true] {
        let (bytes, end) = blind_get(&file, None, verify, 0);
        assert!(bytes == file);
        assert_eq!(
            end,
            End::Done(msg::FileDone {
                size: 20_000,
                sha256: sha(&file)
            })
        );
    }
    // One byte changed behind the store's back: without hashing the device would confirm the
    // wrong bytes with the old digest; with it, the stream ends with Changed instead.
    let (bytes, end) = blind_get(&file, Some(12_345), false, 0);
    assert!(bytes != file);
    assert_eq!(
        end,
        End::Done(msg::FileDone {
            size: 20_000,
            sha256: sha(&file)
        }),
        "what hashing prevents"
    );
    let (bytes, end) = blind_get(&file, Some(12_345), true, 0);
    assert!(bytes != file);
    match end {
        End::Error(ErrorCode::Changed, message) => assert!(message.contains("in place"), "{message}"),
        other => panic!("expected Changed, got {other:?}"),
    }
    // A resumed download (offset > 0) cannot be hashed by the device: the client's own check
    // over its first part and the rest is what catches it.
    let (bytes, end) = blind_get(&file, Some(12_345), true, 5000);
    assert_eq!(bytes.len(), 15_000);
    assert_eq!(
        end,
        End::Done(msg::FileDone {
            size: 20_000,
            sha256: sha(&file)
        })
    );
}
