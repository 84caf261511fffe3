//! Topic names (docs/BRIDGE.md, "Topics"): `tether/v1/{site}/{device}/…`, and the rules every
//! segment keeps.
//!
//! No segment holds `.` or a space, nor MQTT's `/`, `+`, `#`: NATS's MQTT gateway maps topics to
//! subjects, where `.` separates tokens, and closes the connection of a client that publishes or
//! subscribes to such a topic — which would take every device of the bridge offline for one bad
//! name. Device names and event topics come from devices, so they are made safe
//! ([`segment_of`]); names the user gives (site, client id) are refused instead ([`check_segment`]).

/// The first two segments of every topic: the layout's version is part of the name, so that a
/// later layout can live beside this one on the same broker.
pub const ROOT: &str = "tether/v1";

/// The longest segment accepted or made.
pub const MAX_SEGMENT: usize = 64;

/// The longest reply topic a command may name.
pub const MAX_REPLY_TOPIC: usize = 256;

/// The segment that names the bridges themselves under a site; no device gets it.
pub const BRIDGE_SEGMENT: &str = "bridge";

/// Whether `c` may stand in a segment as it is.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Checks a segment the user gave (`--site`, `--client-id`); the error says what is wrong.
pub fn check_segment(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.len() > MAX_SEGMENT {
        return Err(format!("{what} `{s}` is longer than {MAX_SEGMENT} bytes"));
    }
    if let Some(c) = s.chars().find(|c| !plain(*c)) {
        return Err(format!(
            "{what} `{s}` holds `{c}`: use letters, digits, `-` and `_` only (NATS refuses `.` and spaces in topics; `/`, `+`, `#` are MQTT's own)"
        ));
    }
    Ok(())
}

/// A device's name (or an event topic) as one segment: every other character becomes `_`,
/// and the result is cut to [`MAX_SEGMENT`] bytes. Never empty.
pub fn segment_of(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .take(MAX_SEGMENT)
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// Checks a reply topic named in a command: a whole topic to publish to (no wildcard), whose
/// segments keep the same rules, so that answering it cannot get the bridge disconnected.
pub fn check_reply_topic(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > MAX_REPLY_TOPIC {
        return Err(format!("the reply topic must have 1 to {MAX_REPLY_TOPIC} bytes"));
    }
    for seg in t.split('/') {
        if seg.is_empty() || seg.chars().any(|c| !(plain(c) || c == ':' || c == '=')) {
            return Err(format!(
                "the reply topic `{t}` has a segment `{seg}` that is empty or holds a character other than letters, digits, `-`, `_`, `:`, `=`"
            ));
        }
    }
    Ok(())
}

/// The topics of one site.
#[derive(Debug, Clone)]
pub struct Topics {
    site: String,
}

impl Topics {
    /// The topics of `site` (checked with [`check_segment`] by the caller).
    pub fn new(site: &str) -> Topics {
        Topics { site: site.to_string() }
    }

    /// `tether/v1/{site}/bridge/{id}/state`: a bridge's birth and (as its will) its death.
    pub fn bridge_state(&self, id: &str) -> String {
        format!("{ROOT}/{}/{BRIDGE_SEGMENT}/{id}/state", self.site)
    }

    /// `tether/v1/{site}/{device}/{leaf}` (leaf: `state`, `info`, `message`, `event/{topic}`, …).
    pub fn device(&self, device: &str, leaf: &str) -> String {
        format!("{ROOT}/{}/{device}/{leaf}", self.site)
    }

    /// The filter for a device's commands: `tether/v1/{site}/{device}/cmd/+`.
    pub fn commands(&self, device: &str) -> String {
        self.device(device, "cmd/+")
    }

    /// The device and verb of a command topic of this site.
    pub fn parse_command<'t>(&self, topic: &'t str) -> Option<(&'t str, &'t str)> {
        let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
        let rest = rest.strip_prefix(self.site.as_str())?.strip_prefix('/')?;
        let (device, rest) = rest.split_once('/')?;
        let verb = rest.strip_prefix("cmd/")?;
        (!verb.contains('/') && !verb.is_empty()).then_some((device, verb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_nats_rules() {
        assert!(check_segment("--site", "lab-1_a").is_ok());
        for bad in ["", "a.b", "a b", "a/b", "a+", "#", &"x".repeat(65)] {
            assert!(check_segment("--site", bad).is_err(), "{bad}");
        }
        assert_eq!(segment_of("sim-001"), "sim-001");
        assert_eq!(segment_of("board 7.local/+#"), "board_7_local___");
        assert_eq!(segment_of(""), "_");
        assert_eq!(segment_of(&"é".repeat(100)).len(), MAX_SEGMENT);
    }

    #[test]
    fn reply_topics_are_whole_and_safe() {
        assert!(check_reply_topic("app/replies/42").is_ok());
        for bad in ["", "a/+/b", "a/#", "a.b", "a//b", "a b", "/a"] {
            assert!(check_reply_topic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_topics_parse() {
        let t = Topics::new("lab");
        assert_eq!(t.device("sim-001", "state"), "tether/v1/lab/sim-001/state");
        assert_eq!(t.bridge_state("b1"), "tether/v1/lab/bridge/b1/state");
        assert_eq!(
            t.parse_command("tether/v1/lab/sim-001/cmd/exec"),
            Some(("sim-001", "exec"))
        );
        assert_eq!(t.parse_command("tether/v1/other/sim-001/cmd/exec"), None);
        assert_eq!(t.parse_command("tether/v1/lab/sim-001/state"), None);
        assert_eq!(t.parse_command("tether/v1/lab/sim-001/cmd/a/b"), None);
    }
}
