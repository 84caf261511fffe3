//! Issue 22, firmware update, end to end against `sim --fw-key`: the real `host-cli fw …` over
//! TCP and serial, open and sealed. An update is confirmed and survives a restart of the
//! simulator; an unconfirmed trial reverts at the next reset; an upload cut off resumes, also
//! after a restart; corrupted, wrongly signed, other boards' and downgraded images are refused
//! and the running image stays.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tether_core::msg;
use tether_core::update::Header;
use tether_core::wire::Kind;
use tether_tests::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// `host-cli` on no device (keygen, sign).
fn local(args: &[&str]) -> Output {
    let mut cmd = Command::new(host_cli_bin());
    cmd.args(args);
    clean_cli_env(&mut cmd);
    run_bounded(cmd, HOST_CLI_LIMIT)
}

/// A signing key pair in `dir`: `fw.key` and `fw.key.pub`.
pub(crate) fn keys(dir: &TempDir, name: &str) -> PathBuf {
    let key = dir.join(name);
    ok(&local(&["fw", "keygen", p(&key)]));
    key
}

/// A signed image of `len` random bytes; `extra` are more `fw sign` flags.
pub(crate) fn image(dir: &TempDir, key: &Path, version: &str, extra: &[&str], len: usize) -> PathBuf {
    let body = dir.join(&format!("{version}.bin"));
    write_random(&body, len, u64::from(version.as_bytes()[0]) * 7 + len as u64);
    let out = dir.join(&format!("{version}-{}.img", extra.join("_").replace(['-', '/'], "")));
    let mut args = vec!["fw", "sign", "--key", p(key), "--version", version];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[p(&body), p(&out)]);
    ok(&local(&args));
    out
}

pub(crate) fn image_hash(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Header::parse(&bytes)
        .unwrap()
        .hash
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn json(out: &Output) -> Value {
    serde_json::from_str(stdout(out).lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {}", describe(out)))
}

/// `fw status --json` over `cli`.
fn status(cli: &dyn Fn(&[&str]) -> Output) -> Value {
    json(&cli(&["--json", "fw", "status"]))
}

fn running(s: &Value) -> (u64, String) {
    (
        s["running"]["slot"].as_u64().unwrap(),
        s["running"]["hash"].as_str().unwrap().to_string(),
    )
}

fn state(s: &Value, slot: usize) -> String {
    s["slots"][slot]["state"].as_str().unwrap().to_string()
}

/// The status once the device came back from a reset running `slot`.
fn after_reset(cli: &dyn Fn(&[&str]) -> Output, slot: u64) -> Value {
    poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let out = cli(&["--json", "fw", "status"]);
        let s = out.status.success().then(|| json(&out))?;
        (running(&s).0 == slot).then_some(s)
    })
    .unwrap_or_else(|| panic!("the device did not come back running slot {slot}"))
}

fn sim_cli<'a>(sim: &'a Sim, key: Option<&'a Path>) -> impl Fn(&[&str]) -> Output + 'a {
    move |args: &[&str]| {
        let mut full: Vec<&str> = Vec::new();
        if let Some(k) = key {
            full.extend_from_slice(&["--key-file", p(k)]);
        }
        full.extend_from_slice(args);
        host_cli(sim, &full)
    }
}

/// A directory with a signing key pair (`fw.key`, `fw.key.pub`), and the arguments of a sim
/// that takes images signed with it and keeps its slots under `root`.
fn fw_setup(label: &str) -> (TempDir, PathBuf, Vec<String>) {
    let dir = TempDir::new(label);
    let key = keys(&dir, "fw.key");
    let root = dir.join("root");
    // sim refuses a --root that does not exist (a typo must not become a new empty store).
    std::fs::create_dir_all(&root).unwrap();
    let args = [
        "--no-plain",
        "--fw-key",
        &format!("{}.pub", p(&key)),
        "--root",
        p(&root),
    ]
    .map(String::from)
    .to_vec();
    (dir, key, args)
}

