//! Shared helpers for the end-to-end tests: the real `sim` and `host-cli` binaries, run as
//! processes against each other on 127.0.0.1.
//!
//! Every process a helper starts is owned by a guard ([`Sim`], [`Proc`]) that kills and reaps it
//! on drop, also when a test panics; every wait is bounded, so a test never hangs. Traffic goes to
//! 127.0.0.1 only (the TAP test keeps its private addresses inside a network namespace it creates
//! and deletes itself).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub mod flood;
pub mod mqtt;
pub mod netns;

/// The longest any single host-cli run may take before it is killed and the test fails.
pub const HOST_CLI_LIMIT: Duration = Duration::from_secs(120);
/// How long `sim` may take to start listening.
pub const SIM_START: Duration = Duration::from_secs(10);
/// The `--timeout` every host-cli run gets.
pub const HOST_CLI_TIMEOUT: &str = "10s";

/// The target profile directory of the running test: `target/<profile>/deps/<test>` gives
/// `target/<profile>`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let deps = exe.parent().expect("the test lives in a directory");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    };
    dir.to_path_buf()
}

fn exe_name(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// The directory holding `sim` and `host-cli`.
///
/// `cargo test` does not build other packages' binaries, so the first call runs
/// `cargo build --bins -p tether-sim -p tether-host -p tether-bridge` once (in the profile of the running test):
/// it builds them when missing and refreshes them when stale, and is a quick no-op otherwise.
/// When that build fails but both binaries exist, they are used as they are (with a warning);
/// `TETHER_E2E_NO_BUILD=1` skips the build whenever both exist.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = profile_dir();
        let present = || {
            ["sim", "host-cli", "tether-bridge"]
                .iter()
                .all(|b| dir.join(exe_name(b)).is_file())
        };
        let skip = std::env::var_os("TETHER_E2E_NO_BUILD").is_some_and(|v| v == "1");
        if !(skip && present()) {
            if let Err(e) = build_bins(&dir) {
                assert!(present(), "sim and host-cli are missing from {} and {e}", dir.display());
                eprintln!("e2e: WARNING: {e}; using the binaries already in {}", dir.display());
            }
        }
        dir
    })
}

fn build_bins(dir: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).args([
        "build",
        "--bins",
        "-p",
        "tether-sim",
        "-p",
        "tether-host",
        "-p",
        "tether-bridge",
    ]);
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    let what = format!("{cmd:?}");
    let mut p = Proc::try_spawn(cmd).map_err(|e| format!("cannot run {what}: {e}"))?;
    match p.wait_for(Duration::from_secs(900)) {
        Some(out) if out.status.success() => Ok(()),
        Some(out) => Err(format!("building them failed:\n{}", text(&out.stderr))),
        None => Err("building them took over 900 s".into()),
    }
}

/// Path of the `sim` binary.
pub fn sim_bin() -> PathBuf {
    bin_dir().join(exe_name("sim"))
}

/// Path of the `tether-bridge` binary.
pub fn bridge_bin() -> PathBuf {
    bin_dir().join(exe_name("tether-bridge"))
}

/// Path of the `host-cli` binary.
pub fn host_cli_bin() -> PathBuf {
    bin_dir().join(exe_name("host-cli"))
}

/// A port that was free on 127.0.0.1 a moment ago (TCP; the UDP one is checked as well).
pub fn free_port() -> u16 {
    for _ in 0..64 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local address").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// Lossy UTF-8 text of process output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A process's stdout as text.
pub fn stdout(out: &Output) -> String {
    text(&out.stdout)
}

/// A process's stderr as text.
pub fn stderr(out: &Output) -> String {
    text(&out.stderr)
}

/// A description of a finished process for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}

/// Asserts that a run succeeded and returns its stdout.
#[track_caller]
pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "expected success, got {}", describe(out));
    stdout(out)
}

/// Asserts the exit code of a run.
#[track_caller]
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}, got {}",
        describe(out)
    );
}

