//! A private network namespace for tests that need the kernel as a peer (TAP mode): created by
//! the test, and on drop its processes are killed and it is deleted. Private addresses used in
//! tests live only inside such a namespace.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::{have, run_bounded, stderr, stdout};

/// A network namespace created for one test.
pub struct Netns {
    name: String,
}

/// `ip ARGS…` in the root namespace, bounded.
pub fn ip(args: &[&str]) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run_bounded(cmd, Duration::from_secs(20))
}

/// Whether the tests run as root (TAP tests need it).
pub fn is_root() -> bool {
    let mut cmd = Command::new("id");
    cmd.arg("-u");
    let out = run_bounded(cmd, Duration::from_secs(10));
    out.status.success() && stdout(&out).trim() == "0"
}

impl Netns {
    /// Creates namespace `name` (deleting a stale one of that name first).
    pub fn create(name: &str) -> Result<Netns, String> {
        let _ = ip(&["netns", "del", name]);
        let out = ip(&["netns", "add", name]);
        if !out.status.success() {
            return Err(format!("ip netns add {name}: {}", stderr(&out)));
        }
        Ok(Netns { name: name.to_string() })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program args…`
    pub fn cmd(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program).args(args);
        cmd
    }

    /// Runs `program args…` inside, bounded; `Err` with its stderr when it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = run_bounded(self.cmd(Path::new(program), args), Duration::from_secs(20));
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{program} {args:?} in {}: {}", self.name, stderr(&out)))
        }
    }

    /// Adds a TAP interface `dev` with `host_cidr` (the kernel's side), up, and brings `lo` up.
    pub fn add_tap(&self, dev: &str, host_cidr: &str) -> Result<(), String> {
        let setup = [
            vec!["link", "set", "lo", "up"],
            vec!["tuntap", "add", "dev", dev, "mode", "tap"],
            vec!["addr", "add", host_cidr, "dev", dev],
            vec!["link", "set", dev, "up"],
        ];
        for args in &setup {
            self.run("ip", args)?;
        }
        Ok(())
    }
}

/// `sim`'s arguments for the device at 10.77.0.2 on the `tap0` of [`tap_namespace`] with the
/// kernel's side at 10.77.0.1/24 as its gateway.
pub const TAP_DEVICE: [&str; 6] = ["--tap", "tap0", "--ip", "10.77.0.2/24", "--gateway", "10.77.0.1"];

/// For a test that needs the kernel as a peer on TAP (`what` names it in notices): a new
/// namespace `tether-LABEL-PID` with `tap0` at `host_cidr`, up, and `lo` up; `None`, with a notice
/// saying why, when the machine cannot: not root, or without `ip` or one of `programs`.
pub fn tap_namespace(what: &str, label: &str, host_cidr: &str, programs: &[&str]) -> Option<Netns> {
    let missing: Vec<&str> = ["ip"].iter().chain(programs).copied().filter(|p| !have(p)).collect();
    if !is_root() || !missing.is_empty() {
        eprintln!(
            "e2e: NOTICE: {what} skipped: it needs root and {}",
            ["ip"].iter().chain(programs).copied().collect::<Vec<_>>().join(", ")
        );
        return None;
    }
    let ns = match Netns::create(&format!("tether-{label}-{}", std::process::id())) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("e2e: NOTICE: {what} skipped: cannot create a network namespace: {e}");
            return None;
        }
    };
    if let Err(e) = ns.add_tap("tap0", host_cidr) {
        eprintln!("e2e: NOTICE: {what} skipped: cannot set up tap0: {e}");
        return None;
    }
    Some(ns)
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Whatever the test started in the namespace and is still running.
        let pids = ip(&["netns", "pids", &self.name]);
        for pid in stdout(&pids).split_whitespace() {
            let mut cmd = Command::new("kill");
            cmd.args(["-KILL", pid]);
            let _ = run_bounded(cmd, Duration::from_secs(10));
        }
        let out = ip(&["netns", "del", &self.name]);
        if !out.status.success() {
            eprintln!("e2e: WARNING: ip netns del {} failed: {}", self.name, stderr(&out));
        }
    }
}
