//! Metadata messages, one per kind and direction, encoded with postcard.
//!
//! Strings borrow from the frame they were decoded from (`&'a str`), so decoding allocates
//! nothing; lists are `heapless::Vec`s with documented capacities. Field order is wire order:
//! postcard writes fields one after another with no tags, integers as LEB128 varints (signed ones
//! zig-zag first), `bool` as one byte, strings and byte lists as a varint length then the bytes,
//! `[u8; 32]` as 32 raw bytes, `Option` as a 0/1 byte then the value.

use heapless::Vec;
use serde::{Deserialize, Serialize};

// The limits below are the protocol's (docs/PROTOCOL.md §13 states each once). A receiver refuses
// a request beyond one with `InvalidArgument`; string limits are in bytes of UTF-8.

/// Longest file name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Most commands an `Info` lists.
pub const MAX_COMMANDS: usize = 16;
/// Most arguments an `exec` request carries.
pub const MAX_ARGS: usize = 8;
/// Longest `ExecRequest.command`, in bytes.
pub const MAX_COMMAND_LEN: usize = 16;
/// Longest `ExecRequest` argument, in bytes. With [`MAX_ARGS`] and [`MAX_COMMAND_LEN`] this keeps
/// the largest `ExecRequest` ([`MAX_EXEC_META`]) within [`crate::wire::MAX_META_LEN`].
pub const MAX_ARG_LEN: usize = 56;
/// The largest `ExecRequest` metadata the limits allow: a one-byte length before the command,
/// a one-byte count, and a one-byte length before each argument (every length is below 128).
pub const MAX_EXEC_META: usize = 1 + MAX_COMMAND_LEN + 1 + MAX_ARGS * (1 + MAX_ARG_LEN);
/// Longest `Hello.client`, in bytes.
pub const MAX_CLIENT_LEN: usize = 32;
/// Longest `Message.from`, in bytes.
pub const MAX_FROM_LEN: usize = 32;
/// Longest device name (`Info.device`, and `Message.from` in a `Message` response), in bytes: a
/// longer configured name is cut to it at a character boundary.
pub const MAX_DEVICE_LEN: usize = 32;
/// Longest `Event.topic`, in bytes: the device sends no event with a longer one.
pub const MAX_TOPIC_LEN: usize = 32;
/// Longest `TimeGet.format`, in bytes.
pub const MAX_FORMAT_LEN: usize = 64;
/// Longest formatted time (the body of a `TimeGet` response), in bytes.
pub const MAX_TIME_TEXT: usize = 256;
/// Longest `ErrorInfo.message`, in bytes (the device never sends a longer one).
pub const MAX_ERROR_LEN: usize = 96;
/// Most entries in one `list` response frame.
pub const LIST_PAGE: usize = 8;
/// Largest framed UDP datagram, padding included, in either direction.
pub const MAX_DATAGRAM: usize = 1024;
/// Longest `Presence.firmware`, in bytes: a longer configured version is cut to it.
pub const MAX_FIRMWARE_LEN: usize = 32;
/// Most addresses a `Presence` lists.
pub const MAX_ADDRESSES: usize = 4;
/// The largest `Discover` answer, in bytes: the header, and a `Presence` with every field at its
/// longest (varints of 10 and 3 bytes, strings and the list with their one-byte lengths). A
/// probe datagram at least this long always gets its answer.
pub const MAX_PRESENCE_FRAME: usize = crate::wire::HEADER_LEN
    + 1
    + 10
    + (1 + MAX_DEVICE_LEN)
    + (1 + MAX_FIRMWARE_LEN)
    + 3
    + 3
    + 1
    + (1 + 4 * MAX_ADDRESSES);
/// How long a `Subscribe { on: true }` lasts, in milliseconds; a subscriber renews it by
/// subscribing again before it runs out.
pub const SUBSCRIBE_LEASE_MS: u64 = 60_000;
/// The earliest time `TimeSet` accepts: 2000-01-01T00:00:00Z, in ms since the Unix epoch.
pub const TIME_MIN_MS: u64 = 946_684_800_000;
/// The first time `TimeSet` refuses: 10000-01-01T00:00:00Z (the last accepted year is 9999).
pub const TIME_END_MS: u64 = 253_402_300_800_000;

