//! The plain TCP remote command: a command line runs a command from the device's registry (the
//! same one `exec` uses; never a shell) and the reply is framed the way the socket tutorials'
//! clients read it.
//!
//! - [`Framing::Length`]: a 4-byte little-endian signed length (`struct.pack('i', n)` on a PC),
//!   then `n` bytes of output.
//! - [`Framing::JsonHeader`]: a 4-byte little-endian length `h`, `h` bytes of a JSON object
//!   `{"file_name": NAME, "md5": HEX, "total_size": n}`, then `n` bytes of output whose MD5 is
//!   `HEX`.
//!
//! The length and the digest come before the output, so the whole output must exist before its
//! first byte is sent. A command may produce it in several calls ([`Status::More`]) and commands
//! are not deterministic (`uptime`), so running one twice to measure it would lie. Instead the
//! reply is built in place in the connection's transmit buffer: the next command line is taken
//! only once the previous reply has been acknowledged (the buffer is then empty and contiguous),
//! the command writes its output after [`REPLY_HEADER_ROOM`] bytes, the header goes in front and
//! the reply is queued in one piece. The output is therefore bounded by the socket's transmit
//! buffer less [`REPLY_HEADER_ROOM`]; longer output is answered, framed the same way, with an
//! `error:` text that says so. No output is ever sent with a length or a digest it does not have.

use core::fmt::Write as _;

use heapless::Vec;
use md5::{Digest as _, Md5};
use serde::Serialize;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

use super::Activity;
use crate::server::Server;
use crate::service::exec::{Output, Status};
use crate::service::files::Storage;
use crate::service::stats::Service;
use crate::service::{Context, Device};

/// Longest command line, newline included; a longer one is answered with an error and skipped up
/// to its newline. (Bounded as well by the socket's receive buffer, where the line waits.)
pub const COMMAND_LINE_MAX: usize = 256;
/// Room kept in front of a command's output for the reply header: the 4-byte length and, on
/// the JSON port, the header object (at most 97 bytes with a 16-byte command name).
pub const REPLY_HEADER_ROOM: usize = 4 + 128;
/// Smallest transmit buffer a command socket needs: header room plus an error text.
pub const COMMAND_TX_MIN: usize = 512;
/// A client that never sends a newline (the tutorials' client: one `send()` per command) has
/// its command end once it has sent nothing more for this long. After a connection's first
/// newline only newlines end its commands, so a line split across segments is never cut.
pub const LINE_GRACE_MS: u64 = 100;
/// Most words in a command line (the command and its arguments).
const MAX_WORDS: usize = 16;
/// Command lines answered per connection per pass.
const LINES_PER_PASS: usize = 8;

/// How a reply is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// 4-byte length, output.
    Length,
    /// 4-byte length, JSON header, output.
    JsonHeader,
}

/// A command line found in the receive buffer, not consumed until its reply is queued.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Bytes to consume once answered (the line and its newline; at most COMMAND_LINE_MAX).
    consume: u16,
    /// Bytes of the line itself (no newline, no CR).
    line: u16,
    /// The line filled the receive limit without a newline.
    too_long: bool,
    /// Where the command resumes (a waiting command).
    cursor: u32,
}

/// One socket of a remote-command pool.
pub(super) struct CommandSlot {
    pub(super) handle: SocketHandle,
    framing: Framing,
    port: u16,
    activity: Activity,
    /// The connection has ended a line with a newline: from now on only newlines end lines.
    lines: bool,
    /// Skipping the rest of an over-long line, up to its newline.
    discarding: bool,
    pending: Option<Pending>,
}

impl CommandSlot {
    pub(super) fn new(handle: SocketHandle, framing: Framing, port: u16) -> Self {
        CommandSlot {
            handle,
            framing,
            port,
            activity: Activity::NONE,
            lines: false,
            discarding: false,
            pending: None,
        }
    }

