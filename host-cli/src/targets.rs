//! What `--to` names: one device, or several (`A,B,C`, `@GROUP` of the config file,
//! `@discover[:WHERE]`), and the list of devices those stand for. `host-cli`'s fan-out
//! (docs/CLI.md, "Many devices") and `tether-bridge` (docs/BRIDGE.md) read `--to` with this.

use crate::config::Config;
use crate::discover::Found;
use crate::net::{Address, Endpoint};

/// What `--to` names: one device, or several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    /// One device: `HOST[:PORT]` or `serial:PATH[@BAUD]`.
    One(Endpoint),
    /// Several: a comma list of items, or one `@` item.
    Many(Vec<Item>),
}

/// One item of a list in `--to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A device's address.
    Addr(Endpoint),
    /// `@NAME`: a group of the config file.
    Group(String),
    /// `@discover` or `@discover:WHERE`: the devices that answer a discovery probe.
    Discover(Option<String>),
}

impl To {
    /// Parses `--to`: `HOST[:PORT]`, `serial:PATH[@BAUD]`, or a list `A,B,…` of those and of
    /// `@GROUP`, `@discover`, `@discover:WHERE`.
    pub fn parse(text: &str) -> std::result::Result<To, String> {
        let text = text.trim();
        if !text.contains(',') && !text.starts_with('@') {
            return Endpoint::parse(text).map(To::One);
        }
        let mut items = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            items.push(match part.strip_prefix('@') {
                Some("discover") => Item::Discover(None),
                Some(rest) => match rest.strip_prefix("discover:") {
                    Some(scope) => Item::Discover(Some(scope.to_string())),
                    None if rest.is_empty() => return Err("`@` needs a group name, e.g. @rack".into()),
                    None => Item::Group(rest.to_string()),
                },
                None => Item::Addr(Endpoint::parse(part)?),
            });
        }
        if items.is_empty() {
            return Err(format!("`{text}` names no device"));
        }
        Ok(To::Many(items))
    }

    /// The one device, when `--to` names one.
    pub fn single(&self) -> Option<&Endpoint> {
        match self {
            To::One(e) => Some(e),
            To::Many(_) => None,
        }
    }

    /// The items: one address, or the list.
    pub fn items(&self) -> Vec<Item> {
        match self {
            To::One(e) => vec![Item::Addr(e.clone())],
            To::Many(items) => items.clone(),
        }
    }
}

/// One device of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// How output names it: the entry as written, the discovered device's name, or that with
    /// `@ADDRESS` when two devices share it.
    pub label: String,
    /// Its address, unless it is a named device of the config file.
    pub to: Option<Endpoint>,
    /// Its name in the config file (whose `to`, `key_file`, … then apply).
    pub name: Option<String>,
    /// The device's own name, when discovery found it.
    pub found: Option<String>,
}

impl Member {
    /// What makes two members the same device: the address, or the config file's name.
    fn key(&self) -> String {
        match (&self.to, &self.name) {
            (Some(e), _) => e.to_string(),
            (None, Some(name)) => format!("-d {name}"),
            (None, None) => String::new(),
        }
    }
}

/// Why a list names no devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError<E> {
    /// The config file could not be read (the message says why).
    Config(String),
    /// `@NAME` names no group of the config file, whose groups are `known`.
    NoGroup {
        /// The name asked for.
        name: String,
        /// The groups there are.
        known: Vec<String>,
    },
    /// An entry of a group is neither a named device nor an address.
    BadEntry {
        /// The group.
        group: String,
        /// The entry.
        entry: String,
        /// Why it is not an address.
        why: String,
    },
    /// `@discover` found nothing.
    NoneDiscovered,
    /// Discovery failed.
    Discover(E),
}

