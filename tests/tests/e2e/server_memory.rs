//! Static memory of the device-side types, so that growth is noticed.
//!
//! Run with `--nocapture` to see the figures.

use std::mem::size_of;

use tether_core::codec::Decoder;
use tether_core::server::{Server, COMMAND_SOCKETS, DATAGRAM_MAX, ECHO_SOCKETS};
use tether_core::service::ramstore::RamStore;
use tether_core::service::{Conn, Device};

/// A small device: 2 KiB frames, 4 sessions, 16 file entries.
type Store = RamStore<'static, 16>;
type SmallServer<const N: usize, const SESSIONS: usize> = Server<'static, (), Store, N, SESSIONS>;

#[test]
fn memory_footprint_of_the_server_types() {
    let decoder = size_of::<Decoder<2048>>();
    let conn = size_of::<Conn>();
    let store = size_of::<Store>();
    let device = size_of::<Device<'static, (), Store>>();
    let server = size_of::<SmallServer<2048, 4>>();
    // What one more session costs, and what one more byte of frame costs per session.
    let session = (size_of::<SmallServer<2048, 4>>() - size_of::<SmallServer<2048, 1>>()) / 3;
    let per_frame_byte = (size_of::<SmallServer<4096, 4>>() - server) as f64 / (4.0 * 2048.0);
    let fixed = server - 4 * session;
    let sim_server = size_of::<tether_sim::device::SimServer>();
    let sim_conn = size_of::<tether_sim::inproc::Conn>();
    println!("Decoder<2048>                                   {decoder:>7} bytes");
    println!("service::Conn (per-connection service state)    {conn:>7} bytes");
    println!("RamStore<16> (file table)                       {store:>7} bytes");
    println!("Device<(), RamStore<16>>                        {device:>7} bytes");
    println!("Server<(), RamStore<16>, 2048, 4>               {server:>7} bytes");
    println!("  per session                                   {session:>7} bytes");
    println!("  fixed (device, UDP scratch, subscribers, ...) {fixed:>7} bytes");
    println!("  bytes per session per frame byte              {per_frame_byte:>7}");
    println!("SimServer (16 KiB frames, 4 sessions, 64 files) {sim_server:>7} bytes");
    println!("inproc::Conn                                    {sim_conn:>7} bytes");

    // The decoder is its buffer, a few counters and at most a couple of cached headers.
    assert!(
        (2048..=2048 + 128).contains(&decoder),
        "Decoder<2048> is {decoder} bytes"
    );
    // A connection's service state: an upload (name, digest, SHA-256 state) and a stream
    // position with up to EXEC_META_MAX bytes of exec arguments.
    assert!(conn <= 768, "service::Conn is {conn} bytes");
    // A session is its decoder, a staged-response buffer of N bytes, its service state and, with
    // secure sessions, its channel (sealed frames are opened in the decoder's buffer: no third
    // N-byte buffer).
    let channel = std::mem::size_of::<tether_core::secure::Channel>();
    println!("  of which the secure channel                     {channel:>7} bytes");
    assert_eq!(per_frame_byte, 2.0, "a session holds exactly two N-byte buffers");
    // Plus its own copy of the session rules (`Limits`, 48 bytes: the engine owns its policy),
    // the handshake it answered last, kept for a repeat on a line (message 1 and message 2,
    // PROTOCOL.md §16.3), and about 128 bytes of timers and counters.
    let limits = std::mem::size_of::<tether_core::session::Limits>();
    let flight = tether_core::secure::MSG1_LEN + tether_core::secure::MSG2_LEN + 8;
    assert!(
        session <= decoder + 2048 + conn + channel + limits + flight + 128,
        "a session is {session} bytes"
    );
    // The device is its file table plus a little.
    // With secure sessions, the device also holds its key and the ephemeral-key generator.
    let lock = std::mem::size_of::<Option<tether_core::secure::Lock>>();
    println!("  of which the key and its generator (Lock)       {lock:>7} bytes");
    // With the firmware update service, its state (settings, running image, an upload's hash).
    let update = tether_core::service::update::STATE_LEN;
    println!("  of which the update service                     {update:>7} bytes");
    assert!(update <= 320, "the update service keeps {update} bytes");
    assert!(
        device <= store + 512 + lock + update,
        "Device is {device} bytes, its store {store}"
    );
    // Four sessions, the device, the UDP scratch buffer, the plain services' socket pools
    // (ECHO_SOCKETS + 2 x COMMAND_SOCKETS slots of under 64 bytes) and small change.
    let plain = 64 * (ECHO_SOCKETS + 2 * COMMAND_SOCKETS);
    println!("  of which plain-socket pools, at most            {plain:>7} bytes");
    assert!(
        fixed <= device + DATAGRAM_MAX + plain + 256,
        "fixed part is {fixed} bytes"
    );
    assert!(
        server <= 4 * (decoder + 2048 + conn + channel) + device + DATAGRAM_MAX + plain + 1024,
        "Server<(), RamStore<16>, 2048, 4> is {server} bytes"
    );
    // And in absolute terms: 4 x 2 x 2 KiB of frame buffers plus under 10 KiB for everything
    // else (secure sessions included: 4 channels, the device's key and generator and its memory
    // of the last messages 1; each session's own Limits and the handshake it answered last).
    assert!(
        server <= 4 * 2 * 2048 + 10 * 1024,
        "Server<(), RamStore<16>, 2048, 4> is {server} bytes"
    );
    // The client side of the in-process stack is a handle.
    assert!(sim_conn <= 64, "inproc::Conn is {sim_conn} bytes");
}
