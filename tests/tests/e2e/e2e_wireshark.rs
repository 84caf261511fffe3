//! `tools/wireshark/tether.lua` decodes a real capture: a `sim --pcap` session driven by
//! `host-cli`, read back with `tshark -X lua_script:…`. The link MTU is small (1500) so that
//! every 16 KiB upload chunk spans a dozen TCP segments: the offsets are only all there when the
//! dissector reassembles frames across segments (and walks several frames per segment).
//!
//! Skipped, with a notice, where tshark is not installed (CI installs it).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tether_tests::*;

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/wireshark/tether.lua")
}

/// One decoded Tether frame: the fields the test reads, as tshark prints them.
#[derive(Debug, Default, Clone)]
struct Row {
    udp: bool,
    kind: String,
    flags: String,
    name: String,
    size: String,
    offset: String,
    received: String,
    error_code: String,
    status: String,
    udp_port: String,
    unix_ms: String,
    header_ok: String,
    payload_ok: String,
}

const FIELDS: [&str; 12] = [
    "udp.srcport",
    "tether.kind",
    "tether.flags",
    "tether.name",
    "tether.size",
    "tether.offset",
    "tether.received",
    "tether.error.code",
    "tether.status",
    "tether.udp_port",
    "tether.unix_ms",
    "tether.header_crc.ok",
];

/// tshark's `-T fields` output, one row per Tether frame (a packet with several frames has
/// comma-separated values; they are split here, field by field, in order).
fn decode(pcap: &Path) -> Vec<Row> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-X")
        .arg(format!("lua_script:{}", script().display()))
        .arg("-r")
        .arg(pcap)
        .args([
            "-Y",
            "tether",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-E",
            "occurrence=a",
        ]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    cmd.args(["-e", "tether.payload_crc.ok"]);
    let out = run_bounded(cmd, Duration::from_secs(120));
    assert!(out.status.success(), "tshark failed: {}", describe(&out));
    let err = stderr(&out);
    assert!(!err.contains("Lua Error") && !err.contains("lua_script"), "{err}");
    let mut rows = Vec::new();
    for line in stdout(&out).lines() {
        let cols: Vec<Vec<&str>> = line.split('|').map(|c| c.split(',').collect()).collect();
        let frames = cols[1].len();
        for i in 0..frames {
            let at = |c: usize| -> String {
                let v = &cols[c];
                if v.len() == frames {
                    v[i].to_string()
                } else {
                    v.first().unwrap_or(&"").to_string()
                }
            };
            rows.push(Row {
                udp: !cols[0][0].is_empty(),
                kind: at(1),
                flags: at(2),
                name: at(3),
                size: at(4),
                offset: at(5),
                received: at(6),
                error_code: at(7),
                status: at(8),
                udp_port: at(9),
                unix_ms: at(10),
                header_ok: at(11),
                payload_ok: at(12),
            });
        }
    }
    rows
}

#[test]
fn the_dissector_decodes_a_captured_session() {
    if !have("tshark") {
        eprintln!(
            "e2e: NOTICE: tshark is not installed; the Wireshark dissector test is skipped (apt-get install tshark)"
        );
        return;
    }
    let dir = TempDir::new("pcap");
    let pcap = dir.join("session.pcap");
    let mut sim = Sim::start(&["--pcap", pcap.to_str().unwrap(), "--mtu", "1500"]);
    let file = dir.join("mid.bin");
    const SIZE: usize = 200_000;
    write_random(&file, SIZE, 3);
    ok(&host_cli(&sim, &["put", file.to_str().unwrap()]));
    assert_code(&host_cli(&sim, &["stat", "nosuch.bin"]), 1);
    assert_code(&host_cli(&sim, &["exec", "fail", "3"]), 13);
    // UDP on the advertised port: no --udp-port.
    let mut cmd = Command::new(host_cli_bin());
    cmd.args(["--to", &sim.to(), "time", "set"])
        .env_remove("TETHER_UDP_PORT");
    ok(&run_bounded(cmd, HOST_CLI_LIMIT));
    let status = sim.interrupt(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "sim did not stop: {}", sim.log());

    let rows = decode(&pcap);
    assert!(rows.len() > 20, "too few frames decoded: {rows:?}");
    for r in &rows {
        assert_eq!(
            (r.header_ok.as_str(), r.payload_ok.as_str()),
            ("1", "1"),
            "a CRC check failed: {r:?}"
        );
    }
    let req = |kind: &'static str| rows.iter().filter(move |r| r.kind == kind && r.flags == "0x00");
    let resp = |kind: &'static str| rows.iter().filter(move |r| r.kind == kind && r.flags != "0x00");

    // hello: the advertised UDP port is the one host-cli must use.
    assert!(
        resp("0x01").any(|r| r.udp_port == sim.udp_port.to_string()),
        "no hello advertising UDP port {}: {rows:?}",
        sim.udp_port
    );
    // put-begin: name and size.
    let begin = req("0x10").next().expect("a put-begin");
    assert_eq!((begin.name.as_str(), begin.size.as_str()), ("mid.bin", "200000"));
    // put-data: every chunk's offset, in order, from 0 — reassembled across segments.
    let offsets: Vec<u64> = req("0x11").map(|r| r.offset.parse().expect("an offset")).collect();
    assert!(offsets.len() >= SIZE / 16_384, "chunks missing: {offsets:?}");
    assert_eq!(offsets[0], 0);
    assert!(offsets.windows(2).all(|w| w[1] > w[0]), "{offsets:?}");
    let step = offsets[1] - offsets[0];
    assert!(offsets.windows(2).all(|w| w[1] - w[0] == step), "{offsets:?}");
    assert!(
        resp("0x11").any(|r| r.received == SIZE.to_string()),
        "no ack of the whole file"
    );
    assert!(
        resp("0x12").any(|r| r.size == SIZE.to_string()),
        "no commit answer with the size"
    );
    // stat of a missing file: error code 6 (not found), on an error response.
    assert!(
        resp("0x16").any(|r| r.error_code == "6" && r.flags == "0x05"),
        "no not-found error: {rows:?}"
    );
    // exec: the command and its final status.
    assert!(resp("0x04").any(|r| r.status == "3"), "no exec status 3: {rows:?}");
    // time-set over UDP, request and response.
    let udp_time: Vec<&Row> = rows.iter().filter(|r| r.kind == "0x21").collect();
    assert!(
        udp_time.len() >= 2 && udp_time.iter().all(|r| r.udp && !r.unix_ms.is_empty()),
        "{udp_time:?}"
    );
}

