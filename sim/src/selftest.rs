//! `sim selftest`: every service once, end to end, in one process.
//!
//! The device and a scripted client share one [`Stack`] (smoltcp's loopback PHY): every request
//! crosses the real codec, the real TCP/IP stack and the real server. Each step becomes a
//! [`Row`] of the [`Report`]; a failing step is a failed row with the error text, and [`run`]
//! never panics.

use std::fmt;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use embedded_io::{Read as _, Write as _};
use sha2::{Digest as _, Sha256};
use tether_core::codec::{encode_meta, encode_raw, parse_datagram};
use tether_core::msg::{self, Digest};
use tether_core::server::ServerConfig;
use tether_core::wire::{ErrorCode, Flags, Frame, FrameSpec, Kind, HEADER_LEN, VERSION};
use tether_host::client::sha256_of;
use tether_host::Client;

use crate::device::{COMMANDS, MAX_FRAME};
use crate::inproc::{Conn, Datagrams, Shared, Stack, StackConfig};
use crate::store::SimStore;

const MIB: usize = 1 << 20;
/// The small file the file-service steps use.
pub const SMALL_NAME: &str = "selftest-small.txt";
/// The file of the throughput steps.
pub const BIG_NAME: &str = "selftest-big.bin";
/// What `time set` sets the clock to: 2024-01-02 03:04:05 UTC.
const SET_MS: u64 = 1_704_164_645_000;
/// How long a datagram answer may take.
const UDP_TIMEOUT: Duration = Duration::from_secs(5);

/// What `sim selftest` runs with.
#[derive(Debug, Clone)]
pub struct SelftestOptions {
    /// Bytes of the upload and download measured (default 16 MiB).
    pub transfer_size: usize,
    /// TCP socket buffer of the device and the client (default 64 KiB).
    pub socket_buffer: usize,
    /// Storage capacity in bytes; raised to at least twice the transfer size plus 1 MiB.
    pub store_capacity: usize,
    /// Run on a directory store over this directory instead of a RAM store. The self-test's
    /// files (`selftest-*`) are overwritten there and removed at the end.
    pub root: Option<PathBuf>,
}

impl Default for SelftestOptions {
    fn default() -> Self {
        SelftestOptions {
            transfer_size: 16 * MIB,
            socket_buffer: 64 * 1024,
            store_capacity: 33 * MIB,
            root: None,
        }
    }
}

impl SelftestOptions {
    /// The capacity the store gets: at least twice the transfer size plus 1 MiB.
    pub fn effective_capacity(&self) -> usize {
        self.store_capacity
            .max(self.transfer_size.saturating_mul(2).saturating_add(MIB))
    }
}

/// One step of the self-test.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was tested (`hello`, `exec count`, `upload`…).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What came back, a throughput, or why it failed.
    pub detail: String,
    /// How long the step took.
    pub elapsed: Duration,
}

/// The outcome of [`run`].
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One row per step, in order.
    pub rows: Vec<Row>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl Report {
    /// Whether every step passed (and there was at least one).
    pub fn ok(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.ok)
    }

    /// The failed steps.
    pub fn failures(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| !r.ok)
    }

    /// The row of a step, by name.
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }
}

fn fmt_elapsed(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
        writeln!(
            f,
            "{:>2}  {:<width$}  {:<6}  {:>9}  detail",
            "#", "step", "result", "time"
        )?;
        for (i, r) in self.rows.iter().enumerate() {
            let result = if r.ok { "PASS" } else { "FAIL" };
            // Keep the table one line per row even when an error text has several.
            let detail = r.detail.replace('\n', " / ");
            writeln!(
                f,
                "{:>2}  {:<width$}  {:<6}  {:>9}  {detail}",
                i + 1,
                r.name,
                result,
                fmt_elapsed(r.elapsed)
            )?;
        }
        let passed = self.rows.iter().filter(|r| r.ok).count();
        let verdict = if self.ok() { "ok" } else { "FAILED" };
        write!(
            f,
            "{passed}/{} steps passed in {}: {verdict}",
            self.rows.len(),
            fmt_elapsed(self.elapsed)
        )
    }
}

