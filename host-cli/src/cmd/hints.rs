//! What to try: the hint every failure gets, chosen by the failure's kind and, for the client's
//! own errors, by the error's variant (never by its words).

use std::time::Duration;

use tether_core::wire::ErrorCode;
use tether_host::net::{self, Endpoint};
use tether_host::{Cause, ClientError, Over};

use super::target::{shell_quote, Target, CLIENT};
use super::Result;
use crate::report::{FailKind, Failure};

/// What to try when the device cannot be reached.
pub(super) fn connection_hint(t: &Target, f: &Failure) -> String {
    let a = match &t.addr {
        Endpoint::Tcp(a) => a,
        Endpoint::Serial(s) => {
            return if f.message.contains("No such file") {
                format!(
                    "there is no {}: `ls /dev/ttyUSB* /dev/ttyACM*` lists USB serial ports, `host-cli discover --serial` asks each one; `sim --serial` prints its pseudo-terminal",
                    s.path
                )
            } else {
                format!(
                    "check that {} is the device's serial port, that nothing else holds it open, and that the device runs at {} baud (`sim --serial` prints its pseudo-terminal)",
                    s.path, s.baud
                )
            }
        }
    };
    let (over, cause) = match &f.source {
        Some(ClientError::Connection { over, cause, .. }) => (Some(*over), Some(*cause)),
        _ => (None, None),
    };
    if over == Some(Over::Udp) {
        // The UDP port is the device's advertised one, or --udp-port's: never the TCP port.
        let up = if a.is_local() {
            "is `sim` running? "
        } else {
            "is the device on? "
        };
        return match t.udp_port {
            Some(p) => format!(
                "{up}Else --udp-port {p} (or TETHER_UDP_PORT, or udp_port in the config) may be wrong: without it host-cli uses the UDP port the device advertises (`{}` checks the device over TCP and shows it)",
                t.command("info")
            ),
            None => format!(
                "{up}The device advertises that UDP port in its hello; if it sits behind a port forward, give the forwarded one with --udp-port (`{}` shows the advertised one)",
                t.command("info")
            ),
        };
    }
    let refused = cause == Some(Cause::Refused);
    if refused {
        match tcp_port_behind_udp(a, t.timeout) {
            Some(Some(tcp)) => {
                return format!(
                    "{a} is the device's framed UDP port: --to takes its framed TCP port, which it says is {tcp}: --to {}:{tcp}",
                    a.host
                )
            }
            Some(None) => {
                return format!(
                    "{a} is the device's framed UDP port: --to takes its framed TCP port (usually 7070, e.g. --to {}:7070)",
                    a.host
                )
            }
            None => {}
        }
    }
    if refused && a.is_local() {
        format!(
            "is `sim` running on port {}? Start it with `sim --tcp-port {}` (or `cargo run --release --bin sim`)",
            a.port, a.port
        )
    } else if refused {
        format!(
            "is the device on and serving port {} at {}, and not busy with all its sessions? Check --to",
            a.port, a.host
        )
    } else {
        format!("check that {a} is the device's address and that it is reachable")
    }
}

/// Whether a Tether device answers a hello on UDP at `a` (whose TCP port refused): then `--to`
/// names its UDP port by mistake.
/// Whether `a` is a device's framed UDP port (`None`: no), and then the TCP port the device says
/// it serves (its `Discover` answer; `Some(None)` when only a hello answered).
fn tcp_port_behind_udp(a: &tether_host::net::Address, timeout: Duration) -> Option<Option<u16>> {
    use std::net::{SocketAddr, ToSocketAddrs};
    use tether_core::msg;
    use tether_core::wire::Kind;
    use tether_host::discover::{discover, Where};
    let wait = timeout.min(Duration::from_millis(300));
    let v4 = (a.host.as_str(), a.port).to_socket_addrs().ok()?.find_map(|s| match s {
        SocketAddr::V4(v4) => Some(v4),
        SocketAddr::V6(_) => None,
    });
    if let Some(v4) = v4 {
        let scope = [Where::Each {
            addresses: vec![*v4.ip()],
            port: a.port,
        }];
        if let Some(d) = discover(&scope, wait, |_| {}).ok().and_then(|f| f.into_iter().next()) {
            return Some((d.tcp_port != 0).then_some(d.tcp_port));
        }
    }
    let mut udp = net::UdpClient::new(&a.to_string(), wait).ok()?;
    udp.call(Kind::Hello, &msg::Hello { client: CLIENT }, &[], 1)
        .ok()
        .map(|_| None)
}

/// The failure of a command that needs the key, on a device that requires it, without one.
pub fn key_required(t: &Target) -> Failure {
    Failure::new(
        FailKind::Auth,
        format!(
            "{} requires its key: pass --key-file FILE, set TETHER_KEY_FILE, or key_file in the config",
            t.device_name()
        ),
    )
    .hint(format!(
        "the key is the file the device was given (`sim --key-file FILE`); `{}` works without it",
        t.command("info")
    ))
}

pub(super) fn no_key_hint(t: &Target) -> String {
    let file = t.key_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    format!(
        "talk to it without --key-file (and TETHER_KEY_FILE, and key_file in the config), or give it the key: `sim --key-file {}`",
        shell_quote(&file)
    )
}

/// A failed handshake, with a hint that says which of the two likely causes it is: asks the
/// device (without the key: a hello is all it serves then) whether it has a key at all.
pub(super) fn auth_failed(t: &Target, e: ClientError) -> Failure {
    let f = Failure::from(e);
    let probe = net::open(&t.addr, t.timeout, None).and_then(|mut c| c.hello(CLIENT));
    let file = t.key_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    match probe {
        Ok(i) if !i.key_required => f.hint(no_key_hint(t)),
        Ok(i) => f.hint(format!(
            "{} requires a different key: check that {file} is the key file it was given (`sim --key-file FILE`)",
            i.device
        )),
        Err(_) => f.hint(auth_hint(t)),
    }
}

