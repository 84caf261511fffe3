//! Named devices: `~/.config/tether/config.toml` (the platform's config directory; `TETHER_CONFIG`
//! names another file).
//!
//! ```toml
//! default = "bench-board"        # used when neither --to nor -d is given (optional)
//! discover = ["192.0.2.255", "127.0.1.1-16"]  # optional: where `discover` and `@discover` look
//!
//! [devices.bench-board]
//! to = "192.0.2.50:7070"         # HOST[:PORT] or serial:PATH[@BAUD], required
//! udp_port = 7071                # optional: otherwise the port the device advertises
//! timeout = "10s"                # optional
//! key_file = "~/.config/tether/bench.key"   # optional: the device's pre-shared key
//!
//! [groups]                       # optional: `--to @rack` runs a command on each member
//! rack = ["bench-board", "192.0.2.51", "192.0.2.52:7070"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The device used when no `--to` or `-d` is given.
    pub default: Option<String>,
    /// Devices by name.
    #[serde(default)]
    pub devices: BTreeMap<String, Device>,
    /// Where `discover` (and `--to @discover`) looks when told nowhere: addresses, ranges,
    /// broadcast addresses (see `tether_host::discover::Where`).
    pub discover: Option<Vec<String>>,
    /// Named groups of devices for `--to @NAME`: device names of this file or `HOST[:PORT]`s.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
}

/// One named device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// `HOST[:PORT]` or `serial:PATH[@BAUD]` (read with `tether_host::net::Endpoint::parse`).
    pub to: String,
    /// The framed UDP port, when the device's advertised one is not reachable (a port forward).
    pub udp_port: Option<u16>,
    /// How long to wait for the device, e.g. `10s`.
    pub timeout: Option<String>,
    /// The device's pre-shared key file (`host-cli keygen` writes one): every session to it is
    /// then sealed. `~/` is the home directory; a relative path is relative to the config file.
    pub key_file: Option<PathBuf>,
}

/// Where the config file is: `$TETHER_CONFIG`, else the platform's config directory
/// (`$XDG_CONFIG_HOME/tether/config.toml` or `~/.config/tether/config.toml` on Linux).
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TETHER_CONFIG") {
        return Some(PathBuf::from(p));
    }
    directories::ProjectDirs::from("", "", "tether").map(|d| d.config_dir().join("config.toml"))
}

/// A path from the config file as it is meant: `~/…` under the home directory, a relative path
/// beside the config file, an absolute one as it is.
pub fn resolve_path(p: &Path, config: Option<&Path>) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~") {
        if let Some(home) = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()) {
            return home.join(rest);
        }
    }
    match config.and_then(Path::parent) {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// Reads the config file; a missing file is an empty config, an unreadable or invalid one an
/// error that names the file and the problem.
pub fn load(path: Option<&Path>) -> Result<Config, String> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(format!("cannot read the config file {} ({e})", path.display())),
    };
    let config: Config = toml::from_str(&text)
        .map_err(|e| format!("the config file {} is not valid: {}", path.display(), e.message()))?;
    if let Some(d) = &config.default {
        if !config.devices.contains_key(d) {
            return Err(format!(
                "the config file {} sets default = \"{d}\", but has no [devices.{d}]",
                path.display()
            ));
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_refuses_typos() {
        let c: Config = toml::from_str(
            "default = \"a\"\n[devices.a]\nto = \"127.0.0.1:9\"\nudp_port = 5\nkey_file = \"/k\"\n[devices.b]\nto = \"h\"\n",
        )
        .unwrap();
        assert_eq!(c.devices.len(), 2);
        assert_eq!(c.devices["a"].udp_port, Some(5));
        assert!(toml::from_str::<Config>("[devices.a]\nto = \"h\"\nudp = 5\n").is_err());
    }

    #[test]
    fn key_files_are_found_beside_the_config_or_at_home() {
        let cfg = Path::new("/etc/tether/config.toml");
        assert_eq!(
            resolve_path(Path::new("k.key"), Some(cfg)),
            PathBuf::from("/etc/tether/k.key")
        );
        assert_eq!(resolve_path(Path::new("/k.key"), Some(cfg)), PathBuf::from("/k.key"));
        assert_eq!(resolve_path(Path::new("k.key"), None), PathBuf::from("k.key"));
        let home = resolve_path(Path::new("~/t/k.key"), Some(cfg));
        assert!(
            home.ends_with("t/k.key") && !home.starts_with("~"),
            "{}",
            home.display()
        );
    }
}
