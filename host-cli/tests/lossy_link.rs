//! The lossy-link client against the in-process device ([`Loopback`]) behind a link that loses
//! exactly the answer frames a test names: a page of a listing, the answer to a `PutCommit`.

use std::collections::VecDeque;
use std::io;

use sha2::{Digest as _, Sha256};
use tether_core::codec::Decoder;
use tether_core::msg::Digest;
use tether_core::service::exec::Command;
use tether_core::service::ramstore::RamStore;
use tether_core::service::{Device, DeviceConfig};
use tether_core::wire::Kind;
use tether_host::loopback::{Loopback, LOOPBACK_MAX_FRAME};
use tether_host::{Client, ClientError};

type Dev = Loopback<'static, (), RamStore<'static, 64>>;

static COMMANDS: [Command<()>; 0] = [];

fn device() -> Dev {
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 256 * 1024].into_boxed_slice());
    let config = DeviceConfig {
        name: "lossy-test",
        window: 4,
    };
    Loopback::new(Device::new(
        config,
        RamStore::new(mem),
        &COMMANDS,
        (),
        LOOPBACK_MAX_FRAME,
        1,
    ))
}

/// One answer frame as the link sees it.
#[derive(Debug, Clone, Copy)]
struct Answer {
    kind: Kind,
    /// How many answer frames of this kind came before it.
    nth: usize,
}

/// Decides the fate of an answer frame: `true` loses it. It may act on the device at that
/// moment (another peer changing a file while the answer is lost).
type Loses = Box<dyn FnMut(Answer, &mut Dev) -> bool>;

/// The device behind a link that loses the answers `loses` picks; everything else is delivered.
struct LossyLink {
    dev: Dev,
    loses: Loses,
    delivered: VecDeque<u8>,
    seen: Vec<(Kind, usize)>,
    lost: Vec<Answer>,
}

impl LossyLink {
    fn new(dev: Dev, loses: impl FnMut(Answer, &mut Dev) -> bool + 'static) -> Self {
        LossyLink {
            dev,
            loses: Box::new(loses),
            delivered: VecDeque::new(),
            seen: Vec::new(),
            lost: Vec::new(),
        }
    }

    /// Moves the device's answers onto the line, frame by frame, losing the chosen ones.
    fn carry(&mut self) {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match embedded_io::Read::read(&mut self.dev, &mut buf) {
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                Err(e) => panic!("loopback read: {e}"),
            }
        }
        let mut at = 0;
        while at < bytes.len() {
            let mut decoder = Box::new(Decoder::<LOOPBACK_MAX_FRAME>::new());
            let (_, got) = decoder.decode(&bytes[at..]);
            let frame = got.expect("whole frames from the loopback").expect("intact frames");
            let len = frame.header.frame_len() as usize;
            let kind = frame.kind();
            let nth = match self.seen.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => {
                    *n += 1;
                    *n - 1
                }
                None => {
                    self.seen.push((kind, 1));
                    0
                }
            };
            let answer = Answer { kind, nth };
            if (self.loses)(answer, &mut self.dev) {
                self.lost.push(answer);
            } else {
                self.delivered.extend(&bytes[at..at + len]);
            }
            at += len;
        }
    }
}

impl embedded_io::ErrorType for LossyLink {
    type Error = io::Error;
}

impl embedded_io::Write for LossyLink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = embedded_io::Write::write(&mut self.dev, buf)?;
        self.carry();
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl embedded_io::Read for LossyLink {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.delivered.is_empty() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "nothing arrived"));
        }
        let n = buf.len().min(self.delivered.len());
        for (slot, b) in buf.iter_mut().zip(self.delivered.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }
}

fn sha(data: &[u8]) -> Digest {
    Sha256::digest(data).into()
}

fn upload(
    c: &mut Client<impl embedded_io::Read + embedded_io::Write<Error = io::Error>>,
    name: &str,
    data: &[u8],
    overwrite: bool,
) -> Result<(), ClientError> {
    let mut src = io::Cursor::new(data.to_vec());
    c.put(name, &mut src, data.len() as u64, sha(data), overwrite, |_| {})
        .map(|_| ())
}

fn download(dev: &mut Dev, name: &str) -> Vec<u8> {
    let mut c = Client::new(dev);
    let mut out = Vec::new();
    c.get(name, 0, &mut out, Sha256::new(), |_| {}).expect("get");
    out
}

/// A device holding `n` small files, `f00` …, and their (name, size) in listing order.
fn device_with_files(n: usize) -> (Dev, Vec<(String, u64)>) {
    let mut dev = device();
    let mut c = Client::new(&mut dev);
    for i in 0..n {
        upload(&mut c, &format!("f{i:02}"), &vec![b'x'; i + 1], false).expect("setup upload");
    }
    let listed: Vec<_> = c.list().unwrap().into_iter().map(|f| (f.name, f.size)).collect();
    assert_eq!(listed.len(), n);
    (dev, listed)
}