/// What to try after an authentication failure.
pub(super) fn auth_hint(t: &Target) -> String {
    format!(
        "the key file must be the one the device was given (`sim --key-file FILE`); `{}` works without a key and says whether the device requires one",
        t.command("info")
    )
}

/// Adds the hint every failure of its kind gets, where the command did not give a better one.
pub(crate) fn finish(t: &Target, f: Failure) -> Failure {
    match f.kind {
        FailKind::Connection => {
            let hint = connection_hint(t, &f);
            f.or_hint(hint)
        }
        FailKind::Garbled => f.or_hint(format!(
            "every frame arrived damaged: check that the device runs at {} baud (both ends must agree), and the cable",
            t.addr.serial().map_or(0, |s| s.baud)
        )),
        FailKind::Link if t.addr.is_serial() => f.or_hint(format!(
            "{} damages more than a transfer can recover: check the cable, and that the device runs at {} baud (a lower rate is often cleaner); run the same command to resume",
            t.addr,
            t.addr.serial().map_or(0, |s| s.baud)
        )),
        FailKind::Link => f.or_hint(
            "something between this PC and the device changes bytes that TCP's checksum let through (a faulty network card, cable or middlebox): check the path; run the same command to resume",
        ),
        FailKind::NotTether if t.addr.is_serial() => f.or_hint(format!(
            "something answers on {}, but not as a Tether device: check the port and the baud rate in --to",
            t.addr
        )),
        FailKind::NotTether => f.or_hint(format!(
            "{} answers, but not as a Tether device: check the port in --to (the device's framed TCP port is usually 7070)",
            t.addr
        )),
        FailKind::Auth => {
            let hint = auth_hint(t);
            f.or_hint(hint)
        }
        // The device's own refusal for want of the key (a request it serves only to key holders).
        FailKind::Device if f.code() == Some(ErrorCode::Unauthorized) => {
            let hint = auth_hint(t);
            Failure {
                kind: FailKind::Auth,
                message: format!("{} refused: it requires its key for this ({})", t.device_name(), f.message),
                ..f
            }
            .or_hint(hint)
        }
        FailKind::Protocol => f.or_hint("try again; if it persists, the device and host-cli may disagree on the protocol (compare `host-cli --version` with `host-cli info`)"),
        _ => f,
    }
}

/// Checks a device file name before it goes out, so that the error is about the name.
pub fn check_name(name: &str) -> Result<()> {
    tether_core::service::files::check_name(name).map_err(|_| {
        Failure::usage(format!(
            "`{name}` is not a valid device file name: names are 1 to 64 of A-Z a-z 0-9 . _ - and do not start with `.`"
        ))
        .hint("`host-cli ls` lists the device's files; `host-cli put LOCAL NAME` uploads under another name")
    })
}

/// A device refusal about file `name`, in words for that file.
pub fn file_refused(t: &Target, f: Failure, name: &str) -> Failure {
    match f.code() {
        Some(ErrorCode::NotFound) => Failure {
            message: format!("the device {} has no file `{name}`", t.addr),
            ..f
        }
        .hint(format!("`{}` lists its files", t.command("ls"))),
        _ => f,
    }
}

/// Every failure says what to try (docs/CLI.md promises it): where the command and its kind gave
/// no better hint, a general one.
pub fn with_a_hint(f: Failure) -> Failure {
    let hint = match f.kind {
        FailKind::Usage => "`host-cli --help` shows the usage",
        FailKind::Local => "check the path, and that you may read or write it",
        FailKind::Device => "the device's message says why it refused",
        FailKind::Interrupted => "run the same command again to go on",
        _ => "check --to (or -d) and that the device is up; `host-cli info` says how it stands",
    };
    f.or_hint(hint)
}

#[cfg(test)]
mod tests {
    use super::super::target::tests::target;
    use super::*;

    #[test]
    fn a_refused_remote_board_is_not_told_to_start_the_simulator() {
        let refused = Failure::from(ClientError::connection(Over::Stream, Cause::Refused, "refused"));
        let remote = connection_hint(&target("192.0.2.7:7070"), &refused);
        assert!(!remote.contains("sim"), "{remote}");
        assert!(remote.contains("192.0.2.7") && remote.contains("7070"), "{remote}");
        let local = connection_hint(&target("127.0.0.1:7070"), &refused);
        assert!(local.contains("sim"), "{local}");
    }

    #[test]
    fn authentication_failures_get_their_own_hint_and_exit_code() {
        let t = target("127.0.0.1:7070");
        // The handshake's failure: an auth hint, never the connection hint.
        let f = finish(
            &t,
            Failure::from(ClientError::Auth(
                "127.0.0.1:7070 closed the connection during the handshake".into(),
            )),
        );
        assert_eq!((f.kind, f.exit_code()), (FailKind::Auth, 6));
        let hint = f.hint.unwrap();
        assert!(hint.contains("key file") && !hint.contains("reachable"), "{hint}");
        // The device's own `Unauthorized`, should it ever reach a command: exit 6, not 1.
        let refused = Failure::from(ClientError::Device {
            code: ErrorCode::Unauthorized as u16,
            message: "unauthorized".into(),
        });
        let f = finish(&t, refused);
        assert_eq!((f.kind, f.exit_code()), (FailKind::Auth, 6));
        assert!(f.message.contains("requires its key"), "{}", f.message);
        assert!(f.hint.is_some());
    }
}
