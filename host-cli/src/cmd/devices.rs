//! `devices`: the named devices of the config file.

use serde_json::json;

use super::Result;
use crate::cli::Args;
use crate::config;
use crate::report::{Failure, Reporter};

pub fn devices(args: &Args, out: &Reporter) -> Result<()> {
    let path = config::path();
    let cfg = config::load(path.as_deref()).map_err(Failure::usage)?;
    let file = path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let exists = path.as_ref().is_some_and(|p| p.exists());
    let mut human = String::new();
    if cfg.devices.is_empty() {
        human.push_str(&format!(
            "no named devices ({file} {})\nadd one:\n  [devices.bench-board]\n  to = \"HOST:PORT\"",
            if exists { "names none" } else { "does not exist" }
        ));
    } else {
        human.push_str(&format!("devices in {file}:\n"));
    }
    let mut list = Vec::new();
    for (name, d) in &cfg.devices {
        let default = cfg.default.as_deref() == Some(name.as_str());
        let mut line = format!("  {name:<16} {}", d.to);
        if let Some(p) = d.udp_port {
            line.push_str(&format!("  udp {p}"));
        }
        if let Some(tm) = &d.timeout {
            line.push_str(&format!("  timeout {tm}"));
        }
        if let Some(k) = &d.key_file {
            line.push_str(&format!("  key {}", k.display()));
        }
        if default {
            line.push_str("  (default)");
        }
        human.push_str(&line);
        human.push('\n');
        list.push(
            json!({"name": name, "to": d.to, "udp_port": d.udp_port, "timeout": d.timeout,
                         "key_file": d.key_file.as_ref().map(|k| k.display().to_string()), "default": default}),
        );
    }
    let _ = args;
    out.result(human.trim_end(), json!({"config": file, "devices": list}));
    Ok(())
}
