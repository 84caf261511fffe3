//! Error codes carried by error responses.

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:expr, $text:expr;)+) => {
        /// Why a request failed. Sent as a `u16` in [`crate::msg::ErrorInfo::code`]; the numbers
        /// are part of the protocol and never reused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ErrorCode {
            $($(#[$doc])* $name = $value,)+
        }

        impl ErrorCode {
            /// The code for a number, `None` for a number this version does not know.
            pub fn from_u16(v: u16) -> Option<ErrorCode> {
                match v {
                    $($value => Some(ErrorCode::$name),)+
                    _ => None,
                }
            }

            /// A short English description.
            pub fn text(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)+
                }
            }

            /// Every code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),+];
        }
    };
}

codes! {
    /// The frame or its metadata could not be parsed.
    Malformed = 1, "malformed frame or metadata";
    /// The payload CRC did not match.
    BadCrc = 2, "payload CRC mismatch";
    /// The frame exceeds the receiver's maximum frame size.
    TooLarge = 3, "frame too large";
    /// The protocol version is not supported.
    UnsupportedVersion = 4, "unsupported protocol version";
    /// The kind is not a service this device offers.
    UnknownKind = 5, "unknown frame kind";
    /// No such file.
    NotFound = 6, "not found";
    /// The file exists and overwrite was not asked for.
    AlreadyExists = 7, "already exists";
    /// Not enough storage (or upload slots) for the request.
    NoSpace = 8, "no space left on device";
    /// Size or SHA-256 of an upload do not match what was announced.
    DigestMismatch = 9, "digest mismatch";
    /// An offset outside the file or not where the transfer stands.
    BadOffset = 10, "bad offset";
    /// A file name outside the safe charset or length.
    InvalidName = 11, "invalid name";
    /// The resource is in use (e.g. the same name is being uploaded by another session).
    Busy = 12, "busy";
    /// No command of that name is registered.
    UnknownCommand = 13, "unknown command";
    /// A data, commit or abort arrived with no upload in progress.
    NoTransfer = 14, "no transfer in progress";
    /// A request argument is out of range.
    InvalidArgument = 15, "invalid argument";
    /// The device requires its key: the request came before the handshake, over UDP, or the
    /// handshake itself failed (docs/PROTOCOL.md §16).
    Unauthorized = 16, "unauthorized";
    /// The device failed internally (e.g. a storage I/O error).
    Internal = 17, "internal device error";
    /// A UDP request datagram is smaller than its answer would be; pad it (see `MAX_DATAGRAM`).
    PadRequest = 18, "request datagram smaller than its answer; pad it";
    /// The file was removed or replaced while a download read it; the stream stopped before
    /// any byte of another version. Getting it again reads the current version.
    Changed = 19, "file changed while being read";
    /// Not a firmware image this device takes: its header (magic, format, layout, length) or its
    /// load address is wrong.
    BadImage = 20, "not a valid firmware image";
    /// A firmware image whose signature does not verify with the device's key.
    BadSignature = 21, "the image's signature does not verify";
    /// A firmware image built for another board.
    WrongBoard = 22, "the image is for another board";
    /// A firmware image whose security counter is below the device's floor.
    Downgrade = 23, "the image's security counter is below the device's";
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for &c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(c as u16), Some(c));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
        assert_eq!(ErrorCode::from_u16(9999), None);
    }
}
