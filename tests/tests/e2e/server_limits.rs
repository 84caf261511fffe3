//! Every limit docs/PROTOCOL.md states, enforced on receive with the documented error, over TCP
//! and over UDP, on the in-process stack: one table, each rule at its limit and one past it.

use crate::common::*;
use tether_core::msg;
use tether_core::service::clock::SPECIFIERS;
use tether_core::wire::{ErrorCode, Kind};
use tether_sim::inproc::{Datagrams, Shared, Stack};

/// 2026-11-22T00:15:16Z: a time whose `%s` has 10 digits.
const T: u64 = 1_795_306_516_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Tcp,
    Udp,
}

/// A peer on one transport that sends whole request frames and returns the final answer.
struct Peer {
    via: Via,
    raw: Option<Raw>,
    udp: Datagrams,
    port: u16,
}

impl Peer {
    fn new(stack: &Shared, via: Via) -> Peer {
        Peer {
            via,
            raw: (via == Via::Tcp).then(|| Raw::connect(stack)),
            udp: Stack::udp(stack),
            port: stack.borrow().server.config().udp_port,
        }
    }

    /// Sends `frame` and returns the last frame of its answer (reading a stream to its end).
    fn ask(&mut self, frame: &[u8]) -> Reply {
        match (self.via, self.raw.as_mut()) {
            (Via::Tcp, Some(raw)) => {
                raw.write(frame);
                for _ in 0..10_000 {
                    let r = raw.read();
                    if !r.header.flags.contains(tether_core::wire::Flags::MORE) {
                        return r;
                    }
                }
                panic!("an endless stream");
            }
            _ => parse(&udp_call(&mut self.udp, self.port, frame)),
        }
    }
}

/// What a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Served.
    Ok,
    /// Refused with this code, and (for `InvalidArgument` beyond a limit) a message naming the
    /// limit's number.
    Err(ErrorCode, Option<usize>),
}

struct Case {
    rule: &'static str,
    kind: Kind,
    frame: Vec<u8>,
    want: Want,
    /// Served over UDP too (the other cases are TCP-only services).
    udp: bool,
}

