//! Per-service counters, readable by commands such as `stats`.

/// The services counted in [`Stats::requests`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Service {
    /// `hello`.
    Hello,
    /// `echo` and `upper`.
    Echo,
    /// `exec`.
    Exec,
    /// Uploads (`put-*`).
    Put,
    /// Downloads.
    Get,
    /// `list`, `stat`, `remove`.
    Files,
    /// `time-get`, `time-set`, and the plain UDP time port.
    Time,
    /// Datagram messages and subscriptions.
    Message,
    /// The plain TCP upper-echo port.
    Plain,
    /// Firmware update (`fw-*`, `reset`).
    Update,
}

impl Service {
    /// How many services are counted.
    pub const COUNT: usize = 10;
    /// Their names, in index order.
    pub const NAMES: [&'static str; Self::COUNT] = [
        "hello", "echo", "exec", "put", "get", "files", "time", "message", "plain", "update",
    ];
}

/// Device counters since boot. Plain integers: the server updates them from one thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests handled, per [`Service`].
    pub requests: [u32; Service::COUNT],
    /// Error responses sent.
    pub errors: u32,
    /// Decode faults (garbage, CRC, too large, version).
    pub decode_errors: u32,
    /// Framed UDP datagrams the device did not answer: undecodable ones, and requests smaller
    /// than their answer with no room even for the "pad your request" error.
    pub udp_dropped: u32,
    /// Bytes received on the framed TCP and UDP ports.
    pub bytes_in: u64,
    /// Bytes sent on the framed TCP and UDP ports.
    pub bytes_out: u64,
    /// TCP sessions accepted.
    pub sessions_opened: u32,
    /// TCP sessions open now.
    pub sessions_active: u32,
    /// Sessions closed by the device (idle timeout, frame deadline, garbage limit, eviction).
    pub sessions_closed_by_device: u32,
    /// Sessions closed because a frame did not arrive complete within the frame deadline.
    pub frame_timeouts: u32,
    /// Idle sessions evicted to make room for a waiting peer.
    pub sessions_evicted: u32,
    /// Peers turned away because every session was busy and none could be evicted.
    pub sessions_refused: u32,
    /// Uploads committed.
    pub uploads: u32,
    /// Downloads completed.
    pub downloads: u32,
    /// Secure-session handshakes completed.
    pub handshakes: u32,
    /// Sessions closed for failing authentication: a handshake refused or not done in time, a
    /// sealed frame refused (unsealed, replayed, modified).
    pub auth_failures: u32,
}

/// What the transports and the session engine report: [`Stats::tally`] is the one place that
/// says which counters each moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// A peer got a session.
    SessionOpened,
    /// A session's peer left or was dropped.
    SessionClosed,
    /// The device dropped a session's peer (`frame_timeout`: its frame deadline passed;
    /// `auth_failure`: it failed to prove the key).
    PeerDropped {
        /// The frame deadline passed.
        frame_timeout: bool,
        /// The peer failed to prove the key.
        auth_failure: bool,
    },
    /// A session gave way to a waiting peer.
    Evicted,
    /// A waiting peer was answered `Busy`.
    Refused,
    /// Bytes received on a framed port or line.
    BytesIn(usize),
    /// Bytes sent on a framed port or line.
    BytesOut(usize),
    /// Bytes that decoded to no frame (a session's or a datagram's).
    DecodeFault,
    /// A framed datagram left unanswered.
    DatagramDropped,
}

impl Stats {
    /// Counts one request of `service`.
    pub fn count(&mut self, service: Service) {
        let n = &mut self.requests[service as usize];
        *n = n.wrapping_add(1);
    }

    /// Counts what a transport or the session engine reports. (Inlined: every caller names one
    /// variant, so each call is the one or two increments it stands for.)
    #[inline(always)]
    pub fn tally(&mut self, what: Tally) {
        match what {
            Tally::SessionOpened => {
                self.sessions_opened = self.sessions_opened.wrapping_add(1);
                self.sessions_active = self.sessions_active.saturating_add(1);
            }
            Tally::SessionClosed => self.sessions_active = self.sessions_active.saturating_sub(1),
            Tally::PeerDropped {
                frame_timeout,
                auth_failure,
            } => {
                self.sessions_closed_by_device = self.sessions_closed_by_device.wrapping_add(1);
                if frame_timeout {
                    self.frame_timeouts = self.frame_timeouts.wrapping_add(1);
                }
                if auth_failure {
                    self.auth_failures = self.auth_failures.wrapping_add(1);
                }
            }
            Tally::Evicted => self.sessions_evicted = self.sessions_evicted.wrapping_add(1),
            Tally::Refused => self.sessions_refused = self.sessions_refused.wrapping_add(1),
            Tally::BytesIn(n) => self.bytes_in = self.bytes_in.wrapping_add(n as u64),
            Tally::BytesOut(n) => self.bytes_out = self.bytes_out.wrapping_add(n as u64),
            Tally::DecodeFault => self.decode_errors = self.decode_errors.wrapping_add(1),
            Tally::DatagramDropped => self.udp_dropped = self.udp_dropped.wrapping_add(1),
        }
    }
}