const _: () = assert!(MAX_EXEC_META <= crate::wire::MAX_META_LEN);
const _: () = assert!(MAX_PRESENCE_FRAME <= MAX_DATAGRAM, "a probe can hold any answer");
const _: () = assert!(MAX_COMMAND_LEN < 128 && MAX_ARG_LEN < 128 && MAX_ARGS < 128);
/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// `Hello` request: who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello<'a> {
    /// Client name and version, for the device's log (at most [`MAX_CLIENT_LEN`] bytes).
    #[serde(borrow)]
    pub client: &'a str,
}

/// `Hello` response: what the device is and can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info<'a> {
    /// Protocol version the device speaks.
    pub version: u8,
    /// Device name.
    #[serde(borrow)]
    pub device: &'a str,
    /// Largest frame the device accepts, header included.
    pub max_frame: u32,
    /// Largest upload chunk body the device accepts (`max_frame` less header and metadata room).
    pub max_chunk: u32,
    /// How many TCP sessions the device serves at once.
    pub sessions: u8,
    /// Storage capacity in bytes.
    pub storage_capacity: u64,
    /// Storage in use in bytes.
    pub storage_used: u64,
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// Names of the registered commands.
    #[serde(borrow)]
    pub commands: Vec<&'a str, MAX_COMMANDS>,
    /// The device's framed UDP port (time, messages, events), on the same address.
    pub udp_port: u16,
    /// Whether the wall clock was ever set (by `TimeSet` or a real-time clock); until then it
    /// counts from 1970-01-01 at boot.
    pub clock_synced: bool,
    /// Whether the device requires its pre-shared key: only `Hello` and the handshake work
    /// without it (`docs/PROTOCOL.md` §16). `false`: anyone who can reach the device can change
    /// it.
    pub key_required: bool,
}

/// `Discover` response: who the device is, what it runs and where to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence<'a> {
    /// Protocol version the device speaks.
    pub version: u8,
    /// The device's unique id (by default its MAC address as a 48-bit number; 0: unknown).
    pub id: u64,
    /// Device name (at most [`MAX_DEVICE_LEN`] bytes).
    #[serde(borrow)]
    pub name: &'a str,
    /// The firmware's version, as its maker writes it (at most [`MAX_FIRMWARE_LEN`] bytes).
    #[serde(borrow)]
    pub firmware: &'a str,
    /// The framed TCP port (the one peers reach, behind a port forward).
    pub tcp_port: u16,
    /// The framed UDP port (likewise).
    pub udp_port: u16,
    /// Whether the device requires its pre-shared key (as in [`Info::key_required`]).
    pub key_required: bool,
    /// The device's own IPv4 addresses (behind a port forward, not the ones peers reach).
    pub addresses: Vec<[u8; 4], MAX_ADDRESSES>,
}

/// Metadata of every error response (flags `RESPONSE | ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo<'a> {
    /// An [`crate::wire::ErrorCode`] number.
    pub code: u16,
    /// Human-readable detail (at most [`MAX_ERROR_LEN`] bytes).
    #[serde(borrow)]
    pub message: &'a str,
}

/// `Exec` request: a registered command and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest<'a> {
    /// Command name (at most [`MAX_COMMAND_LEN`] bytes).
    #[serde(borrow)]
    pub command: &'a str,
    /// Arguments (at most [`MAX_ARGS`], each at most [`MAX_ARG_LEN`] bytes).
    #[serde(borrow)]
    pub args: Vec<&'a str, MAX_ARGS>,
}

/// Last `Exec` response frame: the command's exit status. Earlier frames (flag `MORE`) carry
/// output in their bodies with empty metadata; this one may carry the last piece of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecDone {
    /// 0 for success, anything else for failure, as in a shell.
    pub status: i32,
}

/// `PutBegin` request: start an upload, or resume one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutBegin<'a> {
    /// Target file name.
    #[serde(borrow)]
    pub name: &'a str,
    /// Exact final size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: Digest,
    /// Replace an existing file of that name.
    pub overwrite: bool,
}

/// `PutBegin` response: where to start and how hard to push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutReady {
    /// Offset to send from: 0 for a new upload, the bytes already held for a resumed one.
    pub offset: u64,
    /// Largest chunk body the device takes in one `PutData`.
    pub chunk: u32,
    /// How many `PutData` frames may be in flight unacknowledged.
    pub window: u16,
}

/// `PutData` request metadata; the body is the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutData {
    /// Offset of the chunk's first byte; must equal the bytes received so far.
    pub offset: u64,
}

