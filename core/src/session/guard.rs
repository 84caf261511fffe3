//! A session's security state, and the one place where frames are sealed and opened.
//!
//! A device without a key has sessions that stay [`Guard::Open`]. With a key (feature `secure`),
//! a session starts [`Guard::Locked`]: only `Hello` and the handshake are served. The handshake
//! makes it [`Guard::Sealed`]: from then on every frame in and out is a sealed frame, and one that
//! fails to open ends the session (`docs/PROTOCOL.md` §16.3). There is no way back.
//!
//! A handshake alone proves nothing about the peer: message 1 carries nothing fresh, so a
//! recorded one replayed gets its message 2 like the real client. Only the peer's first sealed
//! frame that opens proves the key; until then the session is not [`Standing::Authenticated`].

#[cfg(feature = "secure")]
use crate::secure::{Channel, Error, SEALED_PREFIX, TAG_LEN};
use crate::service::files::Storage;
use crate::service::{Context, Device, Transport};
#[cfg(feature = "secure")]
use crate::wire::{Frame, Header};

/// Where a session's peer stands with respect to the device's key (`docs/PROTOCOL.md` §13, §16.3):
/// what decides the handshake deadline and whether the session gives way to a waiting peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The device has no key: every peer is served alike.
    Open,
    /// The device has a key and has not answered a handshake on this session.
    Locked,
    /// The device answered the peer's message 1, but no sealed frame from the peer has opened
    /// yet: a replayed message 1 gets this far, so nothing is proven.
    Answered,
    /// A sealed frame from the peer opened: it holds the key.
    Authenticated,
}

/// Where a session stands with respect to the device's key.
pub(super) enum Guard {
    /// No key: frames travel as they are.
    Open,
    /// Key required, handshake not done: frames travel as they are, and only `Hello` and
    /// `Handshake` are served.
    #[cfg(feature = "secure")]
    Locked,
    /// Handshake done: every frame is sealed with this channel. `proven` once a frame from the
    /// peer has opened.
    #[cfg(feature = "secure")]
    Sealed { channel: Channel, proven: bool },
}

impl Guard {
    /// The state a new session of `device` starts in.
    pub(super) fn for_device<C: Context, S: Storage>(device: &Device<'_, C, S>) -> Guard {
        #[cfg(feature = "secure")]
        if device.key_required() {
            return Guard::Locked;
        }
        let _ = device;
        Guard::Open
    }

    /// Where the peer stands.
    pub(super) fn standing(&self) -> Standing {
        match self {
            Guard::Open => Standing::Open,
            #[cfg(feature = "secure")]
            Guard::Locked => Standing::Locked,
            #[cfg(feature = "secure")]
            Guard::Sealed { proven: false, .. } => Standing::Answered,
            #[cfg(feature = "secure")]
            Guard::Sealed { proven: true, .. } => Standing::Authenticated,
        }
    }

    /// What the services may serve this session's peer ([`crate::service::policy`]).
    pub(super) fn transport(&self) -> Transport {
        match self.standing() {
            Standing::Locked => Transport::Locked,
            _ => Transport::Session,
        }
    }

    /// Whether the handshake is still to come.
    pub(super) fn is_locked(&self) -> bool {
        self.standing() == Standing::Locked
    }

    /// Builds one outgoing frame into `buf`: `fill` writes the frame (it gets the room an inner
    /// frame may use) and returns its length, 0 for nothing to send. Returns the length of what
    /// goes on the wire, or `None` when sealing failed and the session must end.
    pub(super) fn build(&mut self, buf: &mut [u8], fill: impl FnOnce(&mut [u8]) -> usize) -> Option<usize> {
        match self {
            #[cfg(feature = "secure")]
            Guard::Sealed { channel, .. } => {
                let end = buf.len().checked_sub(TAG_LEN)?;
                let inner = fill(buf.get_mut(SEALED_PREFIX..end)?);
                if inner == 0 {
                    return Some(0);
                }
                channel.seal_in_place(buf, inner).ok()
            }
            _ => Some(fill(buf)),
        }
    }

    /// Whether every frame in and out is sealed (the handshake is done).
    #[cfg(feature = "secure")]
    pub(super) fn is_sealed(&self) -> bool {
        matches!(self, Guard::Sealed { .. })
    }

    /// Opens a sealed frame from the peer (decoded into `header` and `frame`, in place): its
    /// inner frame. The first that opens proves the key: from then on the session is
    /// authenticated. One that fails ends the channel (PROTOCOL.md §16.3).
    #[cfg(feature = "secure")]
    pub(super) fn open<'a>(&mut self, header: Header, frame: &'a mut [u8]) -> Result<Frame<'a>, Error> {
        let Guard::Sealed { channel, proven } = self else {
            return Err(Error::Unsealed);
        };
        let inner = channel.open_decoded(header, frame)?;
        *proven = true;
        Ok(inner)
    }
}

/// Why a sealed frame or handshake was refused, for the session's verdict.
#[cfg(feature = "secure")]
pub(super) fn refusal_text(e: Error) -> &'static str {
    match e {
        Error::Unsealed => "unsealed frame on a sealed session",
        Error::Replay => "replayed sealed frame or message 1",
        Error::Malformed => "malformed sealed frame",
        _ => "sealed frame failed authentication",
    }
}
