//! The commands.

mod bench;
mod datagram;
mod transfer;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;
use tether_host::net::{self, AnyClient};
use tether_host::ClientError;

use crate::cli::{Args, Command, TimeAction};
use crate::report::Reporter;

pub type Result<T> = std::result::Result<T, ClientError>;

/// `HOST:PORT` for TCP, with the default port added when missing.
pub fn tcp_addr(args: &Args) -> String {
    with_port(&args.to, 7070)
}

/// `HOST:PORT` for the framed UDP port: the host of `--to` with `--udp-port`.
pub fn udp_addr(args: &Args) -> String {
    with_port(host_of(&args.to), args.udp_port)
}

/// Adds `port` unless `to` has one; accepts `host`, `host:port`, `[v6]`, `[v6]:port`, bare v6.
fn with_port(to: &str, port: u16) -> String {
    if let Some(rest) = to.strip_prefix('[') {
        return if rest.contains("]:") {
            to.to_string()
        } else {
            format!("{to}:{port}")
        };
    }
    match to.matches(':').count() {
        0 => format!("{to}:{port}"),
        1 => to.to_string(),
        _ => format!("[{to}]:{port}"),
    }
}

fn host_of(to: &str) -> &str {
    if to.starts_with('[') {
        return to.find(']').map_or(to, |i| &to[..=i]);
    }
    match to.split_once(':') {
        Some((h, p)) if !p.contains(':') => h,
        _ => to,
    }
}

/// A session to `--to`: TCP, or a serial line for `serial:PATH[@BAUD]`.
pub fn open(args: &Args, out: &Reporter) -> Result<AnyClient> {
    let addr = if net::is_serial(&args.to) {
        args.to.clone()
    } else {
        tcp_addr(args)
    };
    out.detail(format_args!("connecting to {addr}"));
    net::open(&args.to, &addr, args.timeout)
}

pub fn run(args: &Args, out: &Reporter) -> Result<ExitCode> {
    match &args.command {
        Command::Send { message, upper } => {
            let mut c = open(args, out)?;
            let reply = c.echo(message.as_bytes(), *upper)?;
            let text = String::from_utf8_lossy(&reply);
            out.result(&text, json!({"ok": true, "reply": text}));
        }
        Command::Ping { count } => {
            let mut c = open(args, out)?;
            let mut rtts = Vec::new();
            for i in 0..*count {
                let t = Instant::now();
                c.echo(&[], false)?;
                let us = t.elapsed().as_secs_f64() * 1e6;
                rtts.push(us);
                out.result(
                    format_args!("reply {}: time={us:.0} µs", i + 1),
                    json!({"seq": i + 1, "rtt_us": us}),
                );
            }
            if !rtts.is_empty() && !out.json() {
                let min = rtts.iter().cloned().fold(f64::MAX, f64::min);
                let max = rtts.iter().cloned().fold(0.0, f64::max);
                let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
                out.note(format_args!(
                    "{count} round trips: min {min:.0} µs, avg {avg:.0} µs, max {max:.0} µs"
                ));
            }
        }
        Command::Info => {
            let mut c = open(args, out)?;
            let i = c.hello(concat!("host-cli ", env!("CARGO_PKG_VERSION")))?;
            let human = format!(
                "device     {}\nprotocol   v{}\nmax frame  {} bytes (chunks of {})\nsessions   {}\nstorage    {} of {} bytes used\nuptime     {:.1} s\ncommands   {}",
                i.device,
                i.version,
                i.max_frame,
                i.max_chunk,
                i.sessions,
                i.storage_used,
                i.storage_capacity,
                i.uptime_ms as f64 / 1000.0,
                i.commands.join(" ")
            );
            out.result(
                human,
                json!({"ok": true, "device": i.device, "version": i.version, "max_frame": i.max_frame,
                       "max_chunk": i.max_chunk, "sessions": i.sessions, "storage_capacity": i.storage_capacity,
                       "storage_used": i.storage_used, "uptime_ms": i.uptime_ms, "commands": i.commands}),
            );
        }
        Command::Exec { command, args: cargs } => {
            let mut c = open(args, out)?;
            let argv: Vec<&str> = cargs.iter().map(String::as_str).collect();
            let json_mode = out.json();
            let mut stdout = std::io::stdout().lock();
            let status = c.exec(command, &argv, |chunk| {
                if json_mode {
                    // The final frame usually carries only the status: no empty output objects.
                    if !chunk.is_empty() {
                        let _ = writeln!(stdout, "{}", json!({"output": String::from_utf8_lossy(chunk)}));
                    }
                } else {
                    let _ = stdout.write_all(chunk);
                    let _ = stdout.flush();
                }
            })?;
            drop(stdout);
            if json_mode {
                println!("{}", json!({"ok": status == 0, "status": status}));
            }
            return Ok(ExitCode::from(status.clamp(0, 255) as u8));
        }
        Command::Put {
            local,
            remote,
            overwrite,
            resume: _,
            retries,
        } => {
            transfer::put(args, out, local, remote.as_deref(), *overwrite, *retries)?;
        }
        Command::Get {
            remote,
            local,
            resume,
            retries,
        } => {
            transfer::get(args, out, remote, local.as_deref(), *resume, *retries)?;
        }
        Command::Ls => {
            let mut c = open(args, out)?;
            let files = c.list()?;
            let mut human = String::new();
            for f in &files {
                human.push_str(&format!("{:>12}  {}\n", f.size, f.name));
            }
            human.push_str(&format!("{} files", files.len()));
            let list: Vec<_> = files.iter().map(|f| json!({"name": f.name, "size": f.size})).collect();
            out.result(human, json!({"ok": true, "files": list}));
        }
        Command::Stat { name } => {
            let mut c = open(args, out)?;
            let (size, sha) = c.stat(name)?;
            let hex = transfer::hex(&sha);
            out.result(
                format_args!("{name}  {size} bytes  sha256 {hex}"),
                json!({"ok": true, "name": name, "size": size, "sha256": hex}),
            );
        }
        Command::Rm { name } => {
            let mut c = open(args, out)?;
            c.remove(name)?;
            out.result(format_args!("removed {name}"), json!({"ok": true, "removed": name}));
        }
        Command::Time {
            action: Some(TimeAction::Set),
            ..
        } => datagram::time_set(args, out)?,
        Command::Time { action: None, format } => datagram::time_get(args, out, format.as_deref().unwrap_or(""))?,
        Command::Chat { message, from } => datagram::chat(args, out, message.as_deref(), from)?,
        Command::Listen { count, duration } => datagram::listen(args, out, *count, *duration)?,
        Command::Bench { rounds, size, repeat } => bench::run(args, out, *rounds, *size, *repeat)?,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(*shell, &mut Args::command(), "host-cli", &mut std::io::stdout());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(with_port("127.0.0.1", 7070), "127.0.0.1:7070");
        assert_eq!(with_port("127.0.0.1:9", 7070), "127.0.0.1:9");
        assert_eq!(with_port("localhost", 7070), "localhost:7070");
        assert_eq!(with_port("::1", 7070), "[::1]:7070");
        assert_eq!(with_port("[::1]", 7070), "[::1]:7070");
        assert_eq!(with_port("[::1]:5", 7070), "[::1]:5");
        assert_eq!(with_port(host_of("127.0.0.1:9"), 7071), "127.0.0.1:7071");
        assert_eq!(with_port(host_of("[::1]:9"), 7071), "[::1]:7071");
        assert_eq!(with_port(host_of("::1"), 7071), "[::1]:7071");
    }
}