/// `PutData` response: acknowledges a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutAck {
    /// Bytes received so far (the next expected offset).
    pub received: u64,
}

/// `PutCommit` response (and `GetEnd`): the file as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDone {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: Digest,
}

/// A request naming one file: `Stat`, `Remove`, `PutCommit` and `PutAbort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRef<'a> {
    /// The file name.
    #[serde(borrow)]
    pub name: &'a str,
}

/// `Get` request: download a file from an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Get<'a> {
    /// The file name.
    #[serde(borrow)]
    pub name: &'a str,
    /// First byte to send (for resuming).
    pub offset: u64,
}

/// `Get` response frames with flag `MORE`: one chunk each, in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetData {
    /// Offset of the chunk's first byte.
    pub offset: u64,
}

/// `List` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    /// Index of the first entry wanted (0 for all).
    pub start: u32,
}

/// One file in a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry<'a> {
    /// File name.
    #[serde(borrow)]
    pub name: &'a str,
    /// Size in bytes.
    pub size: u64,
}

/// `List` response frame: a page of entries; all but the last page carry flag `MORE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPage<'a> {
    /// Up to [`LIST_PAGE`] entries.
    #[serde(borrow)]
    pub entries: Vec<Entry<'a>, LIST_PAGE>,
}

/// `Stat` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatInfo<'a> {
    /// File name.
    #[serde(borrow)]
    pub name: &'a str,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: Digest,
}

/// `TimeGet` request: a strftime-style format; empty means `%Y-%m-%d %H:%M:%S`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeGet<'a> {
    /// The format (at most [`MAX_FORMAT_LEN`] bytes).
    #[serde(borrow)]
    pub format: &'a str,
}

/// `TimeSet` request: the wall-clock time to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// Milliseconds since 1970-01-01T00:00:00Z, in [`TIME_MIN_MS`]`..`[`TIME_END_MS`].
    pub unix_ms: u64,
}

/// `TimeGet` and `TimeSet` response metadata: the device's wall clock now. A `TimeGet`
/// response's body is the formatted text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub unix_ms: u64,
    /// Whether the clock was ever set; `false` means it counts from 1970 since boot.
    pub synced: bool,
}

/// `Message` request and response metadata; the body is the UTF-8 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message<'a> {
    /// Sender's nickname (at most [`MAX_FROM_LEN`] bytes).
    #[serde(borrow)]
    pub from: &'a str,
}

/// `Subscribe` request: start (or stop) receiving events on this connection or UDP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// `true` to subscribe, `false` to unsubscribe.
    pub on: bool,
}

/// `FwBegin` request: start (or resume) an image upload into the slot that is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwBegin {
    /// The image's length in bytes, header included.
    pub size: u64,
    /// The image hash (the header's `hash`): names the upload, so that it can resume.
    pub hash: Digest,
}

/// `FwTest` request: mark the image in the slot that is not running to run once, on trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwTest {
    /// The image hash it must have (`None`: whatever image that slot holds).
    pub hash: Option<Digest>,
}

/// One slot in an `FwState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    /// The slot's state code (`docs/PROTOCOL.md` §18.4).
    pub state: u8,
    /// The image's major version.
    pub major: u16,
    /// The image's minor version.
    pub minor: u16,
    /// The image's patch version.
    pub patch: u16,
    /// The image's security counter.
    pub security_counter: u32,
    /// The image's length, header included.
    pub size: u32,
    /// The image hash (zeros when empty).
    pub hash: Digest,
}

/// The answer to `FwStatus`, `FwCommit`, `FwTest` and `FwConfirm`: the slots as they stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwState<'a> {
    /// The slot running now (0 or 1).
    pub running: u8,
    /// The board's id, which images must name (or name any board).
    #[serde(borrow)]
    pub board: &'a str,
    /// The lowest security counter the device accepts.
    pub floor: u32,
    /// Slot 0 and slot 1.
    pub slots: [SlotInfo; 2],
}

/// `Event` frame metadata (pushed by the device, request id 0, no `RESPONSE` flag); the body is
/// the event data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event<'a> {
    /// What happened, e.g. `led` or `message`; at most [`MAX_TOPIC_LEN`] bytes.
    #[serde(borrow)]
    pub topic: &'a str,
    /// Event sequence number, counting from 1 since boot.
    pub seq: u32,
}