/// Byte counts for people: `16 MiB`, `3000 B`.
pub fn human_bytes(n: u64) -> String {
    if n >= MIB as u64 {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn throughput(bytes: usize, d: Duration) -> String {
    let secs = d.as_secs_f64().max(1e-9);
    // In binary units, as host-cli reports its rates.
    format!(
        "{} in {}: {}",
        human_bytes(bytes as u64),
        fmt_elapsed(d),
        tether_host::units::rate(bytes as f64 / secs)
    )
}

/// Deterministic pseudo-random bytes (xorshift32).
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let take = (len - v.len()).min(4);
        v.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    v
}

fn short(d: &Digest) -> String {
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}

type Step = Result<String, String>;

struct Runner<'o> {
    opts: &'o SelftestOptions,
    stack: Option<Shared>,
    ports: ServerConfig,
    client: Option<Client<Conn>>,
    events: Option<Datagrams>,
    requests: Option<Datagrams>,
    next_id: u32,
    led: Option<bool>,
    small: Vec<u8>,
    rows: Vec<Row>,
}

impl Runner<'_> {
    fn step(&mut self, name: &str, f: impl FnOnce(&mut Self) -> Step) {
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| f(self)));
        let elapsed = start.elapsed();
        let (ok, detail) = match outcome {
            Ok(Ok(detail)) => (true, detail),
            Ok(Err(e)) => (false, e),
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                (false, format!("panicked: {text}"))
            }
        };
        if !ok {
            // The connection may hold half an exchange: the next step starts on a fresh one.
            self.client = None;
        }
        self.rows.push(Row {
            name: name.to_string(),
            ok,
            detail,
            elapsed,
        });
    }

    fn stack(&self) -> Result<Shared, String> {
        self.stack.clone().ok_or_else(|| "no device (setup failed)".to_string())
    }

    fn client(&mut self) -> Result<&mut Client<Conn>, String> {
        if self.client.is_none() {
            let stack = self.stack()?;
            let client = Stack::client(&stack).map_err(|e| format!("cannot connect to the framed port: {e}"))?;
            self.client = Some(client);
        }
        self.client.as_mut().ok_or_else(|| "no connection".to_string())
    }

    fn datagrams(&mut self, events: bool) -> Result<&mut Datagrams, String> {
        let stack = self.stack()?;
        let slot = if events { &mut self.events } else { &mut self.requests };
        Ok(slot.get_or_insert_with(|| Stack::udp(&stack)))
    }

    /// Sends a framed request over UDP and waits for its answer (events are skipped); `answer`
    /// reads the response frame.
    fn udp_call<T>(
        &mut self,
        events: bool,
        request: (Kind, &[u8], &[u8]),
        answer: impl FnOnce(&Frame<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        let (kind, meta, body) = request;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let id = self.next_id;
        let port = self.ports.udp_port;
        // Padded with zeros to the largest answer: the device sends no datagram larger than
        // the one it answers.
        let mut out = vec![0u8; (HEADER_LEN + meta.len() + body.len()).max(msg::MAX_DATAGRAM)];
        let n = encode_raw(&mut out, FrameSpec::request(kind, id), meta, body)
            .map_err(|e| format!("cannot encode the request: {e}"))?;
        let sock = self.datagrams(events)?;
        sock.send(port, &out[..n.max(msg::MAX_DATAGRAM)])
            .map_err(|e| format!("cannot send: {e}"))?;
        let answered = await_datagram(sock, port, |frame| {
            if frame.request_id() != id || !frame.flags().contains(Flags::RESPONSE) {
                return None;
            }
            Some(match frame.error() {
                Some(e) => Err(format!("device error {}: {}", e.code, e.message)),
                None => Ok(()),
            })
        });
        match answered {
            Some((frame, Ok(()))) => answer(&frame.as_frame()),
            Some((_, Err(e))) => Err(e),
            None => Err(format!(
                "no answer on UDP port {port} within {} s",
                UDP_TIMEOUT.as_secs()
            )),
        }
    }

    fn setup(&mut self) -> Step {
        let capacity = self.opts.effective_capacity();
        let store = match &self.opts.root {
            Some(root) => SimStore::dir(root, capacity as u64)
                .map_err(|e| format!("cannot use {} as the store: {e}", root.display()))?,
            None => SimStore::ram(capacity),
        };
        let what = store.describe();
        let config = StackConfig {
            socket_buffer: self.opts.socket_buffer,
            store_capacity: capacity,
            ..StackConfig::default()
        };
        let stack = Stack::with_store(config, store);
        self.ports = *stack.borrow().server.config();
        self.stack = Some(stack);
        Ok(format!(
            "{what}; socket buffers {}",
            human_bytes(self.opts.socket_buffer as u64)
        ))
    }

    fn hello(&mut self) -> Step {
        let info = self.client()?.hello("tether-sim selftest").map_err(|e| e.to_string())?;
        if info.version != VERSION {
            return Err(format!("protocol version {}, expected {}", info.version, VERSION));
        }
        if info.max_frame as usize != MAX_FRAME {
            return Err(format!("max_frame {}, expected {MAX_FRAME}", info.max_frame));
        }
        let missing: Vec<_> = COMMANDS
            .iter()
            .map(|c| c.name)
            .filter(|n| !info.commands.iter().any(|c| c == n))
            .collect();
        if !missing.is_empty() {
            return Err(format!("commands missing from hello: {missing:?}"));
        }
        Ok(format!(
            "{} v{}, frames up to {}, chunks {}, {} sessions, storage {}/{}",
            info.device,
            info.version,
            info.max_frame,
            info.max_chunk,
            info.sessions,
            human_bytes(info.storage_used),
            human_bytes(info.storage_capacity)
        ))
    }

    fn echo(&mut self, upper: bool) -> Step {
        let data: Vec<u8> = if upper {
            b"Hello, Tether! abc xyz 0123 \xc3\xa9\xff".to_vec()
        } else {
            (0..=255u8).cycle().take(4096).collect()
        };
        let mut want = data.clone();
        if upper {
            want.make_ascii_uppercase();
        }
        let c = self.client()?;
        let got = c.echo(&data, upper).map_err(|e| e.to_string())?;
        if got != want {
            return Err(format!(
                "sent {} bytes, got back {} different bytes",
                data.len(),
                got.len()
            ));
        }
        let empty = c.echo(&[], upper).map_err(|e| e.to_string())?;
        if !empty.is_empty() {
            return Err("an empty body came back non-empty".into());
        }
        Ok(if upper {
            format!("{:?}", String::from_utf8_lossy(&got))
        } else {
            format!("{} bytes (every byte value) and an empty body", data.len())
        })
    }

    fn exec(&mut self, command: &str, args: &[&str]) -> Result<(String, usize), String> {
        let mut out = Vec::new();
        let mut frames = 0;
        let status = self
            .client()?
            .exec(command, args, |b| {
                out.extend_from_slice(b);
                frames += 1;
            })
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8(out).map_err(|_| format!("`{command}` output is not UTF-8"))?;
        if status != 0 {
            return Err(format!("`{command}` exited with {status}: {}", text.trim_end()));
        }
        Ok((text, frames))
    }

    fn exec_uptime(&mut self) -> Step {
        let (text, _) = self.exec("uptime", &[])?;
        if !text.starts_with("up ") {
            return Err(format!("unexpected output {text:?}"));
        }
        Ok(text.trim_end().to_string())
    }

    fn exec_help(&mut self) -> Step {
        let (text, _) = self.exec("help", &[])?;
        let missing: Vec<_> = COMMANDS.iter().map(|c| c.name).filter(|n| !text.contains(n)).collect();
        if !missing.is_empty() {
            return Err(format!("help does not mention {missing:?}"));
        }
        Ok(format!("{} lines, every command listed", text.lines().count()))
    }

    fn exec_count(&mut self) -> Step {
        const N: usize = 20_000;
        let (text, frames) = self.exec("count", &["20000"])?;
        let lines = text.lines().count();
        if lines != N || !text.lines().enumerate().all(|(i, l)| l.parse() == Ok(i + 1)) {
            return Err(format!("{lines} lines, expected 1..={N} in order"));
        }
        if frames < 2 {
            return Err(format!(
                "{} bytes of output came in {frames} frame(s); expected several",
                text.len()
            ));
        }
        Ok(format!(
            "{N} lines, {} in {frames} frames",
            human_bytes(text.len() as u64)
        ))
    }

    fn subscribe(&mut self) -> Step {
        let mut meta = [0u8; 8];
        let n = encode_meta(&msg::Subscribe { on: true }, &mut meta).map_err(|e| e.to_string())?;
        self.udp_call(true, (Kind::Subscribe, &meta[..n], &[]), |_| Ok(()))?;
        let port = self.ports.udp_port;
        Ok(format!("subscribed to events on UDP port {port}"))
    }

    fn exec_led(&mut self) -> Step {
        let (text, _) = self.exec("led", &["toggle"])?;
        let state = match text.trim_end() {
            "led on" => true,
            "led off" => false,
            other => return Err(format!("unexpected output {other:?}")),
        };
        self.led = Some(state);
        Ok(text.trim_end().to_string())
    }

    fn event(&mut self) -> Step {
        let want = match self.led {
            Some(true) => "on",
            Some(false) => "off",
            None => return Err("no led state (exec led failed)".into()),
        };
        let port = self.ports.udp_port;
        let sock = self.datagrams(true)?;
        let seen = await_datagram(sock, port, |frame| {
            if frame.kind() != Kind::Event {
                return None;
            }
            match frame.meta::<msg::Event<'_>>() {
                Err(_) => Some(Err("unreadable event metadata".to_string())),
                Ok(event) if event.topic == "led" => Some(Ok(event.seq)),
                Ok(_) => None,
            }
        });
        match seen {
            Some((_, Err(e))) => Err(e),
            Some((frame, Ok(_))) if frame.body != want.as_bytes() => Err(format!(
                "led event says {:?}, the led is {want}",
                String::from_utf8_lossy(&frame.body)
            )),
            Some((_, Ok(seq))) => Ok(format!("topic led, seq {seq}, data {want:?}")),
            None => Err(format!("no led event within {} s", UDP_TIMEOUT.as_secs())),
        }
    }

    fn put_small(&mut self) -> Step {
        let text: String = (1..=200)
            .map(|i| format!("line {i:03} of the self-test file\n"))
            .collect();
        self.small = text.into_bytes();
        let (sha, size) = sha256_of(&self.small[..]).map_err(|e| e.to_string())?;
        let mut src = Cursor::new(self.small.clone());
        let t = self
            .client()?
            .put(SMALL_NAME, &mut src, size, sha, true, |_| {})
            .map_err(|e| e.to_string())?;
        if t.size != size || t.sha256 != sha {
            return Err("the device stored a different size or digest".into());
        }
        Ok(format!("{SMALL_NAME}: {size} bytes, sha256 {}…", short(&sha)))
    }

    fn get_small(&mut self) -> Step {
        let mut back = Vec::new();
        let t = self
            .client()?
            .get(SMALL_NAME, 0, &mut back, Sha256::new(), |_| {})
            .map_err(|e| e.to_string())?;
        if back != self.small {
            return Err(format!(
                "downloaded {} bytes that differ from the {} uploaded",
                back.len(),
                self.small.len()
            ));
        }
        Ok(format!("{SMALL_NAME}: {} bytes, identical", t.size))
    }

    fn list(&mut self) -> Step {
        let files = self.client()?.list().map_err(|e| e.to_string())?;
        let found = files.iter().find(|f| f.name == SMALL_NAME);
        match found {
            Some(f) if f.size == self.small.len() as u64 => {
                Ok(format!("{} file(s), {SMALL_NAME} among them", files.len()))
            }
            Some(f) => Err(format!(
                "{SMALL_NAME} listed with {} bytes, expected {}",
                f.size,
                self.small.len()
            )),
            None => Err(format!("{SMALL_NAME} not in the list: {files:?}")),
        }
    }

    fn stat(&mut self) -> Step {
        let (size, sha) = self.client()?.stat(SMALL_NAME).map_err(|e| e.to_string())?;
        let want: Digest = Sha256::digest(&self.small).into();
        if size != self.small.len() as u64 || sha != want {
            return Err(format!(
                "stat says {size} bytes sha256 {}…, expected {} bytes {}…",
                short(&sha),
                self.small.len(),
                short(&want)
            ));
        }
        Ok(format!("{size} bytes, sha256 {}…", short(&sha)))
    }

    fn time_set(&mut self) -> Step {
        let now = self.client()?.set_time(SET_MS).map_err(|e| e.to_string())?;
        if !(SET_MS..SET_MS + 60_000).contains(&now) {
            return Err(format!("the device clock reads {now} ms after being set to {SET_MS}"));
        }
        Ok(format!("set to {SET_MS} ms (2024-01-02 03:04:05 UTC)"))
    }

    fn time_get(&mut self) -> Step {
        let (text, unix_ms) = self.client()?.time("%Y-%m-%d %H:%M").map_err(|e| e.to_string())?;
        if !(SET_MS..SET_MS + 50_000).contains(&unix_ms) {
            return Err(format!(
                "the device clock reads {unix_ms} ms, set to {SET_MS} moments ago"
            ));
        }
        if text != "2024-01-02 03:04" {
            return Err(format!("formatted as {text:?}, expected \"2024-01-02 03:04\""));
        }
        Ok(format!("%Y-%m-%d %H:%M → {text:?}"))
    }

    fn message(&mut self) -> Step {
        let mut meta = [0u8; 64];
        let n = encode_meta(&msg::Message { from: "selftest" }, &mut meta).map_err(|e| e.to_string())?;
        let text = "hello from the self-test";
        let (from, reply) = self.udp_call(false, (Kind::Message, &meta[..n], text.as_bytes()), |f| {
            let me = f
                .meta::<msg::Message<'_>>()
                .map_err(|_| "unreadable message metadata".to_string())?;
            Ok((me.from.to_string(), String::from_utf8_lossy(f.body).into_owned()))
        })?;
        let want = format!("got {} bytes from selftest", text.len());
        if reply != want {
            return Err(format!("reply {reply:?}, expected {want:?}"));
        }
        Ok(format!("{from} replied {reply:?}"))
    }

    fn plain_tcp(&mut self) -> Step {
        let stack = self.stack()?;
        let port = self.ports.plain_tcp_port;
        let mut conn = Stack::connect(&stack, port).map_err(|e| format!("cannot connect to port {port}: {e}"))?;
        let sent = b"plain upper-echo: hello 123 \xff\n";
        conn.write_all(sent).map_err(|e| format!("cannot send: {e:?}"))?;
        let mut got = vec![0u8; sent.len()];
        conn.read_exact(&mut got)
            .map_err(|e| format!("cannot read the echo: {e:?}"))?;
        conn.close();
        let mut want = sent.to_vec();
        want.make_ascii_uppercase();
        if got != want {
            return Err(format!("echoed {:?}", String::from_utf8_lossy(&got)));
        }
        Ok(format!("port {port}: {:?}", String::from_utf8_lossy(&got).trim_end()))
    }

    fn plain_udp(&mut self) -> Step {
        let port = self.ports.plain_udp_port;
        let sock = self.datagrams(false)?;
        sock.send(port, b"%Y-%m-%d").map_err(|e| format!("cannot send: {e}"))?;
        let start = Instant::now();
        while let Some(left) = UDP_TIMEOUT.checked_sub(start.elapsed()) {
            let Some((data, from)) = sock.recv(left) else {
                break;
            };
            if from != port {
                continue;
            }
            let text = String::from_utf8_lossy(&data).into_owned();
            if text != "2024-01-02" {
                return Err(format!("answered {text:?}, expected \"2024-01-02\""));
            }
            return Ok(format!("port {port}: %Y-%m-%d → {text:?}"));
        }
        Err(format!(
            "no answer on UDP port {port} within {} s",
            UDP_TIMEOUT.as_secs()
        ))
    }

    fn transfer(&mut self, big: &[u8], sha: Digest) -> Step {
        let size = big.len() as u64;
        let mut src = Cursor::new(big);
        let client = self.client()?;
        let start = Instant::now();
        let t = client
            .put(BIG_NAME, &mut src, size, sha, true, |_| {})
            .map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if t.size != size || t.sha256 != sha {
            return Err("the device stored a different size or digest".into());
        }
        Ok(format!("{}, sha256 {}…", throughput(big.len(), took), short(&sha)))
    }

    fn download(&mut self, big: &[u8], sha: Digest) -> Step {
        let mut back = Vec::with_capacity(big.len());
        let client = self.client()?;
        let start = Instant::now();
        let t = client
            .get(BIG_NAME, 0, &mut back, Sha256::new(), |_| {})
            .map_err(|e| e.to_string())?;
        let took = start.elapsed();
        if t.sha256 != sha || back.len() != big.len() || back != big {
            return Err(format!("{} bytes came back, not bit-exact", back.len()));
        }
        let check: Digest = Sha256::digest(&back).into();
        if check != sha {
            return Err("SHA-256 of the downloaded bytes differs".into());
        }
        Ok(format!("{}, bit-exact", throughput(back.len(), took)))
    }

    fn remove(&mut self) -> Step {
        let c = self.client()?;
        let mut removed = Vec::new();
        for name in [SMALL_NAME, BIG_NAME] {
            match c.remove(name) {
                Ok(()) => removed.push(name),
                Err(e) if e.code() == Some(ErrorCode::NotFound) => {}
                Err(e) => return Err(format!("remove {name}: {e}")),
            }
        }
        if removed.is_empty() {
            return Err("none of the self-test files was there to remove".into());
        }
        let files = c.list().map_err(|e| e.to_string())?;
        if files.iter().any(|f| f.name == SMALL_NAME || f.name == BIG_NAME) {
            return Err("removed files still listed".into());
        }
        match c.stat(SMALL_NAME) {
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {}
            other => return Err(format!("stat after remove: {other:?}")),
        }
        Ok(format!("removed {}", removed.join(", ")))
    }
}

