//! What can go wrong talking to a device.
//!
//! Every message is a sentence for a person: it names what failed and where, and never shows
//! Rust's `Debug` text. `host-cli` adds a hint (what to try) and maps each variant to an exit
//! code (see `docs/CLI.md`).

use std::fmt;

use tether_core::wire::ErrorCode;

/// Which way a connection failure happened: the stream a session runs on (TCP or a serial line,
/// which the target names) or the device's framed UDP port, which a TCP target also uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// The session's stream: TCP or a serial line.
    Stream,
    /// A datagram to the device's framed UDP port.
    Udp,
}

/// What went wrong with a connection: what `host-cli` chooses its hint and a retry by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing listens there: TCP refused the connection, or ICMP says the UDP port is closed.
    Refused,
    /// The name resolves to no address.
    Unresolved,
    /// The address or the serial port cannot be reached or opened.
    Unreachable,
    /// The connection broke: reset, aborted, or failed mid-way.
    Broke,
    /// The peer closed the connection.
    Closed,
    /// An answer of several frames lost one on the way (a page of a listing).
    Lost,
    /// No answer within the timeout.
    TimedOut,
    /// This PC could not set up its end (a socket, a timeout on a port).
    Local,
}

/// A failed exchange with a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The device answered with an error response.
    Device {
        /// The protocol error code number.
        code: u16,
        /// The device's explanation.
        message: String,
    },
    /// The device refused the whole connection because every session is in use: the unasked
    /// `Busy` of docs/PROTOCOL.md §13, not an answer to any request.
    Full(String),
    /// The connection could not be made, broke or timed out.
    Connection {
        /// The stream or the UDP port.
        over: Over,
        /// What happened.
        cause: Cause,
        /// The sentence for a person.
        message: String,
    },
    /// The link damaged or lost a frame in either direction: a serial line's byte faults, or bytes
    /// changed above TCP. Not the device's doing and not a protocol error: repeating or resuming
    /// the exchange recovers it.
    Link(String),
    /// For a whole timeout the link delivered frames, but only damaged ones: a line at the wrong
    /// baud rate, or one too noisy to carry a frame. Repeating at once does not help.
    Garbled(String),
    /// The peer answered, but not in Tether frames (a web server, an echo service, …).
    NotTether(String),
    /// The device sent frames this client did not expect (a bug or a version mismatch).
    Protocol(String),
    /// A local problem: a file that cannot be read or written, a digest that does not match.
    Local(String),
    /// A request the client refuses to send: an invalid file name, too many arguments.
    Usage(String),
    /// The secure session failed: the device requires a key this client lacks, refused the key,
    /// has no key although this client was given one, or did not prove that it holds the key.
    Auth(String),
}

impl ClientError {
    /// The protocol error code, for a device error.
    /// (The refusal of a whole connection is the device's `Busy`.)
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Device { code, .. } => ErrorCode::from_u16(*code),
            ClientError::Full(_) => Some(ErrorCode::Busy),
            _ => None,
        }
    }

    /// A failure of the connection itself.
    pub fn connection(over: Over, cause: Cause, message: impl Into<String>) -> Self {
        ClientError::Connection {
            over,
            cause,
            message: message.into(),
        }
    }

    /// No answer within the timeout.
    pub fn timeout(over: Over, message: impl Into<String>) -> Self {
        ClientError::connection(over, Cause::TimedOut, message)
    }

    /// What went wrong with the connection, for a connection failure.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            ClientError::Connection { cause, .. } => Some(*cause),
            _ => None,
        }
    }

    /// Whether no answer came within the timeout.
    pub fn is_timeout(&self) -> bool {
        self.cause() == Some(Cause::TimedOut)
    }

    /// Whether reconnecting might help (the connection broke or timed out, not a refusal).
    pub fn is_connection(&self) -> bool {
        matches!(self, ClientError::Connection { .. })
    }

    /// The message without any variant decoration.
    pub fn message(&self) -> &str {
        match self {
            ClientError::Device { message, .. } | ClientError::Connection { message, .. } => message,
            ClientError::Full(m)
            | ClientError::Link(m)
            | ClientError::Garbled(m)
            | ClientError::NotTether(m)
            | ClientError::Protocol(m)
            | ClientError::Local(m)
            | ClientError::Usage(m)
            | ClientError::Auth(m) => m,
        }
    }

    /// Whether the link may have damaged the exchange, so that repeating or resuming it may help:
    /// connection trouble, a frame the link damaged or lost ([`ClientError::Link`]), or the device
    /// saying it received a damaged frame (`Malformed`: cut short on a serial line; `BadCrc`).
    pub fn is_link_damage(&self) -> bool {
        self.is_connection()
            || matches!(self, ClientError::Link(_))
            || matches!(self.code(), Some(ErrorCode::Malformed | ErrorCode::BadCrc))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Device { code, message } => {
                let name = ErrorCode::from_u16(*code).map(|c| c.text()).unwrap_or("unknown error");
                // Devices usually say the code's name themselves; do not repeat it.
                if message.is_empty() || message == name {
                    write!(f, "the device refused: {name}")
                } else {
                    write!(f, "the device refused: {message}")
                }
            }
            ClientError::Full(message) => write!(f, "the device refused the connection: {message}"),
            other => f.write_str(other.message()),
        }
    }
}

impl std::error::Error for ClientError {}

/// Result of a client call.
pub type Result<T> = std::result::Result<T, ClientError>;
