//! The command registry: named handlers the application registers, run by `exec`.
//!
//! There is no shell and no interpreter: a request names one command from a static table and
//! passes it a list of argument strings. A command writes its output into a bounded sink; output
//! longer than one frame is produced in pieces, the command being called again with the
//! `cursor` it left behind (a hand-rolled generator, so no allocator and no threads).

use core::fmt;

use heapless::Vec;

use super::policy::{Rule, ServedBy};
use super::stats::Stats;
use super::{Conn, Failure, Shared, Stream, EXEC_META_MAX};
use crate::codec::encode_with;
use crate::msg;
use crate::wire::{ErrorCode, Frame, FrameSpec, Kind, HEADER_LEN};

/// `Exec`: commands act on the device, so sessions only.
pub(crate) const RULES: [Rule; 1] = [Rule {
    streams: true,
    ..Rule::session_only(Kind::Exec, ServedBy::Exec, true, false)
}];

/// What a command call produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Finished with this exit status (0 is success).
    Done(i32),
    /// The sink is full: send this output and call again (the command has saved its place in
    /// [`Call::cursor`]).
    More,
    /// Nothing to send yet (e.g. waiting for a deadline): call again on a later poll. Output
    /// written in this call is discarded.
    Wait,
}

/// One registered command.
pub struct Command<C> {
    /// The name a request uses (at most 16 bytes).
    pub name: &'static str,
    /// One line of help, shown by the built-in `help` command.
    pub help: &'static str,
    /// The handler.
    pub run: fn(&mut C, &mut Call<'_>) -> Status,
}

/// Everything a command invocation sees.
pub struct Call<'a> {
    /// The arguments, without the command name.
    pub args: &'a [&'a str],
    /// Where output goes.
    pub out: Output<'a>,
    /// 0 on the first call; whatever the command stored before returning [`Status::More`]
    /// on later calls.
    pub cursor: u32,
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// The device's counters.
    pub stats: &'a Stats,
}

/// A bounded output sink. A write either fits whole or is refused whole (and then the command
/// returns [`Status::More`] after recording how far it got), so output is never cut mid-line.
pub struct Output<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Output<'a> {
    /// A sink over `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Output { buf, len: 0 }
    }

    /// Appends bytes if they all fit; returns whether they did.
    pub fn write_bytes(&mut self, data: &[u8]) -> bool {
        if self.buf.len() - self.len < data.len() {
            return false;
        }
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
        true
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.len
    }

    /// The bytes written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for Output<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.write_bytes(s.as_bytes()) {
            Ok(())
        } else {
            Err(fmt::Error)
        }
    }
}

/// Writes one formatted line, all or nothing: on a full sink the partial line is taken back.
#[macro_export]
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        let mark = $out.len();
        let ok = ::core::fmt::Write::write_fmt(&mut $out, format_args!($($arg)*)).is_ok()
            && ::core::fmt::Write::write_str(&mut $out, "\n").is_ok();
        if !ok {
            $out.truncate(mark);
        }
        ok
    }};
}

impl Output<'_> {
    /// Drops everything after the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// The built-in `help`: one line per registered command, resumable.
pub(crate) fn help<C>(commands: &[Command<C>], call: &mut Call<'_>) -> Status {
    let start = call.cursor as usize;
    let builtin = Command::<C> {
        name: "help",
        help: "list the commands",
        run: |_, _| Status::Done(0),
    };
    let all = core::iter::once(&builtin).chain(commands.iter());
    for (i, c) in all.enumerate().skip(start) {
        if !outln!(call.out, "{:<12} {}", c.name, c.help) {
            call.cursor = i as u32;
            return Status::More;
        }
    }
    Status::Done(0)
}

/// Decodes an `ExecRequest` and checks it against the protocol's limits.
///
/// A list longer than its capacity does not decode, so the argument count is read first: more
/// than [`msg::MAX_ARGS`] arguments is a request beyond a limit (`InvalidArgument`), not a
/// malformed one.
fn exec_request<'a>(frame: &Frame<'a>) -> Result<msg::ExecRequest<'a>, Failure> {
    let malformed = (ErrorCode::Malformed, "exec metadata");
    let (_, rest) = postcard::take_from_bytes::<&str>(frame.meta).map_err(|_| malformed)?;
    let (count, _) = postcard::take_from_bytes::<u32>(rest).map_err(|_| malformed)?;
    if count as usize > msg::MAX_ARGS {
        return Err((ErrorCode::InvalidArgument, "more than 8 exec arguments"));
    }
    let req = frame.meta::<msg::ExecRequest<'_>>().map_err(|c| (c, "exec metadata"))?;
    super::within(
        req.command,
        msg::MAX_COMMAND_LEN,
        "exec command name longer than 16 bytes",
    )?;
    for arg in &req.args {
        super::within(arg, msg::MAX_ARG_LEN, "exec argument longer than 56 bytes")?;
    }
    Ok(req)
}

/// The exec service's own state: the application's command table.
pub(crate) struct Exec<C: 'static> {
    commands: &'static [Command<C>],
}

impl<C> Exec<C> {
    /// A service running `commands` (and the built-in `help`).
    pub(crate) const fn new(commands: &'static [Command<C>]) -> Self {
        Exec { commands }
    }