/// A unique directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh directory whose name contains `label`.
    pub fn new(label: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("tether-e2e-{}-{n}-{label}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create a temp dir");
        TempDir { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A child process that is killed and reaped on drop; its stdout and stderr are captured by
/// reader threads (so a chatty child never blocks on a full pipe).
pub struct Proc {
    child: Option<Child>,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
    what: String,
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = p.read_to_end(&mut v);
            v
        })
    })
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout/stderr captured; panics when it cannot start.
    #[track_caller]
    pub fn spawn(cmd: Command) -> Proc {
        let what = format!("{cmd:?}");
        Proc::try_spawn(cmd).unwrap_or_else(|e| panic!("cannot start {what}: {e}"))
    }

    /// Spawns `cmd` with stdin closed and stdout/stderr captured.
    pub fn try_spawn(mut cmd: Command) -> std::io::Result<Proc> {
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        Ok(Proc {
            child: Some(child),
            out,
            err,
            what,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it has exited (without reaping the output).
    pub fn finished(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// Waits up to `limit` for the process to exit; kills it and returns `None` past that.
    pub fn wait_for(&mut self, limit: Duration) -> Option<Output> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + limit;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let stdout = self.out.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = self.err.take().and_then(|h| h.join().ok()).unwrap_or_default();
        status.map(|status| Output { status, stdout, stderr })
    }

    /// Kills it (SIGKILL) and returns what it printed.
    pub fn kill(mut self) -> Output {
        let mut child = self.child.take().expect("a process not yet reaped");
        let _ = child.kill();
        let status = child.wait().expect("a killed child can be reaped");
        let stdout = self.out.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = self.err.take().and_then(|h| h.join().ok()).unwrap_or_default();
        Output { status, stdout, stderr }
    }

    /// Waits up to `limit`; panics (after killing it) when it takes longer.
    #[track_caller]
    pub fn output(mut self, limit: Duration) -> Output {
        let what = self.what.clone();
        self.wait_for(limit)
            .unwrap_or_else(|| panic!("{what} did not finish within {limit:?}; killed"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `cmd` to completion, killing it and panicking after `limit`.
#[track_caller]
pub fn run_bounded(cmd: Command, limit: Duration) -> Output {
    Proc::spawn(cmd).output(limit)
}

/// Sends SIGINT to a process we started (through the `kill` command, as an operator would).
pub fn interrupt(pid: u32) -> bool {
    let mut cmd = Command::new("kill");
    cmd.args(["-INT", &pid.to_string()]);
    run_bounded(cmd, Duration::from_secs(10)).status.success()
}

/// A running `sim` on seven free 127.0.0.1 ports; killed on drop.
pub struct Sim {
    child: Option<Child>,
    /// Framed TCP port.
    pub tcp_port: u16,
    /// Framed UDP port.
    pub udp_port: u16,
    /// Plain upper-echo TCP port.
    pub plain_tcp_port: u16,
    /// Plain time UDP port.
    pub plain_udp_port: u16,
    /// Plain remote-command TCP port (length, output).
    pub plain_command_port: u16,
    /// Plain remote-command TCP port (length, JSON header, output).
    pub plain_command_json_port: u16,
    /// Plain chat UDP port.
    pub plain_chat_port: u16,
    /// The address the (first) device listens on: `--listen`, or 127.0.0.1.
    pub host: std::net::Ipv4Addr,
    log: PathBuf,
    _dir: TempDir,
}

/// A `--listen` address for a `sim --devices N` of its own: 127.A.B.1 with A from the process
/// id and B counting, so that fleets of concurrent tests (and test processes) do not meet.
pub fn fleet_listen() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("127.{}.{}.1", 64 + std::process::id() % 128, (n * 2) % 250)
}

impl Sim {
    /// Starts `sim` with `extra` arguments; panics with its log when it does not come up.
    #[track_caller]
    pub fn start(extra: &[&str]) -> Sim {
        Sim::try_start(extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `sim` with `extra` arguments. `Err` carries why it did not come up (its log).
    /// A port taken between [`free_port`] and the start is retried with new ports.
    pub fn try_start(extra: &[&str]) -> Result<Sim, String> {
        let mut last = String::new();
        for _ in 0..3 {
            match Sim::start_once(extra) {
                Ok(sim) => return Ok(sim),
                Err(e) if e.contains("Address already in use") || e.contains("already in use") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn start_once(extra: &[&str]) -> Result<Sim, String> {
        let dir = TempDir::new("sim");
        let log = dir.join("sim.log");
        let file = File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let ports: [u16; 7] = std::array::from_fn(|_| free_port());
        let [tcp_port, udp_port, plain_tcp_port, plain_udp_port, plain_command_port, plain_command_json_port, plain_chat_port] =
            ports;
        let mut cmd = Command::new(sim_bin());
        cmd.args(["--tcp-port", &tcp_port.to_string(), "--udp-port", &udp_port.to_string()])
            .args([
                "--plain-tcp-port",
                &plain_tcp_port.to_string(),
                "--plain-udp-port",
                &plain_udp_port.to_string(),
                "--plain-command-port",
                &plain_command_port.to_string(),
                "--plain-command-json-port",
                &plain_command_json_port.to_string(),
                "--plain-chat-port",
                &plain_chat_port.to_string(),
            ])
            .args(extra)
            .env_remove("TETHER_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(file));
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", sim_bin().display()))?;
        let host = extra
            .windows(2)
            .find(|w| w[0] == "--listen")
            .and_then(|w| w[1].parse().ok())
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let mut sim = Sim {
            host,
            child: Some(child),
            tcp_port,
            udp_port,
            plain_tcp_port,
            plain_udp_port,
            plain_command_port,
            plain_command_json_port,
            plain_chat_port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + SIM_START;
        loop {
            if let Some(status) = sim.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                sim.child = None;
                return Err(format!(
                    "sim {extra:?} exited with {status} before listening:\n{}",
                    sim.log()
                ));
            }
            // The banner ends with the `try:` line once every port is bound.
            if sim.log().contains("try: host-cli") && TcpStream::connect((sim.host, tcp_port)).is_ok() {
                return Ok(sim);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "sim {extra:?} did not listen on {tcp_port} within {SIM_START:?}:\n{}",
                    sim.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT` of the framed TCP port (the `--listen` address if one was given).
    pub fn to(&self) -> String {
        format!("{}:{}", self.host, self.tcp_port)
    }

    /// The address of device `i` (from 1) of `sim --devices N`: the i-th from `--listen`.
    pub fn device_ip(&self, i: u32) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(u32::from(self.host) + i - 1)
    }

    /// `ADDRESS:PORT` of device `i`'s (from 1) framed TCP port.
    pub fn device_to(&self, i: u32) -> String {
        format!("{}:{}", self.device_ip(i), self.tcp_port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The pseudo-terminal of `sim --serial`, as its banner printed it (`serial  /dev/pts/N  (...)`).
    #[track_caller]
    pub fn pty(&self) -> String {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.trim_start().starts_with("serial "))
            .unwrap_or_else(|| panic!("sim printed no serial line:\n{log}"));
        line.split_whitespace()
            .nth(1)
            .expect("a path after `serial`")
            .to_string()
    }

    /// Everything sim printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read(&self.log).map(|b| text(&b)).unwrap_or_default()
    }

    /// Whether sim still runs.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops sim with SIGINT (Ctrl-C) and waits up to `limit` for it to exit; kills it past that
    /// and returns `None`.
    pub fn interrupt(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        interrupt(child.id());
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    /// A `host-cli` command aimed at this sim (`--to`, `--udp-port`, `--timeout`), then `args`.
    pub fn host_cli_cmd(&self, args: &[&str]) -> Command {
        host_cli_cmd(&self.to(), self.udp_port, args)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// host-cli's environment variables, which a test's command must not inherit.
const HOST_CLI_ENV: [&str; 5] = [
    "TETHER_TO",
    "TETHER_DEVICE",
    "TETHER_UDP_PORT",
    "TETHER_TIMEOUT",
    "TETHER_KEY_FILE",
];

/// Removes host-cli's environment from `cmd` and points it at a config file that does not
/// exist: nothing from the machine the tests run on reaches the command.
pub fn clean_cli_env(cmd: &mut Command) {
    for v in HOST_CLI_ENV {
        cmd.env_remove(v);
    }
    cmd.env("TETHER_CONFIG", "/nonexistent/tether-e2e/config.toml");
}

/// A `host-cli` command to `to` with `--udp-port` and `--timeout` ([`HOST_CLI_TIMEOUT`] unless
/// `args` has its own), then `args`.
pub fn host_cli_cmd(to: &str, udp_port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new(host_cli_bin());
    cmd.args(["--to", to, "--udp-port", &udp_port.to_string()]);
    if !args.contains(&"--timeout") {
        cmd.args(["--timeout", HOST_CLI_TIMEOUT]);
    }
    cmd.args(args);
    for v in HOST_CLI_ENV {
        cmd.env_remove(v);
    }
    cmd
}

/// Runs `host-cli` against `sim` with `args`, bounded by [`HOST_CLI_LIMIT`].
#[track_caller]
pub fn host_cli(sim: &Sim, args: &[&str]) -> Output {
    run_bounded(sim.host_cli_cmd(args), HOST_CLI_LIMIT)
}

/// Starts `host-cli` against `sim` in the background.
pub fn host_cli_bg(sim: &Sim, args: &[&str]) -> Proc {
    Proc::spawn(sim.host_cli_cmd(args))
}

/// Deterministic pseudo-random bytes (xorshift64), different for every seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Writes `len` pseudo-random bytes to `path`.
pub fn write_random(path: &Path, len: usize, seed: u64) {
    let mut f = File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    f.write_all(&random_bytes(len, seed)).expect("write the test file");
}

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> String {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read the file");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `program` can be run (found on PATH).
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Polls `check` every `every` until it returns `Some` or `limit` passes.
pub fn poll_until<T>(limit: Duration, every: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Prints how long something took (shown with `--nocapture`, and on failure).
pub fn timing(label: &str, took: Duration) {
    eprintln!("e2e timing: {label}: {:.2} s", took.as_secs_f64());
}
