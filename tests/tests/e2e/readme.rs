//! The README, followed as a new user follows it: every command of its ```` ```sh ```` blocks, top
//! to bottom, in one shell, in a fresh HOME (a temporary directory: no ~/.config/tether, no
//! ~/.local/share), from a scratch working directory. A command that fails, or that exits with
//! another code than its comment's `# exit N`, fails the test.
//!
//! What a test cannot run is skipped by an explicit rule below (building with cargo, the
//! embedded build, root-only and hardware commands), so a new command in the README is either run
//! or classified here. `sim` and `host-cli` are the binaries under test behind two small wrappers
//! on PATH: `sim` gets free ports added (the tests run in parallel with others), and host-cli
//! finds it through `TETHER_TO`, one of the documented ways to name the device.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tether_tests::*;

/// README lines not run, by how they start, and why.
const SKIPPED: [(&str, &str); 12] = [
    (
        "cargo ",
        "builds and runs with cargo: the test runs the binaries cargo built",
    ),
    ("bash scripts/", "the embedded build and scripts: CI runs them itself"),
    ("sudo ", "needs root"),
    ("sim --tap ", "needs a TAP interface (root)"),
    ("host-cli --to 10.0.0.2", "the device on the TAP interface"),
    ("host-cli --to serial:/dev/tty", "needs a serial adapter"),
    (
        "ls /dev/tty",
        "lists serial adapters, of which a test machine may have none",
    ),
    ("tshark ", "needs Wireshark"),
    ("wireshark ", "needs Wireshark"),
    ("strace ", "an investigation, not a step"),
    (
        "tether-bridge ",
        "needs an MQTT broker: e2e_bridge runs the bridge against mosquitto and NATS",
    ),
    ("mosquitto_pub ", "needs an MQTT broker and the bridge"),
];

/// The commands of every ```` ```sh ```` block of `text`, one per line (blank lines and comment
/// lines left out).
fn sh_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            in_sh = !in_sh && lang.trim() == "sh";
            continue;
        }
        if in_sh && !trimmed.is_empty() && !trimmed.starts_with('#') {
            lines.push(line.trim().to_string());
        }
    }
    lines
}

/// The exit code a README line's comment promises (`# exit 6: ...`), else 0.
fn expected_exit(line: &str) -> i32 {
    line.split_once("# exit ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(0)
}

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn every_readme_command_runs_in_a_fresh_home() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = sh_lines(&readme);
    assert!(lines.len() > 20, "too few README commands found: {lines:?}");

    let dir = TempDir::new("readme");
    let (home, work, bin) = (dir.join("home"), dir.join("work"), dir.join("bin"));
    for d in [&home, &work, &bin] {
        std::fs::create_dir_all(d).unwrap();
    }
    let ports: Vec<u16> = (0..7).map(|_| free_port()).collect();
    write_exe(
        &bin.join("sim"),
        &format!(
            "#!/bin/sh\nexec '{}' --tcp-port {} --udp-port {} --plain-tcp-port {} --plain-udp-port {} --plain-command-port {} --plain-command-json-port {} --plain-chat-port {} \"$@\"\n",
            sim_bin().display(),
            ports[0],
            ports[1],
            ports[2],
            ports[3],
            ports[4],
            ports[5],
            ports[6]
        ),
    );
    write_exe(
        &bin.join("host-cli"),
        &format!("#!/bin/sh\nexec '{}' \"$@\"\n", host_cli_bin().display()),
    );

    let mut script = String::from(
        "set -u\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n\
         ready() { for _ in $(seq 200); do host-cli --timeout 1s info >/dev/null 2>&1 && return 0; sleep 0.05; done; echo 'sim did not come up' >&2; exit 1; }\n",
    );
    let mut ran = 0;
    let mut skipped = Vec::new();
    for line in &lines {
        if let Some((_, why)) = SKIPPED.iter().find(|(start, _)| line.starts_with(start)) {
            if line.starts_with("cargo install") {
                assert!(line.contains("--locked"), "install with the tested Cargo.lock: {line}");
            }
            skipped.push(format!("{line}  ({why})"));
            continue;
        }
        let expect = expected_exit(line);
        let quoted = line.replace('\'', "'\\''");
        writeln!(script, "echo '$ {quoted}' >&2").unwrap();
        writeln!(script, "{line}").unwrap();
        if line.ends_with('&') || line.contains("& ") && line.starts_with("sim ") {
            writeln!(script, "ready").unwrap();
        } else {
            writeln!(
                script,
                "rc=$?; [ $rc -eq {expect} ] || {{ echo \"README line failed with exit $rc (expected {expect}): {quoted}\" >&2; exit 1; }}"
            )
            .unwrap();
        }
        if line.starts_with("kill %") {
            // The next `sim` takes the same ports.
            writeln!(script, "wait").unwrap();
        }
        ran += 1;
    }
    eprintln!("README: {ran} commands run, {} skipped:", skipped.len());
    for s in &skipped {
        eprintln!("  skipped: {s}");
    }

    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths: Vec<PathBuf> = vec![bin.clone()];
    paths.extend(std::env::split_paths(&path));
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(&script).current_dir(&work);
    clean_cli_env(&mut cmd);
    for v in [
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_CACHE_HOME",
        "TETHER_CONFIG",
        "TETHER_SIM_KEY_FILE",
    ] {
        cmd.env_remove(v);
    }
    cmd.env("HOME", &home)
        .env("PATH", std::env::join_paths(paths).unwrap())
        .env("TETHER_TO", format!("127.0.0.1:{}", ports[0]));
    let out = run_bounded(cmd, Duration::from_secs(300));
    assert!(out.status.success(), "following the README failed:\n{}", stderr(&out));
    // What the README promised to leave behind.
    assert!(home.join(".local/share/bash-completion/completions/host-cli").is_file());
    assert!(home.join(".config/tether/sim.key").is_file());
    assert!(work.join("copy.bin").is_file());
    // The tour runs from the repository's root: what it leaves there is ignored by git.
    if have("git") && root.join(".git").exists() {
        for entry in std::fs::read_dir(&work).unwrap() {
            let name = entry.unwrap().file_name();
            let mut check = Command::new("git");
            check.current_dir(root).arg("check-ignore").arg("-q").arg(&name);
            let ignored = run_bounded(check, Duration::from_secs(30)).status.success();
            assert!(ignored, "the tour's {name:?} is not in .gitignore");
        }
    }
}

#[test]
fn readme_lines_are_found_and_classified() {
    let text = "x\n```sh\ncargo run # build\n\n# a comment\nhost-cli exec uptime   # exit 6: no key\n```\n```rust\nnot_sh();\n```\n";
    assert_eq!(
        sh_lines(text),
        ["cargo run # build", "host-cli exec uptime   # exit 6: no key"]
    );
    assert_eq!(expected_exit("host-cli exec uptime   # exit 6: no key"), 6);
    assert_eq!(expected_exit("host-cli info   # works"), 0);
}