/// Runs every service once on an in-process device; never panics.
pub fn run(opts: &SelftestOptions) -> Report {
    let started = Instant::now();
    let mut r = Runner {
        opts,
        stack: None,
        ports: ServerConfig::default(),
        client: None,
        events: None,
        requests: None,
        next_id: 0,
        led: None,
        small: Vec::new(),
        rows: Vec::new(),
    };
    r.step("setup", Runner::setup);
    if r.stack.is_none() {
        return Report {
            rows: r.rows,
            elapsed: started.elapsed(),
        };
    }
    r.step("hello", Runner::hello);
    r.step("echo", |r| r.echo(false));
    r.step("upper", |r| r.echo(true));
    r.step("exec uptime", Runner::exec_uptime);
    r.step("exec help", Runner::exec_help);
    r.step("exec count", Runner::exec_count);
    r.step("subscribe", Runner::subscribe);
    r.step("exec led", Runner::exec_led);
    r.step("event led", Runner::event);
    r.step("put", Runner::put_small);
    r.step("get", Runner::get_small);
    r.step("list", Runner::list);
    r.step("stat", Runner::stat);
    r.step("time set", Runner::time_set);
    r.step("time get", Runner::time_get);
    r.step("message", Runner::message);
    r.step("plain tcp upper-echo", Runner::plain_tcp);
    r.step("plain udp time", Runner::plain_udp);
    let big = pattern(opts.transfer_size, 0x7e7e);
    let sha: Digest = Sha256::digest(&big).into();
    r.step("upload", |r| r.transfer(&big, sha));
    r.step("download", |r| r.download(&big, sha));
    drop(big);
    r.step("remove", Runner::remove);
    // Close the connections before the stack goes.
    r.client = None;
    r.events = None;
    r.requests = None;
    Report {
        rows: r.rows,
        elapsed: started.elapsed(),
    }
}

