//! Commands from the broker (`tether/v1/{site}/{device}/cmd/{verb}`), run on the device's
//! session, and their answers (docs/BRIDGE.md, "Commands").
//!
//! A command's payload is a JSON object with its correlation id (`id`), the topic to answer on
//! (`reply`; MQTT 3.1.1 has no response-topic property, and NATS speaks only 3.1.1) and the
//! verb's own fields. The answer repeats the id and says `ok`, with the verb's result, or the
//! error's kind and message.

use std::io::Cursor;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use tether_core::msg::{self, Digest};
use tether_core::update::Header;
use tether_core::wire::{ErrorCode, Kind};
use tether_host::client::{sha256_of, DeviceInfo};
use tether_host::firmware::{FirmwareStatus, ImageUpload};
use tether_host::ClientError;

/// The most data a `put` carries or a `get` returns in one message, and the most output an
/// `exec` answer holds: MQTT messages are not a file transfer (rumqttc's packet limit is set
/// well above this, see `MAX_PACKET`).
pub const MAX_DATA: usize = 512 * 1024;

/// The largest MQTT packet the bridge sends: a `MAX_DATA` answer in hex, and room.
pub const MAX_PACKET: usize = 2 * MAX_DATA + 64 * 1024;

/// The largest MQTT packet the bridge accepts. rumqttc ends the connection on a larger one, and a
/// persistent session delivers it again after the reconnection, and again: one oversized command
/// would keep the bridge off the broker. So the limit is well above what any command may carry
/// (larger commands are read and answered with an error), and brokers should cap messages lower
/// (mosquitto `message_size_limit`; NATS `max_payload`, 1 MiB by default).
pub const MAX_INCOMING: usize = 16 * 1024 * 1024;

/// The verbs, as `cmd/{verb}` names them.
pub const VERBS: [&str; 15] = [
    "info",
    "exec",
    "time-get",
    "time-set",
    "put",
    "get",
    "ls",
    "rm",
    "message",
    "reset",
    "fw-status",
    "fw-upload",
    "fw-test",
    "fw-confirm",
    "fw-update",
];

/// A command's payload. Unknown fields are refused: a typo must not be silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The correlation id: the answer carries it, and a repeat with the same id runs once.
    pub id: String,
    /// Where to answer (default `tether/v1/{site}/{device}/reply`).
    pub reply: Option<String>,
    /// `exec`: the command.
    pub command: Option<String>,
    /// `exec`: its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// `put`, `get`, `rm`: the device's file name.
    pub name: Option<String>,
    /// `put`: the content as text.
    pub data: Option<String>,
    /// `put`: the content in hex (for bytes that are not text).
    pub data_hex: Option<String>,
    /// `put`: replace an existing file.
    #[serde(default)]
    pub overwrite: bool,
    /// `time-set`: the time to set, in Unix milliseconds (default: the bridge's clock).
    pub unix_ms: Option<u64>,
    /// `time-get`: a strftime format.
    pub format: Option<String>,
    /// `message`: the text.
    pub text: Option<String>,
    /// `message`: the sender's name (default `tether-bridge`).
    pub from: Option<String>,
    /// `fw-upload`, `fw-update`: the signed image (`host-cli fw sign`) in hex.
    pub image_hex: Option<String>,
    /// `fw-test`: the SHA-256 of the image to try, in hex (default: the one in the other slot).
    pub hash: Option<String>,
    /// `fw-update`: confirm the new image once it runs (default); `false` leaves it on trial for
    /// the application to confirm after its own self-test.
    pub confirm: Option<bool>,
}

/// Why a command failed, as its answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// `usage`, `device`, `busy`, `connection`, `timeout`, `link`, `auth`, `protocol`, `local`,
    /// `not_tether`, `offline`, `reverted` (`fw-update`: the device went back to its previous
    /// image).
    pub kind: &'static str,
    /// The device's error code name, when the device refused.
    pub code: Option<&'static str>,
    /// A sentence for a person.
    pub message: String,
}

impl Failed {
    /// A bad command.
    pub fn usage(message: impl Into<String>) -> Failed {
        Failed {
            kind: "usage",
            code: None,
            message: message.into(),
        }
    }

    /// The device is not connected.
    pub fn offline(message: impl Into<String>) -> Failed {
        Failed {
            kind: "offline",
            code: None,
            message: message.into(),
        }
    }