    /// The command names `hello` lists: `help`, then the table's.
    pub(crate) fn names(&self) -> impl Iterator<Item = &'static str> {
        core::iter::once("help").chain(self.commands.iter().map(|c| c.name))
    }

    /// The registry index of the command called `name` (`help` is built in), for
    /// [`Exec::run`]; every transport that runs commands looks them up here.
    pub(crate) fn find(&self, name: &str) -> Result<usize, Failure> {
        if name == "help" {
            return Ok(usize::MAX);
        }
        self.commands
            .iter()
            .position(|c| c.name == name)
            .ok_or((ErrorCode::UnknownCommand, "unknown command; try `help`"))
    }

    /// The name of the command at `index` (from [`Exec::find`]).
    #[cfg_attr(not(feature = "plain-actors"), allow(dead_code))]
    pub(crate) fn name(&self, index: usize) -> &'static str {
        self.commands.get(index).map_or("help", |c| c.name)
    }

    /// One call of the command at `index` with `args`, resuming at `cursor`, its output into
    /// `out`. Returns the status, the bytes written and the cursor to resume at.
    pub(crate) fn run<S>(
        &self,
        sh: &mut Shared<'_, C, S>,
        index: usize,
        args: &[&str],
        cursor: u32,
        out: &mut [u8],
    ) -> (Status, usize, u32) {
        let mut call = Call {
            args,
            out: Output::new(out),
            cursor,
            uptime_ms: sh.facts.uptime_ms,
            stats: sh.stats,
        };
        let status = match self.commands.get(index) {
            Some(c) => (c.run)(sh.ctx, &mut call),
            None => help(self.commands, &mut call),
        };
        (status, call.out.len(), call.cursor)
    }

    /// Answers `Exec`: its first frame, the rest of its output as `conn`'s stream.
    pub(super) fn serve<S>(
        &self,
        sh: &mut Shared<'_, C, S>,
        conn: &mut Conn,
        frame: &Frame<'_>,
        out: &mut [u8],
    ) -> Result<usize, Failure> {
        let req = exec_request(frame)?;
        let command = self.find(req.command)?;
        // Within the limits just checked, the metadata always fits.
        let meta = Vec::from_slice(frame.meta).map_err(|_| (ErrorCode::Internal, "exec metadata room"))?;
        let (n, next) = self.step(sh, frame.request_id(), command, 0, meta, out);
        conn.stream = next;
        Ok(n)
    }

    /// The next frame of a command's output; returns its length (0 while the command waits) and
    /// what the stream does next.
    pub(super) fn step<S>(
        &self,
        sh: &mut Shared<'_, C, S>,
        id: u32,
        command: usize,
        cursor: u32,
        meta: Vec<u8, EXEC_META_MAX>,
        out: &mut [u8],
    ) -> (usize, Stream) {
        let room = out.len().min(sh.facts.frame_room()) - HEADER_LEN;
        let ran = {
            let Ok(req) = postcard::from_bytes::<msg::ExecRequest<'_>>(&meta) else {
                let detail = format_args!("exec metadata");
                return (
                    sh.error(out, Kind::Exec, id, ErrorCode::Malformed, detail),
                    Stream::Idle,
                );
            };
            let body = &mut out[HEADER_LEN..HEADER_LEN + room];
            self.run(sh, command, &req.args, cursor, body)
        };
        let (status, written, cursor) = ran;
        let (spec, next) = match status {
            Status::More if written == 0 => {
                let detail = format_args!("command output line longer than a frame");
                return (sh.error(out, Kind::Exec, id, ErrorCode::Internal, detail), Stream::Idle);
            }
            Status::More => (
                FrameSpec::more(Kind::Exec, id),
                Stream::Exec {
                    id,
                    command,
                    cursor,
                    meta,
                },
            ),
            Status::Wait => {
                return (
                    0,
                    Stream::Exec {
                        id,
                        command,
                        cursor,
                        meta,
                    },
                )
            }
            Status::Done(status) if written == 0 => return end(sh, id, status, out),
            Status::Done(status) => (FrameSpec::more(Kind::Exec, id), Stream::ExecEnd { id, status }),
        };
        // The output already sits where an empty-metadata frame's body goes.
        let n = encode_with(out, spec, &(), |_| Ok(written)).unwrap_or(0);
        (n, next)
    }
}

/// The last frame of a command's answer: its exit status.
pub(super) fn end<C, S>(sh: &mut Shared<'_, C, S>, id: u32, status: i32, out: &mut [u8]) -> (usize, Stream) {
    let spec = FrameSpec::response(Kind::Exec, id);
    (sh.reply(out, spec, &msg::ExecDone { status }, &[]), Stream::Idle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_all_or_nothing() {
        let mut buf = [0u8; 8];
        let mut out = Output::new(&mut buf);
        assert!(outln!(out, "{}", "abc"));
        assert!(!outln!(out, "{}", "defgh"));
        assert_eq!(out.as_bytes(), b"abc\n");
        assert!(out.write_bytes(b"1234"));
        assert!(!out.write_bytes(b"x"));
        assert_eq!(out.remaining(), 0);
    }

    #[test]
    fn help_resumes_where_it_stopped() {
        let cmds = [
            Command::<()> {
                name: "uptime",
                help: "time since boot",
                run: |_, _| Status::Done(0),
            },
            Command::<()> {
                name: "led",
                help: "on|off|toggle|status",
                run: |_, _| Status::Done(0),
            },
        ];
        let stats = Stats::default();
        let mut text = std::vec::Vec::new();
        let mut cursor = 0;
        loop {
            let mut buf = [0u8; 40];
            let mut call = Call {
                args: &[],
                out: Output::new(&mut buf),
                cursor,
                uptime_ms: 0,
                stats: &stats,
            };
            let status = help(&cmds, &mut call);
            text.extend_from_slice(call.out.as_bytes());
            cursor = call.cursor;
            if status != Status::More {
                break;
            }
        }
        let text = std::string::String::from_utf8(text).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("led          on|off|toggle|status"));
    }
}
