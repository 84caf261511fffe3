//! Sizes and durations on the command line, shared by `host-cli`, `sim` and `tether-bridge`.

use std::time::Duration;

/// Parses `250ms`, `5s`, `2m`, `1h`, or a bare number of seconds; zero is refused (it would mean
/// "wait forever" to the OS, or fail at once).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 5s or 1m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "" | "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}` (use ms, s, m or h)")),
    };
    if !(secs.is_finite() && (0.001..=86_400.0).contains(&secs)) {
        return Err(format!("`{s}` is out of range: give 1ms to 24h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `1048576`, `512K`, `32M`, `1G` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, shift) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("`{s}` is not a size like 4096, 512K or 32M"))
}

/// A byte count for people: `28 bytes`, `1 byte`, `4.0 KiB`, `58.5 MiB`, `1.20 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return plural(n, "byte");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.2} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A transfer rate for people, in binary units per second: `812.0 KiB/s`, `95.3 MiB/s`.
pub fn rate(bytes_per_s: f64) -> String {
    let b = bytes_per_s.max(0.0);
    if b < 1024.0 {
        return format!("{b:.0} bytes/s");
    }
    format!("{}/s", bytes(b as u64))
}

/// `1 file`, `2 files`, `0 files`.
pub fn plural(n: u64, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32M"), Ok(32 << 20));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn human_units() {
        assert_eq!(bytes(1), "1 byte");
        assert_eq!(bytes(28), "28 bytes");
        assert_eq!(bytes(4096), "4.00 KiB");
        assert_eq!(bytes(268_435_456), "256.0 MiB");
        assert_eq!(bytes(58_720_241), "56.0 MiB");
        assert_eq!(rate(100.0 * 1048576.0), "100.0 MiB/s");
        assert_eq!(rate(10.0), "10 bytes/s");
        assert_eq!(plural(1, "file"), "1 file");
        assert_eq!(plural(0, "file"), "0 files");
    }
}