    /// Forgets the connection (it ended or was reset).
    pub(super) fn forget(&mut self) {
        *self = CommandSlot::new(self.handle, self.framing, self.port);
    }
}

/// What building a reply came to.
enum Composed {
    /// Queued this many bytes.
    Sent(usize),
    /// The command waits: nothing queued, call again later.
    Wait,
}

#[derive(Serialize)]
struct JsonHeader<'a> {
    file_name: &'a str,
    md5: &'a str,
    total_size: u32,
}

impl<C: Context + 'static, S: Storage, const N: usize, const SESSIONS: usize> Server<'_, C, S, N, SESSIONS> {
    pub(super) fn remote_command(&mut self, i: usize, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let limits = self.config.limits;
        let Server { plain, device, .. } = self;
        let slot = &mut plain.commands[i];
        let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
        if !socket.is_open() {
            if super::owes_reset(socket) {
                return false;
            }
            slot.forget();
            let _ = socket.listen(slot.port);
            return true;
        }
        if matches!(socket.state(), tcp::State::Listen | tcp::State::SynReceived) {
            return false;
        }
        if slot.activity.idle(now, socket, &limits) {
            socket.abort();
            slot.forget();
            return true;
        }
        let mut any = false;
        for _ in 0..LINES_PER_PASS {
            if slot.discarding {
                any |= discard_line(slot, socket);
                if slot.discarding {
                    break;
                }
                continue;
            }
            if slot.pending.is_none() {
                slot.pending = next_line(slot, socket, now);
            }
            let Some(mut p) = slot.pending else { break };
            // The previous reply must be acknowledged first: the empty buffer is where this one
            // is built (and a client that does not read is not given more).
            if socket.send_queue() != 0 {
                break;
            }
            let mut line = [0u8; COMMAND_LINE_MAX];
            let len = usize::from(p.line);
            if !p.too_long && socket.peek_slice(&mut line[..len]) != Ok(len) {
                break;
            }
            let framing = slot.framing;
            let line = &line[..len];
            let composed = socket.send(|window| match compose(device, framing, line, &mut p, window) {
                Composed::Sent(n) => (n, true),
                Composed::Wait => (0, false),
            });
            if composed != Ok(true) {
                slot.pending = Some(p);
                break;
            }
            device.stats.count(Service::Exec);
            let _ = socket.recv(|b| (usize::from(p.consume).min(b.len()), ()));
            slot.pending = None;
            slot.discarding = p.too_long;
            any = true;
        }
        // The client has finished sending and every line has been answered: close our side
        // after the queued replies.
        if socket.state() == tcp::State::CloseWait && socket.recv_queue() == 0 && slot.pending.is_none() {
            socket.close();
            any = true;
        }
        any
    }
}

/// Finds the next command line in the receive buffer without consuming it; blank lines are
/// consumed and skipped.
fn next_line(slot: &mut CommandSlot, socket: &mut tcp::Socket<'_>, now: Instant) -> Option<Pending> {
    let limit = COMMAND_LINE_MAX.min(socket.recv_capacity());
    loop {
        let mut buf = [0u8; COMMAND_LINE_MAX];
        let n = socket.peek_slice(&mut buf[..limit]).ok()?;
        if n == 0 {
            return None;
        }
        let (consume, mut line) = match buf[..n].iter().position(|&b| b == b'\n') {
            Some(at) => {
                slot.lines = true;
                (at + 1, at)
            }
            None if n == limit => {
                return Some(Pending {
                    consume: n as u16,
                    line: 0,
                    too_long: true,
                    cursor: 0,
                })
            }
            None => {
                let closed = socket.state() == tcp::State::CloseWait;
                // Nothing has moved for the grace period (an acknowledgement of our previous
                // reply counts as movement too, which can only lengthen the wait).
                let paused = !slot.lines && slot.activity.quiet(now) >= Duration::from_millis(LINE_GRACE_MS);
                if !(closed || paused) {
                    return None;
                }
                (n, n)
            }
        };
        if line > 0 && buf[line - 1] == b'\r' {
            line -= 1;
        }
        if buf[..line].iter().all(u8::is_ascii_whitespace) {
            let _ = socket.recv(|b| (consume.min(b.len()), ()));
            continue;
        }
        return Some(Pending {
            consume: consume as u16,
            line: line as u16,
            too_long: false,
            cursor: 0,
        });
    }
}

