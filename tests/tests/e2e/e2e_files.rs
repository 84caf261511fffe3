//! File transfers against crashes, through the real `sim` and `host-cli` binaries: a device
//! killed (SIGKILL) in the middle of an overwrite on its directory store, and a client killed in
//! the middle of a put whose re-run must resume at once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tether_tests::*;

const MIB: usize = 1 << 20;
const LIMIT: Duration = Duration::from_secs(120);

fn p(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Sends SIGKILL to a process this test started.
fn kill9(pid: u32) {
    let mut cmd = Command::new("kill");
    cmd.args(["-KILL", &pid.to_string()]);
    assert!(
        run_bounded(cmd, Duration::from_secs(10)).status.success(),
        "kill -9 {pid}"
    );
}

/// Big enough that a kill lands mid-transfer also in an optimised build.
fn big() -> usize {
    if profile_dir().ends_with("debug") {
        16 * MIB
    } else {
        128 * MIB
    }
}

/// Visible (non-hidden) names in the store's directory, sorted.
fn visible(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

#[test]
fn a_device_killed_mid_overwrite_keeps_the_old_file_and_shows_no_partial_one() {
    let dir = TempDir::new("kill-device");
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    let (src_dir, back) = (dir.join("src"), dir.join("back"));
    std::fs::create_dir(&src_dir).unwrap();
    let cfg = src_dir.join("cfg.bin");
    let args = ["--root", p(&root), "--capacity", "400M"];

    let mut sim = Sim::start(&args);
    write_random(&cfg, 64 * 1024, 1);
    let old_sha = sha256_file(&cfg);
    ok(&host_cli(&sim, &["put", p(&cfg)]));
    // The new version, big, overwriting; the device is killed once part of it is on disk.
    write_random(&cfg, big(), 2);
    let new_sha = sha256_file(&cfg);
    let mut put = host_cli_bg(&sim, &["put", p(&cfg), "--overwrite"]);
    let pending = root.join(".tether-upload-cfg.bin");
    let under_way = poll_until(Duration::from_secs(60), Duration::from_millis(10), || {
        if put.finished() {
            return Some(false);
        }
        std::fs::metadata(&pending)
            .ok()
            .filter(|m| m.len() > MIB as u64)
            .map(|_| true)
    });
    assert_eq!(
        under_way,
        Some(true),
        "the overwrite never got under way (or finished first)"
    );
    kill9(sim.pid());
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(10), || (!sim.running())
            .then_some(()))
        .is_some(),
        "sim survived SIGKILL"
    );
    let out = put.output(LIMIT);
    assert!(
        !out.status.success(),
        "the put cannot have finished: {}",
        describe(&out)
    );

    // On disk: the old file, whole, and nothing partial under a visible name.
    assert_eq!(visible(&root), ["cfg.bin"]);
    assert_eq!(sha256_file(&root.join("cfg.bin")), old_sha, "the old file is intact");

    // Restarted on the same directory: the device serves the old file and lists nothing else.
    drop(sim);
    let sim = Sim::start(&args);
    ok(&host_cli(&sim, &["get", "cfg.bin", p(&back)]));
    assert_eq!(sha256_file(&back), old_sha);
    let ls = ok(&host_cli(&sim, &["ls"]));
    assert!(
        ls.contains("cfg.bin") && ls.lines().filter(|l| l.contains(".bin")).count() == 1,
        "{ls}"
    );
    // The interrupted overwrite resumes from what reached the disk, and then replaces it.
    let again = ok(&host_cli(&sim, &["put", p(&cfg), "--overwrite"]));
    assert!(again.contains("resumed at"), "{again}");
    std::fs::remove_file(&back).unwrap();
    ok(&host_cli(&sim, &["get", "cfg.bin", p(&back)]));
    assert_eq!(sha256_file(&back), new_sha);
    assert_eq!(visible(&root), ["cfg.bin"]);
}

#[test]
fn a_client_killed_mid_put_is_taken_over_by_the_rerun_at_once() {
    let dir = TempDir::new("kill-client");
    let src = dir.join("fw.bin");
    write_random(&src, big(), 3);
    let sim = Sim::start(&["--capacity", "400M"]);
    let mut put = host_cli_bg(&sim, &["put", p(&src)]);
    let bytes_in = || {
        let out = host_cli(&sim, &["exec", "stats"]);
        let s = stdout(&out);
        let line = s.lines().find(|l| l.starts_with("bytes"))?.to_string();
        let mut words = line.split_whitespace();
        words.find(|w| *w == "in")?;
        words.next()?.parse::<u64>().ok()
    };
    let under_way = poll_until(Duration::from_secs(60), Duration::from_millis(20), || {
        if put.finished() {
            return Some(false);
        }
        bytes_in().filter(|&n| n > MIB as u64).map(|_| true)
    });
    assert_eq!(under_way, Some(true), "the put never got under way (or finished first)");
    kill9(put.id());
    let _ = put.output(Duration::from_secs(10));
    // The re-run, without --retries: its session takes the upload over (same name, size and
    // digest) instead of waiting for the dead one's session to time out.
    let t = Instant::now();
    let out = host_cli(&sim, &["put", p(&src)]);
    timing("put re-run after a killed client", t.elapsed());
    let s = ok(&out);
    assert!(s.contains("resumed at"), "the re-run did not resume: {s}");
    let back = dir.join("fw.back");
    ok(&host_cli(&sim, &["get", "fw.bin", p(&back)]));
    assert_eq!(sha256_file(&back), sha256_file(&src));
}
