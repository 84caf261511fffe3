//! mDNS / DNS-SD: `sim --tap` announces `_tether._tcp` and `_tether._udp`, and a real resolver
//! (`mdns-sd`, in `host-cli discover`) inside a private network namespace finds it, with the same
//! facts as the `Discover` probe gets. Multicast on loopback does not carry mDNS well, so this
//! runs on TAP, with the kernel's stack as the resolver's; root and `ip` only. Every address lives
//! inside the namespace the test creates and always deletes.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tether_tests::netns::{tap_namespace, Netns, TAP_DEVICE};
use tether_tests::*;

/// `host-cli --json --timeout 2s discover ARGS` inside `ns`: its device objects (the result line
/// dropped).
fn discover(ns: &Netns, args: &[&str]) -> (Output, Vec<Value>) {
    let mut a = vec!["--json", "--timeout", "2s", "discover"];
    a.extend_from_slice(args);
    let out = run_bounded(ns.cmd(&host_cli_bin(), &a), HOST_CLI_LIMIT);
    let mut lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    lines.pop();
    (out, lines)
}

#[test]
fn a_tap_device_is_found_by_mdns_with_the_facts_of_its_probe_answer() {
    let Some(ns) = tap_namespace("mDNS test", "mdns", "10.77.0.1/24", &[]) else {
        return;
    };
    let dir = TempDir::new("mdns");
    let key = dir.join("device.key");
    ok(&run_bounded(
        {
            let mut c = std::process::Command::new(host_cli_bin());
            c.args(["keygen", key.to_str().expect("UTF-8")]);
            c
        },
        HOST_CLI_LIMIT,
    ));
    let mut args = TAP_DEVICE.to_vec();
    args.extend(["--key-file", key.to_str().expect("UTF-8")]);
    let mut sim = Proc::spawn(ns.cmd(&sim_bin(), &args));
    // Up once the probe finds it; that answer is what mDNS must agree with.
    let probed = poll_until(Duration::from_secs(20), Duration::from_millis(200), || {
        if sim.finished() {
            return Some(None);
        }
        let (out, found) = discover(&ns, &["--no-mdns", "10.77.0.2"]);
        out.status.success().then_some(Some(found))
    })
    .flatten()
    .unwrap_or_else(|| panic!("sim on TAP never answered a probe"));
    assert_eq!(probed.len(), 1, "{probed:?}");
    let probe = &probed[0];
    assert_eq!(probe["found_by"], serde_json::json!(["probe"]));

    // mDNS alone: WHERE is an address nobody has, so only the resolver can find the device.
    let (out, found) = discover(&ns, &["--mdns", "10.77.0.9"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(found.len(), 1, "{}", describe(&out));
    let heard = &found[0];
    assert_eq!(heard["found_by"], serde_json::json!(["mdns"]), "{heard}");
    for field in [
        "name",
        "id",
        "address",
        "tcp_port",
        "udp_port",
        "protocol",
        "firmware",
        "key_required",
    ] {
        assert_eq!(heard[field], probe[field], "{field}: mDNS {heard} vs probe {probe}");
    }
    assert_eq!(heard["key_required"], true);
    assert_eq!(heard["address"], "10.77.0.2");

    // Both ways at once (a broadcast scope browses by default): one device, found both ways.
    let (out, found) = discover(&ns, &["10.77.0.0/24"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(found.len(), 1, "merged by id: {}", describe(&out));
    let by = found[0]["found_by"].as_array().expect("found_by");
    assert!(
        by.contains(&"broadcast".into()) && by.contains(&"mdns".into()),
        "{}",
        found[0]
    );

    // --no-mdns turns the resolver off: nothing at the address nobody has.
    let (out, _) = discover(&ns, &["--no-mdns", "10.77.0.9"]);
    assert_code(&out, 3);

    assert!(interrupt(sim.id()));
    let out = sim
        .wait_for(Duration::from_secs(10))
        .expect("sim did not stop on SIGINT");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains("mdns         announces _tether._tcp and _tether._udp"),
        "{}",
        describe(&out)
    );
}

/// The device's unsolicited announcements, seen by a peer on the virtual switch listening on
/// 224.0.0.251:5353: two, about a second apart, once it has an address, and two more at its new
/// address when the address changes (as a DHCP renewal would change it); then a legacy one-shot
/// query behind three malformed ones, the query answered to its own port, the others not at all.
#[test]
fn a_device_announces_twice_at_each_address() {
    use smoltcp::iface::{Config, Interface, SocketSet};
    use smoltcp::socket::udp;
    use smoltcp::wire::{HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};
    use tether_core::server::ServerConfig;
    use tether_sim::inproc::ram_store;
    use tether_sim::link::{Faults, Link};
    use tether_sim::node::{mac_for, Node, Sizes};

    let epoch = std::time::Instant::now();
    let now = || smoltcp::time::Instant::from_micros(epoch.elapsed().as_micros() as i64);
    let link = Link::switch(Faults::default(), 3);
    let device_ip = |last| IpCidr::Ipv4(Ipv4Cidr::new(Ipv4Address::new(169, 254, 70, last), 16));
    let sizes = Sizes {
        socket_buffer: 4096,
        plain_clients: 0,
    };
    let mut node = Node::named(
        "board-7",
        link.port(0),
        device_ip(2),
        None,
        &ServerConfig::default(),
        sizes,
        ram_store(4096),
        now(),
    );
    node.use_mdns("test-board");
    // The listener: another station on the switch, in the group, on the mDNS port.
    let mut phy = link.port(1);
    let me = Ipv4Address::new(169, 254, 70, 1);
    let mut iface = Interface::new(Config::new(HardwareAddress::Ethernet(mac_for(me))), &mut phy, now());
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::Ipv4(Ipv4Cidr::new(me, 16)));
    });
    iface
        .join_multicast_group(tether_core::mdns::GROUP)
        .expect("join the group");
    let buf = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16 * 1024]);
    let mut socket = udp::Socket::new(buf(), buf());
    socket.bind(tether_core::mdns::PORT).expect("bind 5353");
    let mut sockets = SocketSet::new(Vec::new());
    let handle = sockets.add(socket);
    // A one-shot ("legacy") resolver: queries from a port of its own, answered to it directly.
    let mut asker = udp::Socket::new(buf(), buf());
    asker.bind(40_000).expect("bind 40000");
    let asker = sockets.add(asker);

    let mut heard: Vec<(Duration, Vec<u8>)> = Vec::new();
    let mut listen = |node: &mut Node<tether_sim::link::Port>, until: Duration| {
        let start = std::time::Instant::now();
        let mut got = Vec::new();
        while start.elapsed() < until {
            node.poll(now());
            iface.poll(now(), &mut phy, &mut sockets);
            while let Ok((data, meta)) = sockets.get_mut::<udp::Socket>(handle).recv() {
                assert_eq!(meta.endpoint.port, 5353, "announcements come from port 5353");
                got.push((epoch.elapsed(), data.to_vec()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        got
    };
    heard.extend(listen(&mut node, Duration::from_millis(2_500)));
    let contains = |m: &[u8], what: &[u8]| m.windows(what.len()).any(|w| w == what);
    let check = |batch: &[(Duration, Vec<u8>)], address: [u8; 4]| {
        assert_eq!(batch.len(), 2, "two announcements: {}", batch.len());
        let gap = batch[1].0 - batch[0].0;
        assert!(gap >= Duration::from_millis(900), "a second apart: {gap:?}");
        for (_, m) in batch {
            // A response (QR set), with the service type, the TXT keys and the address.
            assert!(m.len() > 12 && m[2] & 0x80 != 0, "a response");
            for part in [
                &b"_tether"[..],
                b"\x04_tcp",
                b"\x04_udp",
                b"board=test-board",
                b"key=0",
                b"name=board-7",
            ] {
                assert!(
                    contains(m, part),
                    "{:?} missing in the announcement",
                    String::from_utf8_lossy(part)
                );
            }
            assert!(contains(m, &address), "address {address:?} missing");
        }
    };
    check(&heard, [169, 254, 70, 2]);
    // The address changes: announced again, at the new one.
    node.iface.update_ip_addrs(|a| {
        a.clear();
        let _ = a.push(device_ip(3));
    });
    let again = listen(&mut node, Duration::from_millis(2_500));
    check(&again, [169, 254, 70, 3]);

    // A legacy query for the PTR records of `_tether._udp.local` (RFC 6762 §6.7): the answer
    // comes back to the asking port with the query's id and question, and names the instance.
    let mut query = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["_tether", "_udp", "local"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 12, 0, 1]);
    let to = smoltcp::wire::IpEndpoint::new(tether_core::mdns::GROUP.into(), tether_core::mdns::PORT);
    // Garbage first (a truncated header, a query cut inside its name, random bytes): dropped
    // without an answer, and the responder goes on.
    let mut dice = tether_sim::link::Dice::new(18);
    let noise: Vec<u8> = (0..300).map(|_| dice.random() as u8).collect();
    for junk in [&query[..5], &query[..15], &noise[..]] {
        sockets
            .get_mut::<udp::Socket>(asker)
            .send_slice(junk, to)
            .expect("queue the junk");
    }
    sockets
        .get_mut::<udp::Socket>(asker)
        .send_slice(&query, to)
        .expect("queue the query");
    let start = std::time::Instant::now();
    let mut answer = None;
    while answer.is_none() && start.elapsed() < Duration::from_secs(5) {
        iface.poll(now(), &mut phy, &mut sockets);
        node.poll(now());
        iface.poll(now(), &mut phy, &mut sockets);
        if let Ok((data, meta)) = sockets.get_mut::<udp::Socket>(asker).recv() {
            assert_eq!(meta.endpoint.port, 5353);
            answer = Some(data.to_vec());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let answer = answer.expect("an answer to the legacy query");
    let quiet = std::time::Instant::now();
    while quiet.elapsed() < Duration::from_millis(300) {
        node.poll(now());
        iface.poll(now(), &mut phy, &mut sockets);
        assert!(
            sockets.get_mut::<udp::Socket>(asker).recv().is_err(),
            "one answer only: the malformed queries get none"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(&answer[..2], &[0x12, 0x34], "the query's id");
    assert!(answer[2] & 0x80 != 0, "a response");
    assert_eq!(&answer[4..6], &[0, 1], "the question repeated");
    let instance = {
        // NAME-XXXXXX: the last three bytes of the id (the MAC address).
        let mut name = b"board-7-".to_vec();
        let id = node.server.device.id();
        name.extend_from_slice(format!("{:06x}", id & 0xff_ffff).as_bytes());
        name
    };
    assert!(contains(&answer, &instance), "the instance in {answer:?}");
}
