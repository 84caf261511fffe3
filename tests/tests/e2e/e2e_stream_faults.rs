//! Damaged bytes that reach Tether's own CRCs: `sim --stream-corrupt` flips bits in the TCP byte
//! stream above TCP (link `--corrupt` is caught by TCP's checksum first). Whatever host-cli makes
//! of a damaged frame — a retry, a resume or an error — no wrong byte may ever be delivered: a
//! file on the device is never committed with the wrong content, and a download is never renamed
//! into place unless it verified.

use std::path::Path;
use std::time::Duration;

use tether_tests::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

fn flips(log: &str) -> u64 {
    log.lines()
        .find_map(|l| {
            l.split("; ")
                .find_map(|part| part.strip_suffix(" bits flipped in relayed streams"))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no flip count in the sim's log:\n{log}"))
}

#[test]
fn damaged_stream_bytes_never_become_wrong_file_bytes() {
    let dir = TempDir::new("stream-faults");
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    let src = dir.join("src.bin");
    write_random(&src, 2 << 20, 91);
    let want = sha256_file(&src);

    // A clean upload first, into a directory store that outlives the process.
    let root_arg = ["--root", p(&root)];
    let clean = Sim::start(&root_arg);
    ok(&host_cli(&clean, &["put", p(&src), "clean.bin"]));
    drop(clean);

    // Then both directions damaged: about 40 flipped bits per 2 MiB.
    let mut args = root_arg.to_vec();
    args.extend(["--stream-corrupt", "2e-5", "--seed", "11"]);
    let mut sim = Sim::start(&args);
    let mut outcomes = Vec::new();
    for round in 0..3 {
        let name = format!("up{round}.bin");
        let up = host_cli(&sim, &["put", p(&src), &name, "--retries", "3"]);
        let stat = host_cli(&sim, &["--json", "stat", &name]);
        if up.status.success() {
            assert!(
                stdout(&stat).contains(&want),
                "put said OK but the device holds other bytes: {}",
                describe(&stat)
            );
        } else {
            // A failed upload leaves no file, or (after a resume in a later round) the right one.
            assert!(
                !stat.status.success() || stdout(&stat).contains(&want),
                "a failed put left a wrong file: {}",
                describe(&stat)
            );
        }
        let back = dir.join(&format!("back{round}.bin"));
        let down = host_cli(&sim, &["get", "clean.bin", p(&back), "--retries", "3"]);
        if down.status.success() {
            assert_eq!(sha256_file(&back), want, "get said OK but wrote other bytes");
        } else {
            assert!(!back.exists(), "a failed get left {} in place", back.display());
        }
        outcomes.push((up.status.code(), down.status.code()));
    }
    assert!(sim.interrupt(Duration::from_secs(10)).is_some(), "sim did not stop");
    let log = sim.log();
    assert!(flips(&log) > 0, "the fault never fired; outcomes {outcomes:?}\n{log}");
    eprintln!(
        "e2e: stream faults: {} flips, outcomes (put, get) {outcomes:?}",
        flips(&log)
    );
}

/// Bit flips above TCP: every damaged frame, either way, is recovered inside the transfer (a
/// resend, or a new connection that resumes), and both directions arrive bit-exact. (They used to
/// fail with "sent a damaged frame", exit 5, and delete the `.part`.) A flipped header bit in a
/// 16 KiB `PutData` makes the device skip that frame's body as garbage, past its 4 KiB budget, and
/// reset the session (PROTOCOL.md §13 rule 3), sometimes before its first acknowledgement: that
/// reconnect moved nothing, and is resumed like damage all the same (it needed `--retries 1`
/// until host-cli told it from a device that cannot be reached).
#[test]
fn put_and_get_through_a_damaged_tcp_stream_need_no_flags() {
    let dir = TempDir::new("stream-default");
    let src = dir.join("src.bin");
    write_random(&src, 1 << 20, 17);
    let mut sim = Sim::start(&["--stream-corrupt", "1e-5", "--seed", "23"]);
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(host_cli_bin());
        clean_cli_env(&mut cmd);
        cmd.args(["--to", &sim.to(), "--json"]).args(args);
        run_bounded(cmd, HOST_CLI_LIMIT)
    };
    let mut recoveries = 0;
    for round in 0..2 {
        let name = format!("f{round}.bin");
        let up = cli(&["put", p(&src), &name]);
        assert!(up.status.success(), "put: {}", describe(&up));
        let back = dir.join(&name);
        let down = cli(&["get", &name, p(&back)]);
        assert!(down.status.success(), "get: {}", describe(&down));
        assert_eq!(sha256_file(&back), sha256_file(&src));
        for out in [&up, &down] {
            let v: serde_json::Value = serde_json::from_str(stdout(out).trim()).unwrap();
            recoveries += v["recoveries"].as_u64().unwrap();
        }
    }
    assert!(sim.interrupt(Duration::from_secs(10)).is_some(), "sim did not stop");
    let flips = flips(&sim.log());
    assert!(flips > 0 && recoveries > 0, "flips {flips}, recoveries {recoveries}");
    eprintln!("e2e: default flags through stream faults: {flips} flips, {recoveries} recoveries");
}
