//! The plain UDP services: time and chat, one datagram in, at most one datagram out, never
//! longer than [`reply_cap`] allows.

#[cfg(feature = "plain-actors")]
use core::fmt::Write as _;

#[cfg(feature = "plain-actors")]
use heapless::String;
use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

use super::copy_line;
use crate::server::Server;
#[cfg(feature = "plain-actors")]
use crate::service::exec::Output;
use crate::service::files::Storage;
use crate::service::stats::Service;
use crate::service::Context;

/// The anti-amplification floor of the plain UDP services: no reply is longer than
/// `max(request length, PLAIN_REPLY_FLOOR)` bytes ([`reply_cap`]). A datagram's source address is
/// easy to forge, so a reply must not let a small request aim a much larger answer at someone
/// else: with this cap the answer is at most as large as the request, or, for tiny requests, at
/// most 64 bytes (about twice a minimum Ethernet frame on the wire).
pub const PLAIN_REPLY_FLOOR: usize = 64;

/// What a time reply too long for its request is answered with instead (PROTOCOL.md §11.11):
/// trailing newlines are ignored in the format, so they are the padding that buys a longer reply.
const TIME_TOO_LONG: &str = "error: the time is longer than the request; pad it with newlines";
const _: () = assert!(TIME_TOO_LONG.len() <= PLAIN_REPLY_FLOOR, "fits every cap");

/// The longest reply a plain UDP service may send to a request of `request` bytes, given `room`
/// bytes of scratch: the one anti-amplification rule of both plain UDP ports.
fn reply_cap(request: usize, room: usize) -> usize {
    request.max(PLAIN_REPLY_FLOOR).min(room)
}

impl<C: Context + 'static, S: Storage, const N: usize, const SESSIONS: usize> Server<'_, C, S, N, SESSIONS> {
    /// Serves the datagrams waiting on a plain UDP socket with `serve`, which is given the
    /// request, its source and the cap of [`reply_cap`] and writes its reply into
    /// `self.scratch`, returning its length. The cap is enforced here, whatever `serve` returns:
    /// a reply over it is not sent at all (each service fits its reply itself, in its own way).
    fn plain_datagrams(
        &mut self,
        socket: &mut udp::Socket<'_>,
        mut serve: impl FnMut(&mut Self, &[u8], IpEndpoint, usize) -> usize,
    ) -> bool {
        self.each_datagram(socket, |this, data, from| {
            let cap = reply_cap(data.len(), this.scratch.len());
            let n = serve(this, data, from, cap);
            if n > cap {
                0
            } else {
                n
            }
        })
        .any
    }

    /// UDP time: a datagram is a strftime format (empty: `%Y-%m-%d %H:%M:%S`), the reply the
    /// whole formatted time or a line starting `error:`. A time longer than [`reply_cap`] allows
    /// is answered [`TIME_TOO_LONG`] (never a cut time, which could read as a different one);
    /// an error line is cut to the cap (it is text for people).
    pub(super) fn plain_time(&mut self, socket: &mut udp::Socket<'_>) -> bool {
        self.plain_datagrams(socket, |this, data, _, cap| {
            this.device.stats.count(Service::Time);
            let out = &mut this.scratch;
            match core::str::from_utf8(data).map(|f| f.trim_end_matches(['\r', '\n'])) {
                Ok(format) => match this.device.format_time(format, out) {
                    Ok(n) if n <= cap => n,
                    Ok(_) => copy_line(&mut out[..cap], &[TIME_TOO_LONG]),
                    Err((_, detail)) => {
                        let n = copy_line(out, &["error: ", detail]);
                        utf8_prefix(&out[..n], cap)
                    }
                },
                Err(_) => copy_line(&mut out[..cap], &["error: the format is not UTF-8"]),
            }
        })
    }

    /// UDP chat: a datagram is a line of text for the application ([`Context::on_message`],
    /// from `IP:PORT`), the reply is the application's answer as text (possibly empty), cut at
    /// a character boundary to [`reply_cap`]. Empty datagrams get no answer at all.
    #[cfg(feature = "plain-actors")]
    pub(super) fn plain_chat(&mut self, socket: &mut udp::Socket<'_>) -> bool {
        self.plain_datagrams(socket, |this, data, from, cap| {
            if data.is_empty() {
                return 0;
            }
            this.device.stats.count(Service::Message);
            match core::str::from_utf8(data) {
                // A datagram's sender proves nothing: on a device with a key, messages arrive
                // only through secure sessions.
                Ok(_) if this.device.key_required() => {
                    copy_line(&mut this.scratch[..cap], &["error: this device requires its key"])
                }
                Ok(text) => {
                    let text = text.trim_end_matches(['\r', '\n']);
                    let mut sender: String<48> = String::new();
                    let _ = write!(sender, "{from}");
                    let mut reply = Output::new(&mut this.scratch);
                    this.device.ctx.on_message(&sender, text, &mut reply);
                    let n = reply.len();
                    utf8_prefix(&this.scratch[..n], cap)
                }
                Err(_) => copy_line(&mut this.scratch[..cap], &["error: the message is not UTF-8"]),
            }
        })
    }
}

/// The length of the longest prefix of `text` of at most `cap` bytes that does not cut a UTF-8
/// character (the application's reply is text; a cut character would not decode).
fn utf8_prefix(text: &[u8], cap: usize) -> usize {
    if text.len() <= cap {
        return text.len();
    }
    let mut n = cap;
    // A continuation byte (0b10xx_xxxx) at the cut means the character started before it.
    while n > 0 && text[n] & 0xc0 == 0x80 {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::{reply_cap, utf8_prefix, PLAIN_REPLY_FLOOR};

    #[test]
    fn the_cap_is_the_request_or_the_floor_within_the_room() {
        assert_eq!(reply_cap(0, 1024), PLAIN_REPLY_FLOOR);
        assert_eq!(reply_cap(2, 1024), PLAIN_REPLY_FLOOR);
        assert_eq!(reply_cap(300, 1024), 300);
        assert_eq!(reply_cap(5000, 1024), 1024);
        assert_eq!(reply_cap(2, 10), 10);
    }

    #[test]
    fn utf8_prefix_never_cuts_a_character() {
        assert_eq!(utf8_prefix(b"hello", 10), 5);
        assert_eq!(utf8_prefix(b"hello", 3), 3);
        let s = "aé€".as_bytes(); // 1 + 2 + 3 bytes
        assert_eq!(utf8_prefix(s, 2), 1);
        assert_eq!(utf8_prefix(s, 3), 3);
        assert_eq!(utf8_prefix(s, 5), 3);
        assert_eq!(utf8_prefix(s, 6), 6);
    }
}
