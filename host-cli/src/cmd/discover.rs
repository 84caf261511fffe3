//! `discover`: find devices by probe and print them, one table or one JSON object per device.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether_host::discover::{self, Found, Where};
use tether_host::units::plural;

use super::Result;
use crate::cli::Args;
use crate::config;
use crate::report::{FailKind, Failure, Reporter};

/// How long `discover` waits for answers unless `--timeout` says.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);
/// Where `discover` looks when told nowhere and the config file names nowhere.
const DEFAULT_SCOPE: [&str; 2] = ["255.255.255.255", "127.0.0.1"];

/// The scope `texts` names, or the config file's `discover` list, or [`DEFAULT_SCOPE`].
pub fn scope(args: &Args, texts: &[String]) -> Result<Vec<Where>> {
    let port = args.udp_port.unwrap_or(discover::DEFAULT_UDP_PORT);
    let texts: Vec<String> = if texts.is_empty() {
        let cfg = config::load(config::path().as_deref()).map_err(Failure::usage)?;
        cfg.discover
            .unwrap_or_else(|| DEFAULT_SCOPE.iter().map(|s| s.to_string()).collect())
    } else {
        texts.to_vec()
    };
    texts
        .iter()
        .map(|t| {
            Where::parse(t, port).map_err(|e| {
                Failure::from(e).hint("WHERE is an address, a range like 127.0.1.1-16, or a broadcast address")
            })
        })
        .collect()
}

/// Whether `discover` browses mDNS beside its probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mdns {
    /// When the scope has a broadcast address: the user looks on the segment, where mDNS
    /// reaches; a scope of addresses only (the simulator's loopback devices) has no segment.
    Auto,
    /// Always (`--mdns`).
    On,
    /// Never (`--no-mdns`).
    Off,
}

impl Mdns {
    /// From `--mdns` and `--no-mdns` (clap refuses both).
    pub fn from_flags(on: bool, off: bool) -> Mdns {
        match (on, off) {
            (true, _) => Mdns::On,
            (_, true) => Mdns::Off,
            _ => Mdns::Auto,
        }
    }

    fn wanted(self, scope: &[Where]) -> bool {
        match self {
            Mdns::On => true,
            Mdns::Off => false,
            Mdns::Auto => scope.iter().any(|w| matches!(w, Where::Broadcast { .. })),
        }
    }
}

/// What `discover` does beside probing its scope.
#[derive(Debug, Clone, Copy)]
pub struct How {
    /// Whether it browses mDNS.
    pub mdns: Mdns,
    /// Whether it asks the USB serial ports the OS lists (`--serial`).
    pub usb_serial: bool,
}

/// Probes `scope` (browses mDNS and asks serial ports as `how` says) within the run's timeout;
/// a note says where it looks (people only).
pub fn find(args: &Args, out: &Reporter, scope: &[Where], how: How) -> Result<Vec<Found>> {
    let wait = args.timeout.unwrap_or(DEFAULT_WAIT);
    let mut ports: Vec<_> = scope
        .iter()
        .filter_map(|w| match w {
            Where::Serial(addr) => Some(addr.clone()),
            _ => None,
        })
        .collect();
    if how.usb_serial {
        for p in discover::usb_serial_ports() {
            if !ports.iter().any(|q| q.path == p.path) {
                ports.push(p);
            }
        }
    }
    let addresses: usize = scope
        .iter()
        .map(|w| match w {
            Where::Each { addresses, .. } => addresses.len(),
            Where::Broadcast { .. } => 1,
            Where::Serial(_) => 0,
        })
        .sum();
    let mdns = how.mdns.wanted(scope);
    out.detail(format_args!(
        "probing {}{}{} for up to {:.1} s",
        plural(addresses as u64, "address"),
        if mdns { ", browsing mDNS" } else { "" },
        if ports.is_empty() {
            String::new()
        } else {
            format!(", asking {}", plural(ports.len() as u64, "serial port"))
        },
        wait.as_secs_f64()
    ));
    // mDNS and the serial ports on threads of their own, beside the probes.
    let browsing = mdns.then(|| std::thread::spawn(move || discover::browse(wait)));
    let asking = (!ports.is_empty()).then(|| std::thread::spawn(move || discover::ask_serial(&ports, wait)));
    let mut found = discover::discover(scope, wait, |_| {})?;
    if let Some(asking) = asking {
        let answered = asking
            .join()
            .map_err(|_| Failure::new(FailKind::Connection, "asking the serial ports failed"))?;
        discover::merge(&mut found, answered);
    }
    if let Some(browsing) = browsing {
        // mDNS is one way of several: when it cannot run here (port 5353 taken without sharing,
        // no multicast), the probes' answers still count, and the warning says what is missing.
        match browsing.join() {
            Ok(Ok(heard)) => discover::merge(&mut found, heard),
            Ok(Err(e)) => out.warn(format_args!("{e}; only the probes' answers are listed")),
            Err(_) => out.warn("the mDNS browser stopped; only the probes' answers are listed"),
        }
    }
    found.sort_by_key(|d| (d.address, d.tcp_port));
    Ok(found)
}