/// A pcap (Ethernet) holding one UDP datagram per payload, 127.0.0.1:40000 -> 127.0.0.1:7071.
fn udp_pcap(path: &Path, payloads: &[Vec<u8>]) {
    let mut out = Vec::new();
    // Global header: magic, v2.4, zone 0, sigfigs 0, snaplen, linktype 1 (Ethernet).
    for v in [0xa1b2_c3d4u32.to_le_bytes().to_vec(), vec![2, 0, 4, 0], vec![0; 8]] {
        out.extend(v);
    }
    out.extend(65_535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    for (i, payload) in payloads.iter().enumerate() {
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let mut pkt = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        pkt.extend([0x45, 0]);
        pkt.extend((ip_len as u16).to_be_bytes());
        pkt.extend([0, 1, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        pkt.extend(40_000u16.to_be_bytes());
        pkt.extend(7071u16.to_be_bytes());
        pkt.extend((udp_len as u16).to_be_bytes());
        pkt.extend([0, 0]); // no UDP checksum
        pkt.extend(payload);
        out.extend((i as u32 + 1).to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((pkt.len() as u32).to_le_bytes());
        out.extend((pkt.len() as u32).to_le_bytes());
        out.extend(pkt);
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn the_dissector_flags_damaged_frames_and_padding() {
    use tether_core::codec::encode;
    use tether_core::msg;
    use tether_core::wire::{FrameSpec, Kind};
    if !have("tshark") {
        eprintln!(
            "e2e: NOTICE: tshark is not installed; the Wireshark dissector test is skipped (apt-get install tshark)"
        );
        return;
    }
    let mut frame = vec![0u8; 256];
    let n = encode(
        &mut frame,
        FrameSpec::request(Kind::Message, 7),
        &msg::Message { from: "alice" },
        b"hi there",
    )
    .unwrap();
    frame.truncate(n);
    let good = frame.clone();
    let mut bad_body = frame.clone();
    *bad_body.last_mut().unwrap() ^= 0x01; // payload CRC no longer matches
    let mut bad_header = frame.clone();
    bad_header[8] ^= 0x01; // request id changed: header CRC no longer matches
    let mut padded = frame.clone();
    padded.extend([0u8; 40]); // zero padding after the frame (amplification guard)
    let dir = TempDir::new("crafted");
    let pcap = dir.join("crafted.pcap");
    udp_pcap(&pcap, &[good, bad_body, bad_header, padded]);
    let mut cmd = Command::new("tshark");
    cmd.arg("-X")
        .arg(format!("lua_script:{}", script().display()))
        .arg("-r")
        .arg(&pcap)
        .args(["-T", "fields", "-E", "separator=|"]);
    for f in [
        "tether.kind",
        "tether.request_id",
        "tether.from",
        "tether.text",
        "tether.header_crc.ok",
        "tether.payload_crc.ok",
        "tether.padding",
        "_ws.expert.message",
    ] {
        cmd.args(["-e", f]);
    }
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{}", describe(&out));
    let rows: Vec<Vec<String>> = stdout(&out)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 4, "{}", stdout(&out));
    let (ok, body, header, pad) = (&rows[0], &rows[1], &rows[2], &rows[3]);
    assert_eq!(&ok[..6], ["0x30", "7", "alice", "hi there", "1", "1"], "{ok:?}");
    assert_eq!((body[4].as_str(), body[5].as_str()), ("1", "0"), "{body:?}");
    assert!(body[7].contains("Payload CRC mismatch"), "{body:?}");
    assert_eq!((header[1].as_str(), header[4].as_str()), ("6", "0"), "{header:?}");
    assert!(header[7].contains("Header CRC mismatch"), "{header:?}");
    assert_eq!((pad[4].as_str(), pad[5].as_str()), ("1", "1"), "{pad:?}");
    assert!(!pad[6].is_empty(), "the padding is not shown: {pad:?}");
}