/// Consumes the rest of an over-long line; returns whether anything was consumed.
fn discard_line(slot: &mut CommandSlot, socket: &mut tcp::Socket<'_>) -> bool {
    let r = socket.recv(|b| match b.iter().position(|&c| c == b'\n') {
        Some(at) => (at + 1, (at + 1, true)),
        None => (b.len(), (b.len(), false)),
    });
    match r {
        Ok((n, ended)) => {
            if ended {
                slot.discarding = false;
                slot.lines = true;
            }
            n > 0
        }
        Err(_) => false,
    }
}

/// Runs the command `line` names and builds its reply in `window` (the whole, empty transmit
/// buffer).
fn compose<C: Context + 'static, S: Storage>(
    device: &mut Device<'_, C, S>,
    framing: Framing,
    line: &[u8],
    p: &mut Pending,
    window: &mut [u8],
) -> Composed {
    if window.len() < COMMAND_TX_MIN {
        return Composed::Wait;
    }
    let limit = window.len() - REPLY_HEADER_ROOM;
    let mut name: &str = "error";
    let (len, ok) = {
        let body = &mut window[REPLY_HEADER_ROOM..];
        match run(device, line, p, body, &mut name) {
            Some(Ok(len)) => (len, true),
            Some(Err(detail)) => (error_text(body, detail, limit), false),
            None => return Composed::Wait,
        }
    };
    if !ok {
        name = "error";
    }
    let mut header = [0u8; REPLY_HEADER_ROOM];
    let h = match framing {
        Framing::Length => {
            header[..4].copy_from_slice(&(len as i32).to_le_bytes());
            4
        }
        Framing::JsonHeader => {
            let digest = Md5::digest(&window[REPLY_HEADER_ROOM..REPLY_HEADER_ROOM + len]);
            let mut hex = [0u8; 32];
            for (i, b) in digest.iter().enumerate() {
                hex[2 * i] = HEX[usize::from(b >> 4)];
                hex[2 * i + 1] = HEX[usize::from(b & 15)];
            }
            let fields = JsonHeader {
                file_name: name,
                md5: core::str::from_utf8(&hex).unwrap_or_default(),
                total_size: len as u32,
            };
            // Registry names are at most 16 bytes, so the header fits its room; a longer name
            // an application registered anyway is reported as `command`.
            let j = serde_json_core::to_slice(&fields, &mut header[4..])
                .or_else(|_| {
                    let fields = JsonHeader {
                        file_name: "command",
                        ..fields
                    };
                    serde_json_core::to_slice(&fields, &mut header[4..])
                })
                .unwrap_or(0);
            header[..4].copy_from_slice(&(j as i32).to_le_bytes());
            4 + j
        }
    };
    window[..h].copy_from_slice(&header[..h]);
    window.copy_within(REPLY_HEADER_ROOM..REPLY_HEADER_ROOM + len, h);
    Composed::Sent(h + len)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Why a line has no command output.
enum Refusal {
    /// A fixed text (the registry's, or the line's problem).
    Text(&'static str),
    /// The output does not fit the transmit buffer.
    TooLong,
    /// The command paused after producing part of its output.
    Paused,
}

/// Runs the line's command into `body`: `Some(Ok(len))` when it finished, `None` while it waits
/// before producing anything.
fn run<C: Context + 'static, S: Storage>(
    device: &mut Device<'_, C, S>,
    line: &[u8],
    p: &mut Pending,
    body: &mut [u8],
    name: &mut &str,
) -> Option<Result<usize, Refusal>> {
    if device.key_required() {
        // These ports have no way to prove the key (the tutorials' clients know none), so on a
        // device with a key they run nothing; commands go through a secure session instead.
        return Some(Err(Refusal::Text(
            "this device requires its key: run commands with `host-cli --key-file FILE exec`",
        )));
    }
    if p.too_long {
        return Some(Err(Refusal::Text("the command line is longer than 255 bytes")));
    }
    let Ok(text) = core::str::from_utf8(line) else {
        return Some(Err(Refusal::Text("the command line is not UTF-8")));
    };
    let mut words: Vec<&str, MAX_WORDS> = Vec::new();
    for w in text.split_ascii_whitespace() {
        if words.push(w).is_err() {
            return Some(Err(Refusal::Text("too many arguments (at most 15)")));
        }
    }
    let Some((&command, args)) = words.split_first() else {
        return Some(Err(Refusal::Text("the command line is empty")));
    };
    let index = match device.find_command(command) {
        Ok(index) => index,
        Err((_, detail)) => return Some(Err(Refusal::Text(detail))),
    };
    *name = device.command_name(index);
    let mut len = 0;
    loop {
        let (status, wrote, cursor) = device.run_command(index, args, p.cursor, &mut body[len..]);
        p.cursor = cursor;
        match status {
            Status::Done(_) => return Some(Ok(len + wrote)),
            Status::More if wrote > 0 => len += wrote,
            Status::More => return Some(Err(Refusal::TooLong)),
            Status::Wait if len == 0 => return None,
            Status::Wait => return Some(Err(Refusal::Paused)),
        }
    }
}

/// Writes the `error:` line for `refusal` into `body`; returns its length.
fn error_text(body: &mut [u8], refusal: Refusal, limit: usize) -> usize {
    let mut out = Output::new(body);
    let _ = match refusal {
        Refusal::Text(detail) => writeln!(out, "error: {detail}"),
        Refusal::TooLong => writeln!(
            out,
            "error: the output is longer than {limit} bytes, the most this port holds; \
             use the framed exec service (host-cli exec)"
        ),
        Refusal::Paused => writeln!(
            out,
            "error: the command paused in the middle of its output; use the framed exec service"
        ),
    };
    out.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ramstore::RamStore;
    use crate::service::DeviceConfig;

    /// `pieces N`: N 10-byte lines, one per call (`More` after each).
    fn pieces(_: &mut (), call: &mut crate::service::exec::Call<'_>) -> Status {
        let n: u32 = call.args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
        if call.cursor == n {
            return Status::Done(0);
        }
        if !call.out.write_bytes(b"piece ...\n") {
            return Status::More;
        }
        call.cursor += 1;
        Status::More
    }

    /// Produces a line, then waits (what no built-in command does).
    fn pauser(_: &mut (), call: &mut crate::service::exec::Call<'_>) -> Status {
        if call.cursor == 0 {
            call.cursor = 1;
            let _ = call.out.write_bytes(b"half\n");
            return Status::More;
        }
        Status::Wait
    }

    /// Waits on its first call, answers on the second.
    fn later(_: &mut (), call: &mut crate::service::exec::Call<'_>) -> Status {
        if call.cursor == 0 {
            call.cursor = 1;
            return Status::Wait;
        }
        let _ = call.out.write_bytes(b"done\n");
        Status::Done(0)
    }

    static COMMANDS: [crate::service::exec::Command<()>; 3] = [
        crate::service::exec::Command {
            name: "pieces",
            help: "",
            run: pieces,
        },
        crate::service::exec::Command {
            name: "pauser",
            help: "",
            run: pauser,
        },
        crate::service::exec::Command {
            name: "later",
            help: "",
            run: later,
        },
    ];

    fn device() -> Device<'static, (), RamStore<'static, 1>> {
        let mem = std::boxed::Box::leak(std::vec![0u8; 256].into_boxed_slice());
        let config = DeviceConfig { name: "t", window: 1 };
        Device::new(config, RamStore::new(mem), &COMMANDS, (), 2048, 1)
    }

    fn reply(
        device: &mut Device<'static, (), RamStore<'static, 1>>,
        framing: Framing,
        line: &str,
        tx: usize,
    ) -> Option<std::vec::Vec<u8>> {
        let mut window = std::vec![0u8; tx];
        let mut p = Pending {
            consume: line.len() as u16,
            line: line.len() as u16,
            too_long: false,
            cursor: 0,
        };
        match compose(device, framing, line.as_bytes(), &mut p, &mut window) {
            Composed::Sent(n) => Some(window[..n].to_vec()),
            Composed::Wait => None,
        }
    }

    #[test]
    fn output_made_of_several_pieces_is_measured_whole() {
        let mut d = device();
        let out = reply(&mut d, Framing::Length, "pieces", 1024).unwrap();
        assert_eq!(&out[..4], &50i32.to_le_bytes());
        assert_eq!(&out[4..], "piece ...\n".repeat(5).as_bytes());
        let out = reply(&mut d, Framing::JsonHeader, "pieces", 1024).unwrap();
        let h = i32::from_le_bytes(out[..4].try_into().unwrap()) as usize;
        let header = core::str::from_utf8(&out[4..4 + h]).unwrap();
        let digest = Md5::digest("piece ...\n".repeat(5).as_bytes());
        let hex: std::string::String = digest.iter().map(|b| std::format!("{b:02x}")).collect();
        assert_eq!(
            header,
            std::format!("{{\"file_name\":\"pieces\",\"md5\":\"{hex}\",\"total_size\":50}}")
        );
        assert_eq!(&out[4 + h..], "piece ...\n".repeat(5).as_bytes());
    }

    #[test]
    fn output_past_the_buffer_and_a_pause_mid_output_are_errors() {
        let mut d = device();
        assert!(
            reply(&mut d, Framing::Length, "pieces", COMMAND_TX_MIN - 1).is_none(),
            "a window under COMMAND_TX_MIN is not used"
        );
        // 512 - 132 = 380 bytes of room: 38 lines fit, 39 do not.
        let out = reply(&mut d, Framing::Length, "pieces 38", COMMAND_TX_MIN).unwrap();
        assert_eq!(&out[4..], "piece ...\n".repeat(38).as_bytes());
        let out = reply(&mut d, Framing::Length, "pieces 39", COMMAND_TX_MIN).unwrap();
        let text = core::str::from_utf8(&out[4..]).unwrap();
        assert_eq!(out[..4], (text.len() as i32).to_le_bytes());
        assert_eq!(
            text,
            "error: the output is longer than 380 bytes, the most this port holds; \
             use the framed exec service (host-cli exec)\n"
        );
        let out = reply(&mut d, Framing::Length, "pauser", COMMAND_TX_MIN).unwrap();
        let text = core::str::from_utf8(&out[4..]).unwrap();
        assert_eq!(out[..4], (text.len() as i32).to_le_bytes());
        assert!(text.starts_with("error: the command paused"), "{text}");
    }

    #[test]
    fn a_command_that_waits_first_is_called_again() {
        let mut d = device();
        let mut window = std::vec![0u8; 1024];
        let mut p = Pending {
            consume: 6,
            line: 5,
            too_long: false,
            cursor: 0,
        };
        assert!(matches!(
            compose(&mut d, Framing::Length, b"later", &mut p, &mut window),
            Composed::Wait
        ));
        assert_eq!(p.cursor, 1, "the cursor is kept for the next call");
        let Composed::Sent(n) = compose(&mut d, Framing::Length, b"later", &mut p, &mut window) else {
            panic!("no reply on the second call");
        };
        assert_eq!(&window[..n], b"\x05\x00\x00\x00done\n");
    }
}