fn s(len: usize) -> String {
    "x".repeat(len)
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let mut add = |rule, kind, frame: Vec<u8>, want, udp| {
        v.push(Case {
            rule,
            kind,
            frame,
            want,
            udp,
        })
    };
    let inv = |limit| Want::Err(ErrorCode::InvalidArgument, Some(limit));
    let (client, from, format) = (msg::MAX_CLIENT_LEN, msg::MAX_FROM_LEN, msg::MAX_FORMAT_LEN);
    add(
        "Hello.client at its limit",
        Kind::Hello,
        frame!(Kind::Hello, 1, &msg::Hello { client: &s(client) }, &[]),
        Want::Ok,
        true,
    );
    add(
        "Hello.client beyond",
        Kind::Hello,
        frame!(Kind::Hello, 2, &msg::Hello { client: &s(client + 1) }, &[]),
        inv(client),
        true,
    );
    add(
        "Message.from at its limit",
        Kind::Message,
        frame!(Kind::Message, 3, &msg::Message { from: &s(from) }, b"hi"),
        Want::Ok,
        true,
    );
    add(
        "Message.from beyond",
        Kind::Message,
        frame!(Kind::Message, 4, &msg::Message { from: &s(from + 1) }, b"hi"),
        inv(from),
        true,
    );
    add(
        "TimeGet.format at its limit",
        Kind::TimeGet,
        frame!(Kind::TimeGet, 5, &msg::TimeGet { format: &s(format) }, &[]),
        Want::Ok,
        true,
    );
    add(
        "TimeGet.format beyond",
        Kind::TimeGet,
        frame!(Kind::TimeGet, 6, &msg::TimeGet { format: &s(format + 1) }, &[]),
        inv(format),
        true,
    );
    // 25 ten-digit `%s` and 6 more bytes: exactly MAX_TIME_TEXT bytes of text; one more is over.
    let text = |extra: usize| format!("{}{}", "%s".repeat(25), s(extra));
    assert_eq!(msg::MAX_TIME_TEXT, 256);
    add(
        "formatted time at its limit",
        Kind::TimeGet,
        frame!(Kind::TimeGet, 7, &msg::TimeGet { format: &text(6) }, &[]),
        Want::Ok,
        true,
    );
    add(
        "formatted time beyond",
        Kind::TimeGet,
        frame!(Kind::TimeGet, 8, &msg::TimeGet { format: &text(7) }, &[]),
        inv(msg::MAX_TIME_TEXT),
        true,
    );
    add(
        "every documented specifier",
        Kind::TimeGet,
        frame!(
            Kind::TimeGet,
            9,
            &msg::TimeGet {
                format: &SPECIFIERS.replace(' ', "")
            },
            &[]
        ),
        Want::Ok,
        true,
    );
    add(
        "an undocumented specifier",
        Kind::TimeGet,
        frame!(Kind::TimeGet, 10, &msg::TimeGet { format: "%Q" }, &[]),
        Want::Err(ErrorCode::InvalidArgument, None),
        true,
    );
    for (i, (ms, ok)) in [
        (msg::TIME_MIN_MS, true),
        (msg::TIME_MIN_MS - 1, false),
        (msg::TIME_END_MS - 1, true),
        (msg::TIME_END_MS, false),
        (1 << 62, false),
        (u64::MAX, false),
        (0, false),
    ]
    .into_iter()
    .enumerate()
    {
        let want = if ok { Want::Ok } else { inv(2000) };
        add(
            "TimeSet range (years 2000-9999)",
            Kind::TimeSet,
            frame!(Kind::TimeSet, 20 + i as u32, &msg::Clock { unix_ms: ms }, &[]),
            want,
            true,
        );
    }
    for kind in [Kind::Echo, Kind::Upper] {
        add(
            "Echo/Upper without metadata",
            kind,
            frame!(kind, 30, &(), b"abc"),
            Want::Ok,
            true,
        );
        add(
            // Not a limit: metadata that is not the empty message the kind expects (§8, §11.2).
            "Echo/Upper with metadata",
            kind,
            frame!(kind, 31, &1u8, b"abc"),
            Want::Err(ErrorCode::Malformed, None),
            true,
        );
    }
    let (cmd, arg, args) = (msg::MAX_COMMAND_LEN, msg::MAX_ARG_LEN, msg::MAX_ARGS);
    let exec = |id, command: &str, list: &[String]| {
        let list: Vec<&str> = list.iter().map(String::as_str).collect();
        frame!(Kind::Exec, id, &(command, &list[..]), &[])
    };
    add(
        "exec command at its limit (no such command)",
        Kind::Exec,
        exec(40, &s(cmd), &[]),
        Want::Err(ErrorCode::UnknownCommand, None),
        false,
    );
    add(
        "exec command beyond",
        Kind::Exec,
        exec(41, &s(cmd + 1), &[]),
        inv(cmd),
        false,
    );
    add(
        "exec argument at its limit",
        Kind::Exec,
        exec(42, "help", &[s(arg)]),
        Want::Ok,
        false,
    );
    add(
        "exec argument beyond",
        Kind::Exec,
        exec(43, "help", &[s(arg + 1)]),
        inv(arg),
        false,
    );
    add(
        "exec arguments at their limit",
        Kind::Exec,
        exec(44, "help", &vec![s(arg); args]),
        Want::Ok,
        false,
    );
    add(
        "exec arguments beyond",
        Kind::Exec,
        exec(45, "help", &vec![s(1); args + 1]),
        inv(args),
        false,
    );
    add(
        "the largest ExecRequest",
        Kind::Exec,
        exec(46, &s(cmd), &vec![s(arg); args]),
        Want::Err(ErrorCode::UnknownCommand, None),
        false,
    );
    v
}

#[test]
fn every_documented_limit_is_enforced_over_tcp_and_udp() {
    // The largest ExecRequest is the one the table sends; it fits the metadata limit.
    let largest = frame!(
        Kind::Exec,
        0,
        &(
            &*s(msg::MAX_COMMAND_LEN),
            &vec![&*s(msg::MAX_ARG_LEN); msg::MAX_ARGS][..]
        ),
        &[]
    );
    assert_eq!(largest.len() - tether_core::wire::HEADER_LEN, msg::MAX_EXEC_META);
    for via in [Via::Tcp, Via::Udp] {
        let stack = stack();
        let mut peer = Peer::new(&stack, via);
        let mut checked = 0;
        for case in cases() {
            // Each case sees the clock at T, so `%s` has 10 digits.
            client(&stack).set_time(T).unwrap();
            let r = peer.ask(&case.frame);
            let label = format!("{via:?}: {}", case.rule);
            assert_eq!(r.header.kind, case.kind, "{label}");
            assert!(r.message().len() <= msg::MAX_ERROR_LEN, "{label}: {}", r.message());
            if via == Via::Udp && !case.udp {
                assert_eq!(r.error(), Some(ErrorCode::InvalidArgument), "{label}: TCP only");
                continue;
            }
            match case.want {
                Want::Ok => assert_eq!(r.error(), None, "{label}: {}", r.message()),
                Want::Err(code, limit) => {
                    assert_eq!(r.error(), Some(code), "{label}: {}", r.message());
                    if let Some(n) = limit {
                        assert!(r.message().contains(&n.to_string()), "{label}: {}", r.message());
                    }
                }
            }
            checked += 1;
        }
        assert!(checked >= 20, "{via:?}: {checked} cases");
    }
}

