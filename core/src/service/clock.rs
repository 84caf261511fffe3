//! The device's wall clock and a `no_std` strftime.

use core::fmt::Write;

/// The format used when a request's format is empty.
pub const DEFAULT_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The conversions [`strftime`] implements, as one line; a macro so that error texts can
/// `concat!` it.
macro_rules! specifiers {
    () => {
        "%Y %y %m %d %e %H %I %M %S %p %T %X %x %F %j %a %A %b %B %s %z %%"
    };
}
pub(crate) use specifiers;

/// The conversions [`strftime`] implements, space-separated: what the device's error message
/// and docs/PROTOCOL.md §11.8 list (a test checks both, and that this is exactly the set).
pub const SPECIFIERS: &str = specifiers!();

/// A wall clock kept as an offset from the monotonic clock, so setting it never disturbs
/// timeouts. Until a host sets it, it reads 1970-01-01T00:00:00Z plus the uptime, and says so
/// ([`Clock::synced`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset_ms: i64,
    synced: bool,
}

impl Clock {
    /// Sets the wall clock to `unix_ms` at monotonic time `mono_ms`.
    pub fn set(&mut self, unix_ms: u64, mono_ms: u64) {
        self.offset_ms = (unix_ms as i64).wrapping_sub(mono_ms as i64);
        self.synced = true;
    }

    /// Whether the clock was ever set.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Wall-clock milliseconds since the Unix epoch at monotonic time `mono_ms`.
    pub fn unix_ms(&self, mono_ms: u64) -> u64 {
        (mono_ms as i64).saturating_add(self.offset_ms).max(0) as u64
    }
}

/// A format string used a specifier this implementation does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// `%` followed by this character is not supported (or `%` ended the string, as `'\0'`).
    Unsupported(char),
    /// The output sink is full.
    Full,
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Full year, e.g. 2026.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day of month 1..=31.
    pub day: u32,
    /// Hour 0..=23.
    pub hour: u32,
    /// Minute 0..=59.
    pub minute: u32,
    /// Second 0..=59.
    pub second: u32,
    /// Day of week, 0 = Sunday.
    pub weekday: u32,
    /// Day of year, 1..=366.
    pub yday: u32,
}

impl Civil {
    /// Breaks down seconds since the Unix epoch (proleptic Gregorian calendar, UTC).
    pub fn from_unix(secs: u64) -> Civil {
        let days = (secs / 86_400) as i64;
        let rem = (secs % 86_400) as u32;
        // Howard Hinnant's days-to-civil, with eras of 400 years starting on 0000-03-01.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yday = BEFORE[month as usize - 1] + day + u32::from(leap && month > 2);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            weekday: (days + 4).rem_euclid(7) as u32,
            yday,
        }
    }
}