/// A datagram kept after its socket buffer is reused.
struct OwnedDatagram {
    bytes: Vec<u8>,
    body: Vec<u8>,
}

impl OwnedDatagram {
    /// The frame again (it was checked when it arrived).
    fn as_frame(&self) -> Frame<'_> {
        parse_datagram(&self.bytes, self.bytes.len()).expect("checked on arrival")
    }
}

/// Waits up to [`UDP_TIMEOUT`] for a framed datagram from the device's `port` that `pick`
/// accepts (returns `Some`), skipping everything else.
fn await_datagram<T>(
    sock: &mut Datagrams,
    port: u16,
    mut pick: impl FnMut(&Frame<'_>) -> Option<T>,
) -> Option<(OwnedDatagram, T)> {
    let start = Instant::now();
    while let Some(left) = UDP_TIMEOUT.checked_sub(start.elapsed()) {
        let (data, from) = sock.recv(left)?;
        if from != port {
            continue;
        }
        let Ok(frame) = parse_datagram(&data, data.len()) else {
            continue;
        };
        if let Some(t) = pick(&frame) {
            let body = frame.body.to_vec();
            return Some((OwnedDatagram { bytes: data, body }, t));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(16 << 20), "16.0 MiB");
        assert_eq!(human_bytes(3000), "2.9 KiB");
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(pattern(7, 1).len(), 7);
    }

    #[test]
    fn report_table() {
        let row = |name: &str, ok| Row {
            name: name.into(),
            ok,
            detail: "x\ny".into(),
            elapsed: Duration::from_millis(3),
        };
        let report = Report {
            rows: vec![row("hello", true), row("upload", false)],
            elapsed: Duration::from_secs(1),
        };
        assert!(!report.ok());
        let text = report.to_string();
        assert!(
            text.contains("hello") && text.contains("FAIL") && text.contains("x / y"),
            "{text}"
        );
        assert!(text.ends_with("1/2 steps passed in 1.00 s: FAILED"), "{text}");
        assert!(!Report::default().ok());
    }
}
