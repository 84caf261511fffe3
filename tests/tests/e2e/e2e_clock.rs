//! The real `sim` binary's clock: read from the PC's UTC clock at boot (and after a reboot),
//! as a board reads its RTC; with `--no-rtc` it starts at 1970 and says it was never set —
//! in `Info` over TCP and in every `Time` over UDP.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tether_core::msg;
use tether_core::wire::Kind;
use tether_host::net::{connect, UdpClient};
use tether_tests::{poll_until, Sim};

const TIMEOUT: Duration = Duration::from_secs(5);

fn pc_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// `Info.clock_synced` over TCP.
fn info_synced(sim: &Sim) -> bool {
    connect(&sim.to(), TIMEOUT)
        .unwrap()
        .hello("e2e-clock")
        .unwrap()
        .clock_synced
}

/// A `TimeGet "%Y"` over UDP (the client pads it): the year text and the `Time` metadata.
fn udp_time(sim: &Sim) -> (String, msg::Time) {
    let mut udp = UdpClient::new(&format!("127.0.0.1:{}", sim.udp_port), TIMEOUT).unwrap();
    let d = udp.call(Kind::TimeGet, &msg::TimeGet { format: "%Y" }, &[], 3).unwrap();
    let time = tether_core::wire::Frame {
        header: tether_core::wire::Header {
            version: 1,
            kind: d.kind,
            flags: tether_core::wire::Flags::RESPONSE,
            request_id: 0,
            meta_len: d.meta.len() as u16,
            body_len: d.body.len() as u32,
            payload_crc: 0,
        },
        meta: &d.meta,
        body: &d.body,
    }
    .meta::<msg::Time>()
    .unwrap();
    (String::from_utf8(d.body).unwrap(), time)
}

/// A datagram to the plain UDP time port (no framing, no padding needed) and its answer.
fn plain_time(sim: &Sim, format: &[u8]) -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 512];
    for _ in 0..5 {
        socket.send_to(format, ("127.0.0.1", sim.plain_udp_port)).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    panic!("no answer from the plain time port");
}

fn assert_near_pc(t: &msg::Time) {
    let now = pc_ms();
    assert!(t.synced, "{t:?}");
    assert!(t.unix_ms.abs_diff(now) < 60_000, "device {} ms, PC {now} ms", t.unix_ms);
}

#[test]
fn sim_reads_its_clock_from_the_pc_at_boot_and_after_a_reboot() {
    let sim = Sim::start(&[]);
    assert!(info_synced(&sim), "Info.clock_synced");
    let (year, t) = udp_time(&sim);
    assert_near_pc(&t);
    assert!(year.starts_with("20"), "{year}");
    // The tutorial-style plain time port reads the same clock: not 1970.
    assert_eq!(plain_time(&sim, b"%Y"), year);

    // A reboot resets the device; its RTC is read again.
    let mut c = connect(&sim.to(), TIMEOUT).unwrap();
    let _ = c.exec("reboot", &[], |_| {});
    drop(c);
    let back = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let mut c = connect(&sim.to(), TIMEOUT).ok()?;
        let info = c.hello("e2e-clock").ok()?;
        (info.uptime_ms < 5_000).then_some(info)
    })
    .expect("the device back after its reboot");
    assert!(back.clock_synced, "synced again after the reboot");
    assert_near_pc(&udp_time(&sim).1);
}

#[test]
fn sim_without_rtc_starts_in_1970_and_says_so_until_set() {
    let sim = Sim::start(&["--no-rtc"]);
    assert!(!info_synced(&sim), "Info.clock_synced with --no-rtc");
    let (year, t) = udp_time(&sim);
    assert_eq!(year, "1970");
    assert_eq!(plain_time(&sim, b"%Y"), "1970");
    assert!(!t.synced && t.unix_ms < 3_600_000, "{t:?}");
    // Set by a host, the clock is real and says so everywhere.
    let set = connect(&sim.to(), TIMEOUT).unwrap().set_time(pc_ms()).unwrap();
    assert!(set.abs_diff(pc_ms()) < 60_000);
    assert!(info_synced(&sim));
    assert_near_pc(&udp_time(&sim).1);
}