/// Formats `unix_ms` with a strftime-style `format` into `out`.
///
/// Supported: [`SPECIFIERS`]. `%X` and `%T` are `%H:%M:%S`, `%x` is `%m/%d/%y` as in the C
/// locale, `%F` is `%Y-%m-%d`, `%e` the day padded with a space, `%I` the 12-hour hour, `%s` the
/// seconds since the epoch, and `%z` the offset from UTC, always `+0000` (the clock is UTC).
pub fn strftime<W: Write>(out: &mut W, format: &str, unix_ms: u64) -> Result<(), FormatError> {
    let format = if format.is_empty() { DEFAULT_FORMAT } else { format };
    let t = Civil::from_unix(unix_ms / 1000);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.write_char(c).map_err(|_| FormatError::Full)?;
            continue;
        }
        let spec = chars.next().ok_or(FormatError::Unsupported('\0'))?;
        let r = match spec {
            'Y' => write!(out, "{}", t.year),
            'y' => write!(out, "{:02}", t.year.rem_euclid(100)),
            'm' => write!(out, "{:02}", t.month),
            'd' => write!(out, "{:02}", t.day),
            'e' => write!(out, "{:2}", t.day),
            'H' => write!(out, "{:02}", t.hour),
            'I' => write!(out, "{:02}", (t.hour + 11) % 12 + 1),
            'M' => write!(out, "{:02}", t.minute),
            'S' => write!(out, "{:02}", t.second),
            'X' | 'T' => write!(out, "{:02}:{:02}:{:02}", t.hour, t.minute, t.second),
            'x' => write!(out, "{:02}/{:02}/{:02}", t.month, t.day, t.year.rem_euclid(100)),
            'F' => write!(out, "{}-{:02}-{:02}", t.year, t.month, t.day),
            'j' => write!(out, "{:03}", t.yday),
            'a' => out.write_str(&DAYS[t.weekday as usize][..3]),
            'A' => out.write_str(DAYS[t.weekday as usize]),
            'b' => out.write_str(&MONTHS[t.month as usize - 1][..3]),
            'B' => out.write_str(MONTHS[t.month as usize - 1]),
            'p' => out.write_str(if t.hour < 12 { "AM" } else { "PM" }),
            's' => write!(out, "{}", unix_ms / 1000),
            'z' => out.write_str("+0000"),
            '%' => out.write_char('%'),
            other => return Err(FormatError::Unsupported(other)),
        };
        r.map_err(|_| FormatError::Full)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn fmt(format: &str, unix_ms: u64) -> Result<String, FormatError> {
        let mut s = String::new();
        strftime(&mut s, format, unix_ms).map(|_| s)
    }

    #[test]
    fn known_instants() {
        // 2026-11-22T00:15:16Z is a Sunday, day 326.
        let t = 1_795_306_516_000;
        assert_eq!(fmt("", t).unwrap(), "2026-11-22 00:15:16");
        assert_eq!(
            fmt("%a %A %b %B %j %p %I %y", t).unwrap(),
            "Sun Sunday Nov November 326 AM 12 26"
        );
        assert_eq!(fmt("%x %X %%", t).unwrap(), "11/22/26 00:15:16 %");
        assert_eq!(fmt("%Y-%m-%d", 0).unwrap(), "1970-01-01");
        assert_eq!(fmt("%A", 0).unwrap(), "Thursday");
        // A leap day and the last day of a leap year.
        assert_eq!(fmt("%F %j", 951_782_400_000).unwrap(), "2000-02-29 060");
        assert_eq!(
            fmt("%F %j %H:%M:%S %p", 1_609_459_199_000).unwrap(),
            "2020-12-31 366 23:59:59 PM"
        );
    }

    #[test]
    fn the_documented_set_is_exactly_the_implemented_one() {
        let listed: std::vec::Vec<char> = SPECIFIERS
            .split(' ')
            .map(|s| {
                assert!(s.len() == 2 && s.starts_with('%'), "{s}");
                s.chars().nth(1).unwrap()
            })
            .collect();
        for c in (b' '..=b'~').map(char::from) {
            let r = fmt(&std::format!("%{c}"), 1_795_306_516_000);
            assert_eq!(r.is_ok(), listed.contains(&c), "%{c}: {r:?}");
        }
        assert_eq!(fmt("%z %e|%s", 1_795_306_516_000).unwrap(), "+0000 22|1795306516");
        assert_eq!(fmt("%e", 0).unwrap(), " 1");
    }

    #[test]
    fn bad_specifiers() {
        assert_eq!(fmt("%Q", 0), Err(FormatError::Unsupported('Q')));
        assert_eq!(fmt("100%", 0), Err(FormatError::Unsupported('\0')));
    }

    #[test]
    fn clock_offsets_monotonic_time() {
        let mut c = Clock::default();
        assert_eq!(c.unix_ms(5_000), 5_000);
        c.set(1_000_000, 5_000);
        assert_eq!(c.unix_ms(6_000), 1_001_000);
    }
}
