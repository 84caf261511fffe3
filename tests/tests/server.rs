//! The real server on a real smoltcp stack, driven by the real client, all in one process.

use std::io::Cursor;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tether_core::wire::ErrorCode;
use tether_host::client::sha256_of;
use tether_host::ClientError;
use tether_sim::inproc::{Stack, StackConfig};

fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match r {
        Err(e) => e.code().unwrap_or_else(|| panic!("not a device error: {e}")),
        Ok(v) => panic!("expected a device error, got {v:?}"),
    }
}

#[test]
fn hello_echo_upper() {
    let stack = Stack::new(StackConfig::default());
    let mut c = Stack::client(&stack).unwrap();
    let info = c.hello("test").unwrap();
    assert_eq!(info.device, "tether-sim");
    assert_eq!(info.version, 1);
    assert_eq!(info.sessions, 4);
    assert_eq!(info.max_frame as usize, tether_sim::device::MAX_FRAME);
    assert!(info.commands.iter().any(|c| c == "led"), "{:?}", info.commands);
    assert_eq!(c.echo(b"hello", false).unwrap(), b"hello");
    assert_eq!(c.echo(b"hello, World 1!", true).unwrap(), b"HELLO, WORLD 1!");
    assert_eq!(c.echo(b"", false).unwrap(), b"");
}

#[test]
fn four_mib_upload_and_download_bit_exact() {
    let stack = Stack::new(StackConfig::default());
    let mut c = Stack::client(&stack).unwrap();
    let file = data(4 << 20, 7);
    let (sha, size) = sha256_of(&file[..]).unwrap();
    let t = c.put("big.bin", &mut Cursor::new(&file), size, sha, false, |_| {}).unwrap();
    assert_eq!((t.size, t.resumed_from), (4 << 20, 0));
    let mut back = Vec::new();
    let t = c.get("big.bin", 0, &mut back, Sha256::new(), |_| {}).unwrap();
    assert_eq!(t.sha256, sha);
    assert!(back == file, "downloaded bytes differ");
    assert_eq!(c.stat("big.bin").unwrap(), (4 << 20, sha));
}

#[test]
fn exec_streams_long_output_and_reports_status() {
    let stack = Stack::new(StackConfig::default());
    let mut c = Stack::client(&stack).unwrap();
    let mut out = Vec::new();
    assert_eq!(c.exec("count", &["20000"], |b| out.extend_from_slice(b)).unwrap(), 0);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 20000);
    assert!(text.len() > tether_sim::device::MAX_FRAME, "must span several frames");
    assert!(text.lines().enumerate().all(|(i, l)| l == (i + 1).to_string()));
    let mut out = Vec::new();
    assert_eq!(c.exec("fail", &["3"], |b| out.extend_from_slice(b)).unwrap(), 3);
    assert_eq!(code(c.exec("rm", &["-rf", "/"], |_| {})), ErrorCode::UnknownCommand);
    let mut out = Vec::new();
    assert_eq!(c.exec("help", &[], |b| out.extend_from_slice(b)).unwrap(), 0);
    assert!(String::from_utf8_lossy(&out).contains("uptime"));
    let _ = Duration::ZERO;
}