    /// Whether the session to the device broke (the bridge reconnects).
    pub fn broke_session(&self) -> bool {
        matches!(
            self.kind,
            "busy" | "connection" | "timeout" | "link" | "protocol" | "not_tether"
        )
    }
}

impl From<ClientError> for Failed {
    fn from(e: ClientError) -> Failed {
        let kind = match &e {
            ClientError::Device { .. } => "device",
            ClientError::Full(_) => "busy",
            e if e.is_timeout() => "timeout",
            ClientError::Connection { .. } => "connection",
            ClientError::Link(_) | ClientError::Garbled(_) => "link",
            ClientError::NotTether(_) => "not_tether",
            ClientError::Protocol(_) => "protocol",
            ClientError::Local(_) => "local",
            ClientError::Usage(_) => "usage",
            ClientError::Auth(_) => "auth",
        };
        Failed {
            kind,
            code: e.code().map(ErrorCode::text),
            message: e.to_string(),
        }
    }
}

/// Reads a command's payload.
pub fn parse(payload: &[u8]) -> Result<Request, Failed> {
    let r: Request = serde_json::from_slice(payload)
        .map_err(|e| Failed::usage(format!("the command is not a valid JSON request ({e})")))?;
    if r.id.is_empty() || r.id.len() > 128 {
        return Err(Failed::usage("`id` must have 1 to 128 bytes"));
    }
    Ok(r)
}

/// The answer's payload: `{"id", "device", "verb", "ok", …result}` or `{…, "ok": false, "error"}`.
pub fn answer(id: &str, device: &str, verb: &str, result: &Result<Map<String, Value>, Failed>) -> Vec<u8> {
    let mut v = Map::new();
    v.insert("id".into(), json!(id));
    v.insert("device".into(), json!(device));
    v.insert("verb".into(), json!(verb));
    match result {
        Ok(fields) => {
            v.insert("ok".into(), json!(true));
            v.extend(fields.clone());
        }
        Err(f) => {
            v.insert("ok".into(), json!(false));
            v.insert(
                "error".into(),
                json!({"kind": f.kind, "code": f.code, "message": f.message}),
            );
        }
    }
    Value::Object(v).to_string().into_bytes()
}