fn start(args: &[String]) -> Sim {
    Sim::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn an_update_is_confirmed_and_survives_a_restart_and_refused_images_change_nothing() {
    let (dir, key, args) = fw_setup("fw-update");
    let mut sim = start(&args);
    assert!(sim.log().contains("slot 0 runs 0.0.0"), "{}", sim.log());
    let cli = sim_cli(&sim, None);
    let v1 = image(
        &dir,
        &key,
        "1.0.0",
        &["--board", "tether-sim", "--security-counter", "1"],
        20_000,
    );
    let v2 = image(&dir, &key, "2.0.0", &["--security-counter", "2"], 30_000);
    let done = ok(&cli(&["fw", "update", p(&v1)]));
    assert!(done.contains("updated: 1.0.0 runs in slot 1"), "{done}");
    let s = json(&cli(&["--json", "fw", "update", p(&v2)]));
    assert_eq!(running(&s), (0, image_hash(&v2)));
    assert_eq!((state(&s, 0), state(&s, 1)), ("active".into(), "confirmed".into()));
    assert_eq!(s["floor"], 2);

    // Refused, each for its reason, and the running image stays where it was.
    let other_key = keys(&dir, "other.key");
    let mut corrupted = std::fs::read(image(&dir, &key, "3.0.0", &["--security-counter", "2"], 5_000)).unwrap();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0x40;
    let corrupted_path = dir.join("corrupted.img");
    std::fs::write(&corrupted_path, corrupted).unwrap();
    let cases = [
        (corrupted_path, "does not match its SHA-256"),
        (
            image(&dir, &other_key, "3.0.1", &["--security-counter", "2"], 5_000),
            "signature",
        ),
        (
            image(
                &dir,
                &key,
                "3.0.2",
                &["--board", "mps2-an386", "--security-counter", "2"],
                5_000,
            ),
            "board",
        ),
        (
            image(&dir, &key, "3.0.3", &["--security-counter", "1"], 5_000),
            "security counter",
        ),
    ];
    for (img, why) in &cases {
        let out = cli(&["fw", "update", p(img)]);
        assert_code(&out, 1);
        assert!(stderr(&out).contains(why), "{why}: {}", describe(&out));
        let now = status(&cli);
        assert_eq!(running(&now), (0, image_hash(&v2)), "{why}");
        assert_eq!(state(&now, 0), "active", "{why}");
        assert_eq!(state(&now, 1), "empty", "{why}: the refused image is discarded");
    }

    // A new process on the same slots runs v2.
    drop(cli);
    sim.interrupt(Duration::from_secs(5));
    let sim = start(&args);
    assert!(sim.log().contains("slot 0 runs 2.0.0"), "{}", sim.log());
    let s = status(&sim_cli(&sim, None));
    assert_eq!(running(&s), (0, image_hash(&v2)));
    assert_eq!(state(&s, 0), "active");
    // `info` says which image runs.
    let info = ok(&host_cli(&sim, &["info"]));
    assert!(info.contains("firmware   slot 0 runs 2.0.0 (active)"), "{info}");
    let info = json(&host_cli(&sim, &["--json", "info"]));
    assert_eq!(info["firmware"]["hash"].as_str(), Some(image_hash(&v2).as_str()));
}

#[test]
fn an_unconfirmed_trial_reverts_over_a_sealed_serial_line_and_tcp() {
    let dir = TempDir::new("fw-revert");
    let key = keys(&dir, "fw.key");
    let psk = dir.join("session.key");
    ok(&local(&["keygen", p(&psk)]));
    let pubkey = format!("{}.pub", p(&key));
    let sim = Sim::start(&["--fw-key", &pubkey, "--key-file", p(&psk), "--serial"]);
    let to = format!("serial:{}", sim.pty());
    let serial = |args: &[&str]| {
        let mut full = vec!["--key-file", p(&psk), "--timeout", "10s"];
        full.extend_from_slice(args);
        run_bounded(host_cli_cmd(&to, sim.udp_port, &full), HOST_CLI_LIMIT)
    };
    let tcp = sim_cli(&sim, Some(&psk));
    // The update service is for key holders only.
    assert_code(&host_cli(&sim, &["fw", "status"]), 6);
    let v1 = image(&dir, &key, "1.1.0", &[], 12_000);
    // Over the sealed serial line: the whole flow, but the new image left on trial.
    let out = serial(&["fw", "update", "--no-confirm", p(&v1)]);
    assert!(ok(&out).contains("runs on trial"), "{}", describe(&out));
    let s = status(&tcp);
    assert_eq!(running(&s), (1, image_hash(&v1)));
    assert_eq!(state(&s, 1), "trial");
    // Nothing else can be uploaded while it is on trial.
    let v2 = image(&dir, &key, "1.2.0", &[], 12_000);
    let busy = tcp(&["fw", "upload", p(&v2)]);
    assert_code(&busy, 1);
    assert!(stderr(&busy).contains("fw confirm"), "{}", describe(&busy));
    // Reset without confirming: the device goes back to the built-in image.
    ok(&tcp(&["reset"]));
    let s = after_reset(&tcp, 0);
    assert_eq!(state(&s, 1), "reverted");
    // Tried again by steps over TCP, and confirmed this time.
    ok(&tcp(&["fw", "test", &image_hash(&v1)]));
    ok(&tcp(&["reset"]));
    let s = after_reset(&tcp, 1);
    assert_eq!(state(&s, 1), "trial");
    let confirmed = json(&tcp(&["--json", "fw", "confirm"]));
    assert_eq!(state(&confirmed, 1), "active");
}

#[test]
fn an_upload_cut_off_resumes_after_a_restart_from_where_it_stopped() {
    let (dir, key, args) = fw_setup("fw-resume");
    let mut sim = start(&args);
    let img = image(&dir, &key, "1.5.0", &[], 300_000);
    let bytes = std::fs::read(&img).unwrap();
    let hash = Header::parse(&bytes).unwrap().hash;
    // A client sends the first 100 000 bytes and vanishes.
    {
        let mut c = tether_host::net::connect(&sim.to(), Duration::from_secs(5)).unwrap();
        let begin = msg::FwBegin {
            size: bytes.len() as u64,
            hash,
        };
        let ready = c
            .call(Kind::FwBegin, &begin, &[])
            .unwrap()
            .meta::<msg::PutReady>()
            .unwrap();
        assert_eq!(ready.offset, 0);
        let mut at = 0;
        while at < 100_000 {
            let end = (at + ready.chunk as usize).min(100_000);
            c.call(Kind::FwData, &msg::PutData { offset: at as u64 }, &bytes[at..end])
                .unwrap();
            at = end;
        }
    }
    // The simulator is stopped (its sessions end first) and started again on the same slots.
    std::thread::sleep(Duration::from_millis(200));
    sim.interrupt(Duration::from_secs(5));
    let sim = start(&args);
    let out = host_cli(&sim, &["fw", "upload", p(&img)]);
    assert!(ok(&out).contains("pending"), "{}", describe(&out));
    assert!(
        stderr(&out).contains("resumed the upload at byte 100000"),
        "{}",
        describe(&out)
    );
    let s = status(&sim_cli(&sim, None));
    assert_eq!(s["slots"][1]["hash"].as_str().unwrap(), image_hash(&img));
    assert_eq!(state(&s, 1), "pending");
}

#[test]
fn a_device_without_the_update_service_says_so() {
    let sim = Sim::start(&["--no-plain"]);
    for args in [&["fw", "status"][..], &["reset"]] {
        let out = host_cli(&sim, args);
        assert_code(&out, 1);
        assert!(
            stderr(&out).contains("no firmware update service"),
            "{}",
            describe(&out)
        );
        assert!(stderr(&out).contains("--fw-key"), "{}", describe(&out));
    }
    // `info` has no firmware line then.
    assert!(!ok(&host_cli(&sim, &["info"])).contains("firmware"));
}