#[test]
fn a_refused_time_set_leaves_the_clock_alone() {
    let stack = stack();
    let mut c = client(&stack);
    c.set_time(T).unwrap();
    for bad in [u64::MAX, 1 << 62, msg::TIME_MIN_MS - 1, msg::TIME_END_MS] {
        assert_eq!(code(c.set_time(bad)), ErrorCode::InvalidArgument, "{bad}");
    }
    let (year, now) = c.time("%Y").unwrap();
    assert_eq!(year, "2026");
    assert!((T..T + 60_000).contains(&now), "{now}");
}

#[test]
fn the_unsupported_specifier_error_lists_the_implemented_set() {
    let stack = stack();
    let mut c = client(&stack);
    let e = c.time("%Q").unwrap_err();
    let text = e.to_string();
    assert!(text.contains(SPECIFIERS), "{text}");
    assert!(
        text.contains("%z") && text.contains("%e") && text.contains("%F"),
        "{text}"
    );
}

/// docs/PROTOCOL.md states the numbers the device enforces: the limits table (§13), the
/// strftime set (§11.8), and the TimeSet range.
#[test]
fn protocol_md_states_the_enforced_limits() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md")).unwrap();
    let limits = &doc[doc.find("## 13. Limits").unwrap()..doc.find("## 14. Versioning").unwrap()];
    for (name, value) in [
        ("`Hello.client`", msg::MAX_CLIENT_LEN),
        ("`Message.from`", msg::MAX_FROM_LEN),
        ("`TimeGet.format`", msg::MAX_FORMAT_LEN),
        ("formatted time", msg::MAX_TIME_TEXT),
        ("`ErrorInfo.message`", msg::MAX_ERROR_LEN),
        ("`ExecRequest.command`", msg::MAX_COMMAND_LEN),
        ("`ExecRequest.args` entries", msg::MAX_ARGS),
        ("`ExecRequest.args` each", msg::MAX_ARG_LEN),
        ("`ExecRequest` metadata", msg::MAX_EXEC_META),
        ("`MAX_META_LEN`", tether_core::wire::MAX_META_LEN),
        ("datagram", msg::MAX_DATAGRAM),
        ("subscription lease", (msg::SUBSCRIBE_LEASE_MS / 1000) as usize),
        ("subscribers", tether_core::server::MAX_SUBSCRIBERS),
    ] {
        let row = format!("| {name} | {value} ");
        assert!(limits.contains(&row), "§13 has no row `{row}`");
    }
    assert!(doc.contains(&format!("`{SPECIFIERS}`")), "§11.8 lists the strftime set");
    assert!(doc.contains("years 2000 to 9999"));
}

/// docs/SECURITY.md names, for each claim, the test that shows it: every test it names exists.
#[test]
fn security_md_names_only_tests_that_exist() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let doc = std::fs::read_to_string(format!("{root}/docs/SECURITY.md")).unwrap();
    let mut sources = String::new();
    for dir in ["core/tests", "core/src/secure", "tests/tests/e2e", "host-cli/src"] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    // Test names: backticked snake_case words of four or more parts.
    let mut named = 0;
    for quoted in doc.split('`').skip(1).step_by(2) {
        let word = quoted.rsplit(' ').next().unwrap_or(quoted);
        let is_test = word.split('_').count() >= 4
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit());
        if is_test {
            named += 1;
            assert!(
                sources.contains(&format!("fn {word}(")),
                "SECURITY.md names `{word}`, which is no test"
            );
        }
    }
    assert!(named >= 20, "SECURITY.md names only {named} tests");
}