fn names(files: &[tether_host::client::RemoteFile]) -> Vec<(String, u64)> {
    files.iter().map(|f| (f.name.clone(), f.size)).collect()
}

#[test]
fn a_listing_that_lost_a_page_is_read_again_never_returned_short() {
    // 30 files: four pages of up to 8. Lose each page in turn (first, middle, last) once.
    let (dev, want) = device_with_files(30);
    let mut dev = Some(dev);
    for lose_page in 0..4 {
        let link = LossyLink::new(dev.take().unwrap(), move |a, _| {
            a.kind == Kind::List && a.nth == lose_page
        });
        let mut c = Client::lossy(link);
        let got = c.list().unwrap_or_else(|e| panic!("page {lose_page} lost: {e}"));
        assert_eq!(names(&got), want, "page {lose_page} lost");
        let link = c.into_inner();
        assert_eq!(link.lost.len(), 1, "the page was really lost");
        dev = Some(link.dev);
    }
}

#[test]
fn a_listing_whose_pages_keep_getting_lost_fails_and_says_so() {
    let (dev, _) = device_with_files(20);
    // Every second page: no listing ever arrives whole.
    let mut c = Client::lossy(LossyLink::new(dev, |a, _| a.kind == Kind::List && a.nth % 2 == 1));
    let e = c.list().unwrap_err();
    assert!(e.is_link_damage(), "{e}");
}

#[test]
fn a_listing_over_a_clean_link_is_one_stream() {
    let (dev, want) = device_with_files(20);
    let mut c = Client::lossy(LossyLink::new(dev, |_, _| false));
    assert_eq!(names(&c.list().unwrap()), want);
    // Three pages of the listing and the one-page confirmation, nothing more.
    let link = c.into_inner();
    assert_eq!(link.seen, vec![(Kind::List, 4)]);
    // An empty store: one empty page, no confirmation needed.
    let mut c = Client::lossy(LossyLink::new(device(), |_, _| false));
    assert!(c.list().unwrap().is_empty());
}

#[test]
fn a_lost_commit_answer_is_confirmed_by_the_stored_file() {
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    for overwrite in [false, true] {
        let mut dev = device();
        if overwrite {
            let mut c = Client::new(&mut dev);
            upload(&mut c, "up.bin", b"an older version", false).unwrap();
        }
        let link = LossyLink::new(dev, |a, _| a.kind == Kind::PutCommit && a.nth == 0);
        let mut c = Client::lossy(link);
        upload(&mut c, "up.bin", &data, overwrite)
            .unwrap_or_else(|e| panic!("overwrite {overwrite}: put failed although the device committed it: {e}"));
        let mut link = c.into_inner();
        assert_eq!(link.lost.len(), 1, "the commit's answer was really lost");
        assert_eq!(download(&mut link.dev, "up.bin"), data, "bit-exact");
    }
}

#[test]
fn a_lost_commit_answer_with_a_different_file_on_the_device_fails() {
    let data = vec![0x5a; 9000];
    // While the answer is lost, another peer replaces the file: the device's file differs.
    let link = LossyLink::new(device(), |a, dev| {
        let lose = a.kind == Kind::PutCommit && a.nth == 0;
        if lose {
            let mut other = Client::new(dev);
            upload(&mut other, "up.bin", &[0xa5; 9000], true).expect("the other peer's upload");
        }
        lose
    });
    let mut c = Client::lossy(link);
    let e = upload(&mut c, "up.bin", &data, false).expect_err("success claimed for a file that differs");
    assert!(!e.is_link_damage(), "not a failure to retry into a success: {e}");
    assert!(e.to_string().contains("not the file sent"), "{e}");
    // Removed meanwhile: the same.
    let link = LossyLink::new(device(), |a, dev| {
        let lose = a.kind == Kind::PutCommit && a.nth == 0;
        if lose {
            Client::new(dev).remove("up.bin").expect("the other peer's remove");
        }
        lose
    });
    let mut c = Client::lossy(link);
    let e = upload(&mut c, "up.bin", &data, false).expect_err("success claimed for a file that is gone");
    assert!(e.to_string().contains("not the file sent"), "{e}");
}

#[test]
fn a_lost_commit_answer_over_a_link_that_keeps_frames_is_not_retried() {
    // A client not told its link is lossy (TCP) reports the missing answer as before.
    let link = LossyLink::new(device(), |a, _| a.kind == Kind::PutCommit && a.nth == 0);
    let mut c = Client::new(link);
    let e = upload(&mut c, "up.bin", b"data", false).unwrap_err();
    assert!(e.is_connection(), "{e}");
    assert_eq!(
        c.into_inner().seen,
        vec![(Kind::PutBegin, 1), (Kind::PutData, 1), (Kind::PutCommit, 1)]
    );
}