/// The devices `items` name, each once, in order. `load` reads the config file (called once,
/// and only for a group); `discover` probes WHERE (`None`: the default scope) and returns what
/// answered.
pub fn expand<E>(
    items: &[Item],
    mut load: impl FnMut() -> Result<Config, String>,
    mut discover: impl FnMut(Option<&str>) -> Result<Vec<Found>, E>,
) -> Result<Vec<Member>, ExpandError<E>> {
    let mut list: Vec<Member> = Vec::new();
    let mut cfg: Option<Config> = None;
    for item in items {
        match item {
            Item::Addr(e) => list.push(Member {
                label: e.to_string(),
                to: Some(e.clone()),
                name: None,
                found: None,
            }),
            Item::Group(group) => {
                let cfg = match &mut cfg {
                    Some(c) => c,
                    None => cfg.insert(load().map_err(ExpandError::Config)?),
                };
                let Some(entries) = cfg.groups.get(group) else {
                    return Err(ExpandError::NoGroup {
                        name: group.clone(),
                        known: cfg.groups.keys().cloned().collect(),
                    });
                };
                for entry in entries {
                    let (to, name) = if cfg.devices.contains_key(entry) {
                        (None, Some(entry.clone()))
                    } else {
                        let e = Endpoint::parse(entry).map_err(|why| ExpandError::BadEntry {
                            group: group.clone(),
                            entry: entry.clone(),
                            why,
                        })?;
                        (Some(e), None)
                    };
                    list.push(Member {
                        label: entry.clone(),
                        to,
                        name,
                        found: None,
                    });
                }
            }
            Item::Discover(scope) => {
                let found = discover(scope.as_deref()).map_err(ExpandError::Discover)?;
                if found.is_empty() {
                    return Err(ExpandError::NoneDiscovered);
                }
                for d in found {
                    // A device found only on a serial port (`@discover:serial:PATH`) is reached
                    // there; every other one on its address.
                    let to = match (&d.serial, d.found_by.iter().all(|b| *b == "serial")) {
                        (Some(port), true) => Endpoint::parse(port).map_err(|why| ExpandError::BadEntry {
                            group: "@discover".into(),
                            entry: port.clone(),
                            why,
                        })?,
                        _ => Endpoint::Tcp(Address {
                            host: d.address.to_string(),
                            port: d.tcp_port,
                        }),
                    };
                    list.push(Member {
                        label: d.name.clone(),
                        to: Some(to),
                        name: None,
                        found: Some(d.name),
                    });
                }
            }
        }
    }
    // Each device once; labels that two devices share get their address.
    let mut seen = std::collections::HashSet::new();
    list.retain(|m| seen.insert(m.key()));
    let labels: Vec<String> = list.iter().map(|m| m.label.clone()).collect();
    for m in list.iter_mut() {
        if labels.iter().filter(|l| **l == m.label).count() > 1 {
            if let Some(to) = &m.to {
                m.label = format!("{}@{to}", m.label);
            }
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_names_one_device_or_a_list() {
        let one = To::parse("127.0.1.7").unwrap();
        assert_eq!(one.single().map(ToString::to_string), Some("127.0.1.7:7070".into()));
        let list = To::parse("127.0.1.1, @rack,@discover,@discover:127.0.1.1-16:9,serial:/dev/ttyUSB0").unwrap();
        let To::Many(items) = list else { panic!("a list") };
        assert_eq!(items.len(), 5);
        assert_eq!(items[1], Item::Group("rack".into()));
        assert_eq!(items[2], Item::Discover(None));
        assert_eq!(items[3], Item::Discover(Some("127.0.1.1-16:9".into())));
        assert!(matches!(items[4], Item::Addr(Endpoint::Serial(_))));
        // One group alone is a list too.
        assert!(matches!(To::parse("@rack"), Ok(To::Many(_))));
        for bad in ["@", ",", "a:notaport,b"] {
            assert!(To::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_expand_to_named_devices_and_addresses_each_once() {
        let cfg: Config = toml::from_str(
            "[devices.a]\nto = \"127.0.0.1:9\"\n[groups]\nrack = [\"a\", \"127.0.0.2\", \"127.0.0.2:7070\"]\n",
        )
        .unwrap();
        let To::Many(items) = To::parse("@rack,127.0.0.3").unwrap() else {
            panic!("a list")
        };
        let none = |_: Option<&str>| Ok::<_, ()>(Vec::new());
        let list = expand(&items, || Ok(cfg.clone()), none).unwrap();
        let labels: Vec<&str> = list.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, ["a", "127.0.0.2", "127.0.0.3:7070"]);
        assert_eq!(list[0].name.as_deref(), Some("a"));
        let To::Many(items) = To::parse("@nope").unwrap() else {
            panic!("a list")
        };
        let err = expand(&items, || Ok(cfg.clone()), none).unwrap_err();
        assert_eq!(
            err,
            ExpandError::NoGroup {
                name: "nope".into(),
                known: vec!["rack".into()]
            }
        );
        let To::Many(items) = To::parse("@discover").unwrap() else {
            panic!("a list")
        };
        assert_eq!(
            expand(&items, || Ok(cfg.clone()), none).unwrap_err(),
            ExpandError::NoneDiscovered
        );
    }
}
