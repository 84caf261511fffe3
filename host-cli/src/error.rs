//! What can go wrong talking to a device, and how a command line reports it.

use std::fmt;

use tether_core::wire::ErrorCode;

/// A failed exchange with a device.
#[derive(Debug)]
pub enum ClientError {
    /// The device answered with an error response.
    Device {
        /// The protocol error code number.
        code: u16,
        /// The device's explanation.
        message: String,
    },
    /// The connection failed, closed, or timed out.
    Connection(String),
    /// The device sent something this client did not expect.
    Protocol(String),
    /// A local problem: a file that cannot be read or written, a digest that does not match.
    Local(String),
}

impl ClientError {
    /// The protocol error code, for a device error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Device { code, .. } => ErrorCode::from_u16(*code),
            _ => None,
        }
    }

    /// Whether reconnecting might help (connection trouble, not a refusal).
    pub fn is_connection(&self) -> bool {
        matches!(self, ClientError::Connection(_))
    }

    /// Whether the link may have damaged the exchange, so that repeating or resuming it may help:
    /// connection trouble, or the device saying it received a damaged frame (`Malformed`: cut
    /// short on a serial line; `BadCrc`).
    pub fn is_link_damage(&self) -> bool {
        self.is_connection() || matches!(self.code(), Some(ErrorCode::Malformed | ErrorCode::BadCrc))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Device { code, message } => {
                let name = ErrorCode::from_u16(*code).map(|c| c.text()).unwrap_or("unknown error");
                write!(f, "device error {code} ({name}): {message}")
            }
            ClientError::Connection(m) | ClientError::Protocol(m) | ClientError::Local(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ClientError {}

/// Result of a client call.
pub type Result<T> = std::result::Result<T, ClientError>;
