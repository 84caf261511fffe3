//! Events for the `log` facade when the `log` feature is on; nothing at all otherwise.

/// Logs through `log` at the given level when the `log` feature is enabled.
macro_rules! event {
    ($level:ident, $($arg:tt)*) => {{
        #[cfg(feature = "log")]
        {
            ::log::$level!($($arg)*);
        }
        #[cfg(not(feature = "log"))]
        {
            let _ = format_args!($($arg)*);
        }
    }};
}
