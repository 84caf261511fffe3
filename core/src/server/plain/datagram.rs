//! The plain UDP services: time and chat, one datagram in, at most one datagram out.

use core::fmt::Write as _;

use heapless::String;
use smoltcp::socket::udp;

use super::copy_line;
use crate::server::Server;
use crate::service::exec::Output;
use crate::service::files::Storage;
use crate::service::stats::Service;
use crate::service::Context;

/// Datagrams handled per pass on each plain UDP socket.
const DATAGRAMS_PER_PASS: usize = 16;

/// A chat reply is cut to `max(request length, CHAT_REPLY_FLOOR)` bytes. A datagram's source
/// address is easy to forge, so a reply must not let a small request aim a much larger answer
/// at someone else: with this cap the answer is at most as large as the request, or, for tiny
/// requests, at most 64 bytes of text (about twice a minimum Ethernet frame on the wire).
pub const CHAT_REPLY_FLOOR: usize = 64;

impl<C: Context + 'static, S: Storage, const N: usize, const SESSIONS: usize> Server<'_, C, S, N, SESSIONS> {
    /// UDP time: a datagram is a strftime format (empty: `%Y-%m-%d %H:%M:%S`), the reply the
    /// formatted time or a line starting `error:`.
    pub(super) fn plain_time(&mut self, socket: &mut udp::Socket<'_>) -> bool {
        let mut any = false;
        for _ in 0..DATAGRAMS_PER_PASS {
            if !socket.can_send() {
                break;
            }
            let Ok((data, meta)) = socket.recv() else { break };
            any = true;
            self.device.stats.count(Service::Time);
            let n = match core::str::from_utf8(data).map(|f| f.trim_end_matches(['\r', '\n'])) {
                Ok(format) => match self.device.format_time(format, &mut self.scratch) {
                    Ok(n) => n,
                    Err((_, detail)) => copy_line(&mut self.scratch, &["error: ", detail]),
                },
                Err(_) => copy_line(&mut self.scratch, &["error: the format is not UTF-8"]),
            };
            let _ = socket.send_slice(&self.scratch[..n], meta.endpoint);
        }
        any
    }

    /// UDP chat: a datagram is a line of text for the application ([`Context::on_message`],
    /// from `IP:PORT`), the reply is the application's answer as text (possibly empty), cut to
    /// [`CHAT_REPLY_FLOOR`] or the request's length. Empty datagrams get no answer at all.
    pub(super) fn plain_chat(&mut self, socket: &mut udp::Socket<'_>) -> bool {
        let mut any = false;
        for _ in 0..DATAGRAMS_PER_PASS {
            if !socket.can_send() {
                break;
            }
            let Ok((data, meta)) = socket.recv() else { break };
            any = true;
            if data.is_empty() {
                continue;
            }
            self.device.stats.count(Service::Message);
            let cap = data.len().max(CHAT_REPLY_FLOOR).min(self.scratch.len());
            let n = match core::str::from_utf8(data) {
                // A datagram's sender proves nothing: on a device with a key, messages arrive
                // only through secure sessions.
                Ok(_) if self.device.key_required() => {
                    copy_line(&mut self.scratch[..cap], &["error: this device requires its key"])
                }
                Ok(text) => {
                    let text = text.trim_end_matches(['\r', '\n']);
                    let mut from: String<48> = String::new();
                    let _ = write!(from, "{}", meta.endpoint);
                    let mut reply = Output::new(&mut self.scratch);
                    self.device.ctx.on_message(&from, text, &mut reply);
                    let n = reply.len();
                    utf8_prefix(&self.scratch[..n], cap)
                }
                Err(_) => copy_line(&mut self.scratch[..cap], &["error: the message is not UTF-8"]),
            };
            let _ = socket.send_slice(&self.scratch[..n], meta.endpoint);
        }
        any
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
    use super::utf8_prefix;

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
