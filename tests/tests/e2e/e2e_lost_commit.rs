//! `host-cli put` when the device committed the upload but its answer never arrived: the TCP
//! connection breaks right after the device's `PutCommit` answer, which is lost with it (a
//! proxy between host-cli and the sim cuts the connection there). The retried put then finds
//! the file on the device, and must report success exactly when the device's file is the one
//! sent.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tether_core::codec::Decoder;
use tether_core::wire::{Flags, Kind};
use tether_tests::*;

/// `host-cli put SRC up.bin --retries 3` through a [`cutting_proxy`] in front of `sim`, which loses
/// exactly the commit's answer (after `on_cut`).
fn put_losing_the_commit_answer(sim: &Sim, src: &Path, on_cut: impl FnOnce() + Send + 'static) -> Output {
    let (port, cuts) = cutting_proxy(sim.to(), on_cut);
    let to = format!("127.0.0.1:{port}");
    let put = run_bounded(
        host_cli_cmd(&to, sim.udp_port, &["put", p(src), "up.bin", "--retries", "3"]),
        HOST_CLI_LIMIT,
    );
    assert_eq!(
        cuts.load(Ordering::SeqCst),
        1,
        "the commit answer was lost: {}",
        describe(&put)
    );
    put
}

/// A TCP proxy on 127.0.0.1 to `upstream` that, on its first connection, loses the device's
/// answer to `PutCommit` and cuts the connection there, after running `on_cut` (another peer
/// acting meanwhile). Later connections pass through untouched. Returns the proxy's port and
/// how many cuts it made.
fn cutting_proxy(upstream: String, on_cut: impl FnOnce() + Send + 'static) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cuts = Arc::new(AtomicUsize::new(0));
    let counted = cuts.clone();
    std::thread::spawn(move || {
        let mut on_cut = Some(on_cut);
        // Bounded: the test makes a handful of connections; the thread ends with the process.
        for client in listener.incoming().take(16) {
            let Ok(client) = client else { break };
            let Ok(device) = TcpStream::connect(&upstream) else {
                break;
            };
            let cut = on_cut.take();
            let counted = counted.clone();
            std::thread::spawn(move || relay(client, device, cut, &counted));
        }
    });
    (port, cuts)
}

fn relay(client: TcpStream, device: TcpStream, mut cut: Option<impl FnOnce()>, cuts: &AtomicUsize) {
    let (mut to_device, mut from_client) = (device.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_device);
        let _ = to_device.shutdown(Shutdown::Write);
    });
    let (mut from_device, mut to_client) = (device, client);
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from_device.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        // Forward whole frames; look at each one's kind.
        loop {
            let mut decoder = Box::new(Decoder::<{ 256 * 1024 }>::new());
            let (_, got) = decoder.decode(&pending);
            let Some(Ok(frame)) = got else { break };
            let len = frame.header.frame_len() as usize;
            let commit_answer = frame.kind() == Kind::PutCommit && frame.flags().contains(Flags::RESPONSE);
            if commit_answer {
                if let Some(cut) = cut.take() {
                    cut();
                    cuts.fetch_add(1, Ordering::SeqCst);
                    let _ = to_client.shutdown(Shutdown::Both);
                    let _ = from_device.shutdown(Shutdown::Both);
                    return;
                }
            }
            if to_client.write_all(&pending[..len]).is_err() {
                return;
            }
            pending.drain(..len);
        }
    }
    let _ = to_client.shutdown(Shutdown::Both);
}

fn p(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn device_sha(sim: &Sim, name: &str) -> String {
    let stat: serde_json::Value = serde_json::from_str(&ok(&host_cli(sim, &["--json", "stat", name]))).unwrap();
    stat["sha256"].as_str().expect("a sha256").to_string()
}

#[test]
fn a_put_whose_commit_answer_was_lost_succeeds_when_the_device_holds_the_file_sent() {
    let sim = Sim::start(&[]);
    let dir = TempDir::new("lost-commit");
    let src = dir.join("up.bin");
    write_random(&src, 300 * 1024, 21);
    let put = put_losing_the_commit_answer(&sim, &src, || {});
    assert!(put.status.success(), "{}", describe(&put));
    let sha = sha256_file(&src);
    assert!(stdout(&put).contains(&sha), "{}", describe(&put));
    assert!(text(&put.stderr).contains("already committed"), "{}", describe(&put));
    // Bit-exact on the device.
    let back = dir.join("back.bin");
    ok(&host_cli(&sim, &["get", "up.bin", p(&back)]));
    assert_eq!(sha256_file(&back), sha);
}

#[test]
fn a_put_whose_commit_answer_was_lost_fails_when_the_device_file_differs() {
    let sim = Sim::start(&[]);
    let dir = TempDir::new("lost-commit-replaced");
    let src = dir.join("up.bin");
    write_random(&src, 300 * 1024, 22);
    let other = dir.join("other.bin");
    write_random(&other, 300 * 1024, 23);
    // While the answer is lost, another peer replaces the file with one of the same size.
    let (to_sim, udp, other_path) = (sim.to(), sim.udp_port, p(&other).to_string());
    let put = put_losing_the_commit_answer(&sim, &src, move || {
        let args = ["put", other_path.as_str(), "up.bin", "--overwrite"];
        let out = run_bounded(host_cli_cmd(&to_sim, udp, &args), HOST_CLI_LIMIT);
        assert!(out.status.success(), "the other peer's put: {}", describe(&out));
    });
    assert!(
        !put.status.success(),
        "success claimed for a file that differs: {}",
        describe(&put)
    );
    assert!(text(&put.stderr).contains("already has a file"), "{}", describe(&put));
    assert_eq!(
        device_sha(&sim, "up.bin"),
        sha256_file(&other),
        "the other peer's file stays"
    );
}