/// A device as `--json` shows it; `serial` and `usb` only for a device found on a serial port
/// (`address` is then its `serial:PATH@BAUD` when the network did not find it too).
pub fn json_of(d: &Found) -> Value {
    let address = if d.found_by.iter().all(|b| *b == "serial") {
        d.to()
    } else {
        d.address.to_string()
    };
    let mut v = json!({"name": d.name, "id": format!("{:012x}", d.id), "address": address,
           "tcp_port": d.tcp_port, "udp_port": d.udp_port, "protocol": d.protocol,
           "firmware": d.firmware, "key_required": d.key_required,
           "addresses": d.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
           "found_by": d.found_by});
    if let Some(port) = &d.serial {
        v["serial"] = json!(port);
        v["usb"] = json!(d.usb);
    }
    v
}

/// `discover [WHERE...]`.
pub fn run(args: &Args, out: &Reporter, texts: &[String], how: How) -> Result<()> {
    let scope = scope(args, texts)?;
    let start = Instant::now();
    let found = find(args, out, &scope, how)?;
    if found.is_empty() {
        return Err(Failure::new(
            FailKind::Connection,
            format!(
                "no device answered within {:.1} s (asked {})",
                args.timeout.unwrap_or(DEFAULT_WAIT).as_secs_f64(),
                scope.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(", ")
            ),
        )
        .hint(
            "say where to look: `host-cli discover 127.0.1.1-N` for a simulator with --devices N (it prints its addresses), a subnet like 192.168.1.0/24 for a LAN; check the UDP port (--udp-port) and --timeout",
        ));
    }
    let seconds = start.elapsed().as_secs_f64();
    if out.json() {
        for d in &found {
            out.item("", json_of(d));
        }
        out.result("", json!({"count": found.len(), "seconds": seconds}));
        return Ok(());
    }
    let name_w = found.iter().map(|d| d.name.len()).max().unwrap_or(4).max(4);
    let to_w = found.iter().map(|d| d.to().len()).max().unwrap_or(7).max(7);
    let mut table = format!(
        "{:<name_w$}  {:<to_w$}  {:<12}  {:<5}  {:<8}  {:<20}  FOUND BY\n",
        "NAME", "ADDRESS", "ID", "PROTO", "KEY", "FIRMWARE"
    );
    for d in &found {
        let key = if d.key_required { "required" } else { "OPEN" };
        table.push_str(&format!(
            "{:<name_w$}  {:<to_w$}  {:012x}  v{:<4}  {key:<8}  {:<20}  {}\n",
            d.name,
            d.to(),
            d.id,
            d.protocol,
            d.firmware,
            d.found_by.join(", ")
        ));
    }
    table.push_str(&format!("{} in {seconds:.2} s", plural(found.len() as u64, "device")));
    out.result(table, json!({}));
    Ok(())
}