/// A device's hello as the `info` topic and the `info` verb show it.
pub fn info_json(i: &DeviceInfo, to: &str) -> Map<String, Value> {
    let v = json!({
        "device": i.device, "to": to, "version": i.version, "max_frame": i.max_frame,
        "sessions": i.sessions, "storage_capacity": i.storage_capacity,
        "storage_used": i.storage_used, "uptime_ms": i.uptime_ms, "commands": i.commands,
        "udp_port": i.udp_port, "clock_synced": i.clock_synced, "key_required": i.key_required,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Bytes as the answer carries them: `data` when they are UTF-8 text, else `data_hex`.
pub fn data_fields(bytes: &[u8]) -> Map<String, Value> {
    let mut m = Map::new();
    match std::str::from_utf8(bytes) {
        Ok(text) => m.insert("data".into(), json!(text)),
        Err(_) => m.insert("data_hex".into(), json!(hex(bytes))),
    };
    m
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of the hex field `name`.
fn unhex(s: &str, name: &str) -> Result<Vec<u8>, Failed> {
    if !s.len().is_multiple_of(2) {
        return Err(Failed::usage(format!("`{name}` has an odd number of digits")));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| Failed::usage(format!("`{name}` holds a character that is not a hex digit")))
        })
        .collect()
}

fn need<'r>(field: &'r Option<String>, name: &str, verb: &str) -> Result<&'r str, Failed> {
    field
        .as_deref()
        .ok_or_else(|| Failed::usage(format!("`{verb}` needs `{name}`")))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a verb needs of a device session (a trait, so the verbs are tested without one).
pub trait Session {
    /// `hello`.
    fn hello(&mut self) -> Result<DeviceInfo, ClientError>;
    /// `exec`; output to `out`; the status.
    fn exec(&mut self, command: &str, args: &[&str], out: &mut dyn FnMut(&[u8])) -> Result<i32, ClientError>;
    /// `time-get`: text, unix ms, synced.
    fn time_get(&mut self, format: &str) -> Result<(String, u64, bool), ClientError>;
    /// `time-set`: unix ms and synced after.
    fn time_set(&mut self, unix_ms: u64) -> Result<(u64, bool), ClientError>;
    /// `put`: size and SHA-256.
    fn put(&mut self, name: &str, data: &[u8], overwrite: bool) -> Result<(u64, [u8; 32]), ClientError>;
    /// `stat`: size.
    fn size(&mut self, name: &str) -> Result<u64, ClientError>;
    /// `get`: the content and its SHA-256.
    fn get(&mut self, name: &str) -> Result<(Vec<u8>, [u8; 32]), ClientError>;
    /// `list`.
    fn list(&mut self) -> Result<Vec<(String, u64)>, ClientError>;
    /// `remove`.
    fn remove(&mut self, name: &str) -> Result<(), ClientError>;
    /// `message`: the device's reply text.
    fn message(&mut self, from: &str, text: &str) -> Result<String, ClientError>;
    /// `FwStatus`.
    fn fw_status(&mut self) -> Result<FirmwareStatus, ClientError>;
    /// `FwBegin` … `FwCommit`: the image into the slot that is not running.
    fn fw_upload(&mut self, image: &[u8]) -> Result<ImageUpload, ClientError>;
    /// `FwTest`.
    fn fw_test(&mut self, hash: Option<Digest>) -> Result<FirmwareStatus, ClientError>;
    /// `FwConfirm`.
    fn fw_confirm(&mut self) -> Result<FirmwareStatus, ClientError>;
    /// `Reset`: the session ends with it.
    fn reset(&mut self) -> Result<(), ClientError>;
}

impl<T: embedded_io::Read + embedded_io::Write> Session for tether_host::Client<T>
where
    T::Error: embedded_io::Error,
{
    fn hello(&mut self) -> Result<DeviceInfo, ClientError> {
        tether_host::Client::hello(self, crate::CLIENT)
    }
    fn exec(&mut self, command: &str, args: &[&str], out: &mut dyn FnMut(&[u8])) -> Result<i32, ClientError> {
        tether_host::Client::exec(self, command, args, out)
    }
    fn time_get(&mut self, format: &str) -> Result<(String, u64, bool), ClientError> {
        let t = self.clock(format)?;
        Ok((t.text, t.unix_ms, t.synced))
    }
    fn time_set(&mut self, unix_ms: u64) -> Result<(u64, bool), ClientError> {
        let t = self.set_clock(unix_ms)?;
        Ok((t.unix_ms, t.synced))
    }
    fn put(&mut self, name: &str, data: &[u8], overwrite: bool) -> Result<(u64, [u8; 32]), ClientError> {
        let (sha, size) = sha256_of(data).map_err(|e| ClientError::Local(format!("cannot hash the data ({e})")))?;
        let t = tether_host::Client::put(self, name, &mut Cursor::new(data), size, sha, overwrite, |_| {})?;
        Ok((t.size, t.sha256))
    }
    fn size(&mut self, name: &str) -> Result<u64, ClientError> {
        Ok(self.stat(name)?.0)
    }
    fn get(&mut self, name: &str) -> Result<(Vec<u8>, [u8; 32]), ClientError> {
        let mut data = Vec::new();
        let t = tether_host::Client::get(self, name, 0, &mut data, Sha256::new(), |_| {})?;
        Ok((data, t.sha256))
    }
    fn list(&mut self) -> Result<Vec<(String, u64)>, ClientError> {
        Ok(tether_host::Client::list(self)?
            .into_iter()
            .map(|f| (f.name, f.size))
            .collect())
    }
    fn remove(&mut self, name: &str) -> Result<(), ClientError> {
        tether_host::Client::remove(self, name)
    }
    fn message(&mut self, from: &str, text: &str) -> Result<String, ClientError> {
        let frame = self.call(Kind::Message, &msg::Message { from }, text.as_bytes())?;
        Ok(String::from_utf8_lossy(frame.body).into_owned())
    }
    fn fw_status(&mut self) -> Result<FirmwareStatus, ClientError> {
        tether_host::Client::fw_status(self)
    }
    fn fw_upload(&mut self, image: &[u8]) -> Result<ImageUpload, ClientError> {
        tether_host::Client::fw_upload(self, image, |_| {})
    }
    fn fw_test(&mut self, hash: Option<Digest>) -> Result<FirmwareStatus, ClientError> {
        tether_host::Client::fw_test(self, hash)
    }
    fn fw_confirm(&mut self) -> Result<FirmwareStatus, ClientError> {
        tether_host::Client::fw_confirm(self)
    }
    fn reset(&mut self) -> Result<(), ClientError> {
        tether_host::Client::reset(self)
    }
}

/// Runs `verb` with `r` on the device; the answer's fields.
pub fn run(s: &mut dyn Session, verb: &str, r: &Request, to: &str) -> Result<Map<String, Value>, Failed> {
    let mut m = Map::new();
    match verb {
        "info" => m = info_json(&s.hello()?, to),
        "exec" => {
            let command = need(&r.command, "command", verb)?;
            let args: Vec<&str> = r.args.iter().map(String::as_str).collect();
            let mut output = Vec::new();
            let mut truncated = false;
            let status = s.exec(command, &args, &mut |chunk| {
                let room = MAX_DATA.saturating_sub(output.len());
                truncated |= chunk.len() > room;
                output.extend_from_slice(&chunk[..chunk.len().min(room)]);
            })?;
            m.insert("status".into(), json!(status));
            m.insert("output".into(), json!(String::from_utf8_lossy(&output)));
            m.insert("truncated".into(), json!(truncated));
        }
        "time-get" => {
            let (text, unix_ms, synced) = s.time_get(r.format.as_deref().unwrap_or(""))?;
            m.insert("time".into(), json!(text));
            m.insert("unix_ms".into(), json!(unix_ms));
            m.insert("synced".into(), json!(synced));
        }
        "time-set" => {
            let (unix_ms, synced) = s.time_set(r.unix_ms.unwrap_or_else(now_ms))?;
            m.insert("unix_ms".into(), json!(unix_ms));
            m.insert("synced".into(), json!(synced));
        }
        "put" => {
            let name = need(&r.name, "name", verb)?;
            let data = match (&r.data, &r.data_hex) {
                (Some(t), None) => t.as_bytes().to_vec(),
                (None, Some(h)) => unhex(h, "data_hex")?,
                _ => return Err(Failed::usage("`put` needs exactly one of `data` (text) and `data_hex`")),
            };
            if data.len() > MAX_DATA {
                return Err(Failed::usage(format!(
                    "`put` carries at most {MAX_DATA} bytes; use host-cli for larger files"
                )));
            }
            let (size, sha) = s.put(name, &data, r.overwrite)?;
            m.insert("size".into(), json!(size));
            m.insert("sha256".into(), json!(hex(&sha)));
        }
        "get" => {
            let name = need(&r.name, "name", verb)?;
            let size = s.size(name)?;
            if size > MAX_DATA as u64 {
                return Err(Failed::usage(format!(
                    "`{name}` has {size} bytes; `get` returns at most {MAX_DATA}: use host-cli for larger files"
                )));
            }
            let (data, sha) = s.get(name)?;
            m.insert("size".into(), json!(data.len()));
            m.insert("sha256".into(), json!(hex(&sha)));
            m.extend(data_fields(&data));
        }
        "ls" => {
            let files: Vec<Value> = s
                .list()?
                .into_iter()
                .map(|(name, size)| json!({"name": name, "size": size}))
                .collect();
            m.insert("files".into(), Value::Array(files));
        }
        "rm" => s.remove(need(&r.name, "name", verb)?)?,
        "message" => {
            let text = need(&r.text, "text", verb)?;
            let reply = s.message(r.from.as_deref().unwrap_or("tether-bridge"), text)?;
            m.insert("reply".into(), json!(reply));
        }
        "reset" => {
            s.reset()?;
            m.insert("reset".into(), json!(true));
        }
        "fw-status" => m = status_fields(&s.fw_status()?),
        "fw-upload" => {
            let up = s.fw_upload(&image(r, verb)?)?;
            m = status_fields(&s.fw_status()?);
            m.insert("hash".into(), json!(hex(&up.hash)));
            m.insert("resumed_from".into(), json!(up.resumed_from));
        }
        "fw-test" => {
            let hash = match &r.hash {
                Some(h) => Some(
                    unhex(h, "hash")?
                        .try_into()
                        .map_err(|_| Failed::usage("`hash` is a SHA-256: 64 hex digits"))?,
                ),
                None => None,
            };
            m = status_fields(&s.fw_test(hash)?);
        }
        "fw-confirm" => m = status_fields(&s.fw_confirm()?),
        other => {
            return Err(Failed::usage(format!(
                "no verb `{other}`; the verbs are {}",
                VERBS.join(", ")
            )))
        }
    }
    Ok(m)
}

/// A firmware status as an answer's fields (`fw status --json`'s object).
fn status_fields(status: &FirmwareStatus) -> Map<String, Value> {
    match status.to_json() {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The image of `fw-upload` and `fw-update`: `image_hex`, at most [`MAX_DATA`] bytes.
fn image(r: &Request, verb: &str) -> Result<Vec<u8>, Failed> {
    let h = need(&r.image_hex, "image_hex", verb)?;
    if h.len() > 2 * MAX_DATA {
        return Err(Failed::usage(format!(
            "`{verb}` carries an image of at most {MAX_DATA} bytes; use `host-cli fw update` for larger ones"
        )));
    }
    unhex(h, "image_hex")
}

/// An update between its reset and the device's return (`fw-update`).
#[derive(Debug, Clone)]
pub struct Update {
    /// The new image's hash.
    pub hash: Digest,
    /// Its version.
    pub version: String,
    /// Whether to confirm it once it runs.
    pub confirm: bool,
    /// The image that ran before (`version (slot N)`).
    pub before: String,
}

/// What `fw-update` does before the device resets: nothing more to do (it runs the image
/// already: the answer), or the reset is under way.
pub enum Begun {
    /// The answer now.
    Done(Map<String, Value>),
    /// The device resets into the new image on trial; [`finish_update`] once it is back.
    Resetting(Update),
}

/// `fw-update` up to the reset: upload the image (resuming), mark it for a trial boot, reset.
pub fn begin_update(s: &mut dyn Session, r: &Request) -> Result<Begun, Failed> {
    let image = image(r, "fw-update")?;
    let header =
        Header::parse(&image).map_err(|e| Failed::usage(format!("`image_hex` is not a firmware image: {e}")))?;
    let before = s.fw_status()?;
    if before.runs_confirmed(&header.hash) {
        let mut m = status_fields(&before);
        m.insert("updated".into(), json!(false));
        return Ok(Begun::Done(m));
    }
    s.fw_upload(&image)?;
    s.fw_test(Some(header.hash))?;
    s.reset()?;
    Ok(Begun::Resetting(Update {
        hash: header.hash,
        version: header.version.to_string(),
        confirm: r.confirm.unwrap_or(true),
        before: format!("{} (slot {})", before.running_slot().version, before.running),
    }))
}

/// `fw-update` once the device is back after its reset: the new image must run (else the device
/// went back: `reverted`); then it is confirmed unless the request said not to.
pub fn finish_update(s: &mut dyn Session, u: &Update) -> Result<Map<String, Value>, Failed> {
    let after = s.fw_status()?;
    if let Some(message) = after.went_back(&u.hash, &u.version) {
        return Err(Failed {
            kind: "reverted",
            code: None,
            message,
        });
    }
    let status = if u.confirm { s.fw_confirm()? } else { after };
    let mut m = status_fields(&status);
    m.insert("updated".into(), json!(true));
    m.insert("confirmed".into(), json!(u.confirm));
    m.insert("previous".into(), json!(u.before));
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_typos_are_refused() {
        let r = parse(br#"{"id":"7","reply":"a/b","command":"uptime","args":["x"]}"#).unwrap();
        assert_eq!((r.id.as_str(), r.args.len()), ("7", 1));
        for bad in [
            &b"nope"[..],
            br#"{"reply":"a"}"#,
            br#"{"id":""}"#,
            br#"{"id":"1","comand":"x"}"#,
        ] {
            assert_eq!(parse(bad).unwrap_err().kind, "usage");
        }
    }

    #[test]
    fn answers_carry_the_id_and_the_result_or_the_error() {
        let ok: Result<_, Failed> = Ok(data_fields(b"hi"));
        let v: Value = serde_json::from_slice(&answer("1", "d", "get", &ok)).unwrap();
        assert_eq!(
            (v["id"].as_str(), v["ok"].as_bool(), v["data"].as_str()),
            (Some("1"), Some(true), Some("hi"))
        );
        let err: Result<Map<String, Value>, Failed> = Err(ClientError::Device {
            code: ErrorCode::NotFound as u16,
            message: "no such file".into(),
        }
        .into());
        let v: Value = serde_json::from_slice(&answer("2", "d", "rm", &err)).unwrap();
        assert_eq!(v["error"]["kind"], "device");
        assert_eq!(v["error"]["code"], ErrorCode::NotFound.text());
        assert_eq!(data_fields(&[0xff, 0])["data_hex"], "ff00");
        assert_eq!(unhex("ff00", "x").unwrap(), [0xff, 0]);
        assert!(unhex("f", "x").is_err() && unhex("zz", "x").is_err());
    }

    /// A device that only answers `FwStatus` (and `FwConfirm`, counted), from `status`.
    struct Slots {
        status: FirmwareStatus,
        confirms: usize,
    }

    fn nothing<T>() -> Result<T, ClientError> {
        Err(ClientError::Local("not in this test".into()))
    }

    impl Session for Slots {
        fn hello(&mut self) -> Result<DeviceInfo, ClientError> {
            nothing()
        }
        fn exec(&mut self, _: &str, _: &[&str], _: &mut dyn FnMut(&[u8])) -> Result<i32, ClientError> {
            nothing()
        }
        fn time_get(&mut self, _: &str) -> Result<(String, u64, bool), ClientError> {
            nothing()
        }
        fn time_set(&mut self, _: u64) -> Result<(u64, bool), ClientError> {
            nothing()
        }
        fn put(&mut self, _: &str, _: &[u8], _: bool) -> Result<(u64, [u8; 32]), ClientError> {
            nothing()
        }
        fn size(&mut self, _: &str) -> Result<u64, ClientError> {
            nothing()
        }
        fn get(&mut self, _: &str) -> Result<(Vec<u8>, [u8; 32]), ClientError> {
            nothing()
        }
        fn list(&mut self) -> Result<Vec<(String, u64)>, ClientError> {
            nothing()
        }
        fn remove(&mut self, _: &str) -> Result<(), ClientError> {
            nothing()
        }
        fn message(&mut self, _: &str, _: &str) -> Result<String, ClientError> {
            nothing()
        }
        fn fw_status(&mut self) -> Result<FirmwareStatus, ClientError> {
            Ok(self.status.clone())
        }
        fn fw_upload(&mut self, _: &[u8]) -> Result<ImageUpload, ClientError> {
            nothing()
        }
        fn fw_test(&mut self, _: Option<Digest>) -> Result<FirmwareStatus, ClientError> {
            nothing()
        }
        fn fw_confirm(&mut self) -> Result<FirmwareStatus, ClientError> {
            self.confirms += 1;
            Ok(self.status.clone())
        }
        fn reset(&mut self) -> Result<(), ClientError> {
            nothing()
        }
    }

    #[test]
    fn an_update_whose_device_went_back_is_reverted_and_not_confirmed() {
        use tether_core::update::Semver;
        use tether_host::firmware::SlotStatus;
        let slot = |state, minor, hash| SlotStatus {
            state,
            version: Semver::new(1, minor, 0),
            security_counter: 0,
            size: 100,
            hash: [hash; 32],
        };
        let status = FirmwareStatus {
            running: 0,
            board: "any".into(),
            floor: 0,
            slots: [slot("active", 0, 1), slot("reverted", 1, 2)],
        };
        let mut device = Slots { status, confirms: 0 };
        let update = |hash, confirm| Update {
            hash: [hash; 32],
            version: "1.1.0".into(),
            confirm,
            before: "1.0.0 (slot 0)".into(),
        };
        let f = finish_update(&mut device, &update(2, true)).unwrap_err();
        assert_eq!(f.kind, "reverted");
        assert!(f.message.contains("went back to 1.0.0 (slot 0)"), "{}", f.message);
        assert_eq!(device.confirms, 0, "a device that went back is not confirmed");
        // The image that runs is the new one: confirmed, unless the request said not to.
        let m = finish_update(&mut device, &update(1, false)).unwrap();
        assert_eq!(
            (m["updated"].as_bool(), m["confirmed"].as_bool()),
            (Some(true), Some(false))
        );
        assert_eq!(device.confirms, 0);
        finish_update(&mut device, &update(1, true)).unwrap();
        assert_eq!(device.confirms, 1);
    }
}
