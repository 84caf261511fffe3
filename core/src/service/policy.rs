//! Which request kind is served where: the one table every part of Tether reads.
//!
//! The session engine, the framed UDP server and the services decide from [`rule`] whether a kind
//! is served on a session, before the handshake, over UDP, and over UDP on a device with a key;
//! host-cli decides from it which requests it may repeat when an answer is lost. Each service
//! module owns its rows (its `RULES`); [`TABLE`] lists them all, and a test checks it against
//! the table "Which kinds are served where" in `docs/PROTOCOL.md` §1.

use crate::service::stats::Service;
use crate::wire::Kind;

/// What a framed UDP datagram of a kind gets on a device without a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverUdp {
    /// Served, one frame per datagram.
    Served,
    /// Refused `InvalidArgument` ("use TCP"): a datagram's source is easy to forge, so nothing
    /// that touches files or runs commands is served over UDP.
    TcpOnly,
    /// Not a service: `UnknownKind`.
    Unknown,
}

/// The service a kind belongs to: the module whose handlers answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedBy {
    /// `Hello` (`service/hello.rs`).
    Hello,
    /// `Discover` (`service/discover.rs`).
    Discover,
    /// `Echo`, `Upper` (`service/echo.rs`).
    Echo,
    /// `Exec` (`service/exec.rs`).
    Exec,
    /// Uploads, downloads, listing, `Stat`, `Remove` (`service/files/`).
    Files,
    /// `TimeGet`, `TimeSet` (`service/time.rs`).
    Time,
    /// `Message`, `Subscribe`, `Event` (`service/message.rs`, `service/events.rs`).
    Messages,
    /// `Handshake`, `Sealed`: run by the session engine on a device with a key (`secure`).
    Secure,
    /// `FwStatus` … `FwConfirm`, `Reset` (`service/update.rs`; feature `update`).
    Update,
    /// A kind no service answers.
    None,
}

impl ServedBy {
    /// The counter of `exec stats` that a request to this service counts in, unless its row says
    /// otherwise ([`Rule::counted_as`]).
    pub const fn counter(self) -> Option<Service> {
        match self {
            // Both ask who the device is.
            ServedBy::Hello | ServedBy::Discover => Some(Service::Hello),
            ServedBy::Echo => Some(Service::Echo),
            ServedBy::Exec => Some(Service::Exec),
            ServedBy::Files => Some(Service::Files),
            ServedBy::Time => Some(Service::Time),
            ServedBy::Messages => Some(Service::Message),
            ServedBy::Update => Some(Service::Update),
            ServedBy::Secure | ServedBy::None => None,
        }
    }
}

/// The rules of one request kind (`docs/PROTOCOL.md` §1, §16.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The kind.
    pub kind: Kind,
    /// Who answers it.
    pub service: ServedBy,
    /// Served on a session (TCP, serial). `false` only for kinds the device sends, never serves.
    pub on_session: bool,
    /// Served on a session of a device with a key before its handshake.
    pub before_handshake: bool,
    /// What it gets over framed UDP on a device without a key.
    pub over_udp: OverUdp,
    /// Served over framed UDP on a device with a key (which serves there only what changes
    /// nothing; everything else is `Unauthorized`).
    pub udp_with_key: bool,
    /// Serving it changes the device's state (files, clock, hardware, inbox, subscriptions).
    pub changes_state: bool,
    /// Sending it again when its answer was lost does no harm and gets the same answer.
    pub idempotent: bool,
    /// Answered with a stream of frames: a first frame, then more as the transport takes them
    /// (on a serial line their size is capped, `docs/PROTOCOL.md` §17.2).
    pub streams: bool,
    /// The request counter of `exec stats` it counts in when its service takes it (an upload and
    /// a download count once, at `PutBegin` and `Get`, not per chunk).
    pub counted_as: Option<Service>,
}

impl Rule {
    /// A kind served on sessions only, changing state or not.
    pub(crate) const fn session_only(kind: Kind, service: ServedBy, changes_state: bool, idempotent: bool) -> Rule {
        Rule {
            kind,
            service,
            on_session: true,
            before_handshake: false,
            over_udp: OverUdp::TcpOnly,
            udp_with_key: false,
            changes_state,
            idempotent,
            streams: false,
            counted_as: service.counter(),
        }
    }

    /// A kind served on sessions and over UDP; over UDP on a keyed device only if it reads.
    pub(crate) const fn anywhere(kind: Kind, service: ServedBy, changes_state: bool, idempotent: bool) -> Rule {
        Rule {
            kind,
            service,
            on_session: true,
            before_handshake: false,
            over_udp: OverUdp::Served,
            udp_with_key: !changes_state,
            changes_state,
            idempotent,
            streams: false,
            counted_as: service.counter(),
        }
    }
}

/// Secure sessions: the session engine runs them; nothing else serves them.
pub const SECURE: [Rule; 2] = [
    Rule {
        before_handshake: true,
        over_udp: OverUdp::Unknown,
        ..Rule::session_only(Kind::Handshake, ServedBy::Secure, false, false)
    },
    Rule {
        over_udp: OverUdp::Unknown,
        ..Rule::session_only(Kind::Sealed, ServedBy::Secure, false, false)
    },
];
/// A kind no service answers (`UnknownKind` everywhere).
pub const NOTHING: Rule = Rule {
    kind: Kind::Unknown(0),
    service: ServedBy::None,
    on_session: false,
    before_handshake: false,
    over_udp: OverUdp::Unknown,
    udp_with_key: false,
    changes_state: false,
    idempotent: false,
    streams: false,
    counted_as: None,
};

/// Every row, each service's own in turn.
pub const TABLE: [&[Rule]; 9] = [
    &super::hello::RULES,
    &super::discover::RULES,
    &super::echo::RULES,
    &super::exec::RULES,
    &super::files::RULES,
    &super::time::RULES,
    &super::message::RULES,
    &super::update::RULES,
    &SECURE,
];

/// The rules of `kind`: its row of [`TABLE`], or [`NOTHING`] for a kind no service answers.
pub fn rule(kind: Kind) -> Rule {
    for rows in TABLE {
        for row in rows {
            if row.kind == kind {
                return *row;
            }
        }
    }
    Rule { kind, ..NOTHING }
}
