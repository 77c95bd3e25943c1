//! boots' DHCP server against real clients, in network namespaces this test creates:
//! busybox `udhcpc` gets the reserved address and options, an unknown MAC gets nothing, proxy
//! mode gives boot information without an address, a relayed DISCOVER is answered by unicast to
//! the relay, and `perfdhcp` completes DORA exchanges.
//!
//! Needs root, `ip`, busybox and perfdhcp (scripts/install-deps.sh). Without them the tests
//! fail when CI is set and are skipped (with a message) otherwise.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dhcproto::v4::{
    Architecture, DhcpOption, Message, MessageType, Opcode, OptionCode,
    relay::{RelayAgentInformation, RelayInfo},
};
use dhcproto::{Decodable, Decoder, Encodable};
use tinkerbell_boots::dhcp::{self, DhcpMetrics, DhcpServer, Mode, Reason};
use tinkerbell_core::model::{
    ClasslessStaticRoute, Dhcp, Hardware, HardwareSpec, Interface, Ip, Netboot,
};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Object, Store};
use tinkerbell_core::testing::{have_peers, sh};
use tokio_util::sync::CancellationToken;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Two namespaces joined by a veth: `srv` (boots, 10.77.0.1/24 on bs0) and `cli` (bc0).
/// Deleted on drop, also when the test fails.
struct Lab {
    srv: String,
    cli: String,
}

impl Lab {
    fn new(client_mac: &str) -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("bts{}-{n}", std::process::id());
        let lab = Lab {
            srv: format!("{base}-s"),
            cli: format!("{base}-c"),
        };
        sh(&["ip", "netns", "add", &lab.srv]);
        sh(&["ip", "netns", "add", &lab.cli]);
        sh(&[
            "ip", "-n", &lab.srv, "link", "add", "bs0", "type", "veth", "peer", "name", "bc0",
            "netns", &lab.cli,
        ]);
        sh(&[
            "ip",
            "-n",
            &lab.srv,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            "bs0",
        ]);
        sh(&[
            "ip", "-n", &lab.cli, "link", "set", "bc0", "address", client_mac,
        ]);
        for (ns, dev) in [(&lab.srv, "bs0"), (&lab.cli, "bc0")] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn client_addr(&self, cidr: &str) {
        sh(&["ip", "-n", &self.cli, "addr", "add", cidr, "dev", "bc0"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.srv])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.cli])
            .status();
    }
}

/// Run `f` on a thread that has entered namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread")
}

fn hardware(name: &str, mac: &str, ip: &str, allow_pxe: bool) -> Hardware {
    let mut h = Hardware::new(
        name,
        HardwareSpec {
            interfaces: Some(vec![Interface {
                dhcp: Some(Dhcp {
                    mac: Some(mac.into()),
                    hostname: Some(name.into()),
                    domain_name: Some("lab.example".into()),
                    lease_time: Some(3600),
                    name_servers: Some(vec!["10.77.0.53".into()]),
                    time_servers: Some(vec!["10.77.0.123".into()]),
                    ip: Some(Ip {
                        address: Some(ip.into()),
                        netmask: Some("255.255.255.0".into()),
                        gateway: Some("10.77.0.1".into()),
                        family: Some(4),
                    }),
                    classless_static_routes: Some(vec![ClasslessStaticRoute {
                        destination_descriptor: Some("172.16.0.0/12".into()),
                        router: Some("10.77.0.254".into()),
                    }]),
                    ..Dhcp::default()
                }),
                netboot: Some(Netboot {
                    allow_pxe: Some(allow_pxe),
                    ..Netboot::default()
                }),
                ..Interface::default()
            }]),
            ..HardwareSpec::default()
        },
    );
    h.metadata.namespace = Some("default".into());
    h
}

/// boots' DHCP server on a thread inside the server namespace.
struct Server {
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    metrics: Arc<DhcpMetrics>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(ns: &str, cfg: dhcp::Config, hw: Vec<Hardware>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let cancel = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = format!("/run/netns/{ns}");
        let c = cancel.clone();
        let thread = std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                for h in hw {
                    store.create(Object::Hardware(Arc::new(h))).await.unwrap();
                }
                let server = DhcpServer::start(&cfg, Arc::new(store), None, c.clone())
                    .await
                    .unwrap();
                tx.send(server.metrics()).unwrap();
                server.join().await.unwrap();
            });
        });
        let metrics = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server start");
        Server {
            cancel,
            thread: Some(thread),
            metrics,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// busybox udhcpc once; the `bound` environment it saw, or `None` when it got no lease.
fn udhcpc(ns: &str, tries: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let script = dir.path().join("script.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && env > {}\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    sh(&["chmod", "+x", &script.display().to_string()]);
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "/usr/bin/busybox",
            "udhcpc",
            "-i",
            "bc0",
            "-f",
            "-q",
            "-n",
        ])
        .args(["-t", tries, "-T", "1", "-s", &script.display().to_string()])
        .args([
            "-O",
            "hostname",
            "-O",
            "domain",
            "-O",
            "ntpsrv",
            "-O",
            "staticroutes",
            "-O",
            "search",
        ])
        .output()
        .expect("udhcpc");
    if !status.status.success() {
        return None;
    }
    let env = std::fs::read_to_string(&out).ok()?;
    Some(
        env.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

const MAC: &str = "02:00:00:aa:00:01";
const MAC_BYTES: [u8; 6] = [2, 0, 0, 0xaa, 0, 1];

#[test]
fn udhcpc_gets_the_reservation_and_unknown_macs_get_nothing() {
    if !have_peers(&["/usr/bin/busybox", "/usr/sbin/ip"]) {
        return;
    }
    let lab = Lab::new(MAC);
    let server = Server::start(
        &lab.srv,
        dhcp::Config::default(),
        vec![hardware("node1", MAC, "10.77.0.50", true)],
    );
    let env = udhcpc(&lab.cli, "5").expect("udhcpc got no lease");
    let get = |k: &str| env.get(k).map(String::as_str);
    assert_eq!(get("ip"), Some("10.77.0.50"));
    assert_eq!(get("subnet"), Some("255.255.255.0"));
    assert_eq!(get("router"), Some("10.77.0.1"));
    assert_eq!(get("dns"), Some("10.77.0.53"));
    assert_eq!(get("hostname"), Some("node1"));
    assert_eq!(get("domain"), Some("lab.example"));
    assert_eq!(get("lease"), Some("3600"));
    assert_eq!(get("serverid"), Some("10.77.0.1"));
    assert_eq!(get("ntpsrv"), Some("10.77.0.123"));
    assert_eq!(get("broadcast"), Some("10.77.0.255"));
    assert_eq!(get("staticroutes"), Some("172.16.0.0/12 10.77.0.254"));
    assert_eq!(get("search"), Some("lab.example"));
    assert!(server.metrics.sent_count(MessageType::Offer) >= 1);
    assert!(server.metrics.sent_count(MessageType::Ack) >= 1);

    // Same wire, a MAC no Hardware holds: silence.
    sh(&["ip", "-n", &lab.cli, "addr", "flush", "dev", "bc0"]);
    sh(&[
        "ip",
        "-n",
        &lab.cli,
        "link",
        "set",
        "bc0",
        "address",
        "02:00:00:bb:00:09",
    ]);
    assert_eq!(udhcpc(&lab.cli, "2"), None, "an unknown MAC got a lease");
    assert!(server.metrics.silent_count(Reason::UnknownMac) >= 1);
}

fn discover(mac: &[u8; 6], giaddr: Ipv4Addr, extra: Vec<DhcpOption>) -> Vec<u8> {
    let mut m = Message::new_with_id(
        0xb007,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        giaddr,
        mac,
    );
    m.set_opcode(Opcode::BootRequest);
    if !giaddr.is_unspecified() {
        m.set_hops(1);
    }
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    for o in extra {
        m.opts_mut().insert(o);
    }
    m.to_vec().unwrap()
}

/// Send `packet` from `bind` to `to` and wait for one reply addressed to `bind`'s port.
fn exchange(
    ns: &str,
    bind: SocketAddrV4,
    to: SocketAddrV4,
    packet: Vec<u8>,
) -> Option<(Message, SocketAddr)> {
    in_ns(ns, move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        s.set_broadcast(true).unwrap();
        s.bind_device(Some(b"bc0")).unwrap();
        s.bind(&SocketAddr::V4(bind).into()).unwrap();
        let s: UdpSocket = s.into();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            s.send_to(&packet, to).unwrap();
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let m = Message::decode(&mut Decoder::new(&buf[..n])).unwrap();
                if m.opcode() == Opcode::BootReply && m.xid() == 0xb007 {
                    return Some((m, from));
                }
            }
        }
        None
    })
}

/// A lab whose client side is a relay at 10.77.0.2, and a reservation server with `node1`.
fn relay_lab(client_mac: &str) -> (Lab, Server) {
    let lab = Lab::new(client_mac);
    lab.client_addr("10.77.0.2/24");
    let node1 = hardware("node1", MAC, "10.77.0.50", true);
    let server = Server::start(&lab.srv, dhcp::Config::default(), vec![node1]);
    (lab, server)
}

#[test]
fn relayed_discover_is_answered_by_unicast_to_the_relay() {
    if !have_peers(&["/usr/sbin/ip"]) {
        return;
    }
    let (lab, _server) = relay_lab("02:00:00:cc:00:02");
    let relay = Ipv4Addr::new(10, 77, 0, 2);
    let mut info = RelayAgentInformation::default();
    info.insert(RelayInfo::AgentCircuitId(b"rack1-port7".to_vec()));
    let pkt = discover(
        &MAC_BYTES,
        relay,
        vec![DhcpOption::RelayAgentInformation(info.clone())],
    );
    let (reply, from) = exchange(
        &lab.cli,
        SocketAddrV4::new(relay, 67),
        SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), 67),
        pkt,
    )
    .expect("no reply at the relay");
    assert_eq!(from, SocketAddr::from(([10, 77, 0, 1], 67)));
    assert_eq!(reply.yiaddr(), Ipv4Addr::new(10, 77, 0, 50));
    assert_eq!(reply.giaddr(), relay);
    assert_eq!(reply.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(
        reply.opts().get(OptionCode::RelayAgentInformation),
        Some(&DhcpOption::RelayAgentInformation(info))
    );
}

#[test]
fn proxy_mode_gives_boot_information_without_an_address() {
    if !have_peers(&["/usr/sbin/ip"]) {
        return;
    }
    let lab = Lab::new(MAC);
    // The client already has an address from "another" DHCP server.
    lab.client_addr("10.77.0.50/24");
    let _server = Server::start(
        &lab.srv,
        dhcp::Config {
            mode: Mode::Proxy,
            ..dhcp::Config::default()
        },
        vec![hardware("node1", MAC, "10.77.0.50", true)],
    );
    let pxe = vec![
        DhcpOption::ClassIdentifier(b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
        DhcpOption::ClientSystemArchitecture(Architecture::X64),
        DhcpOption::ClientNetworkInterface(1, 3, 16),
    ];
    let (reply, _) = exchange(
        &lab.cli,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 67),
        discover(&MAC_BYTES, Ipv4Addr::UNSPECIFIED, pxe),
    )
    .expect("no proxyDHCP offer");
    assert_eq!(reply.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(reply.siaddr(), Ipv4Addr::new(10, 77, 0, 1));
    // dhcproto's decoder keeps the field's terminating NUL.
    assert_eq!(
        reply
            .fname_str()
            .and_then(Result::ok)
            .map(|f| f.trim_end_matches('\0')),
        Some("ipxe.efi")
    );
    assert_eq!(
        reply.opts().get(OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
    );
    assert!(!reply.opts().contains(OptionCode::SubnetMask));
}

#[test]
fn perfdhcp_completes_dora_exchanges() {
    if !have_peers(&["/usr/sbin/ip", "/usr/sbin/perfdhcp"]) {
        return;
    }
    let lab = Lab::new("02:00:00:dd:00:02");
    lab.client_addr("10.77.0.2/24");
    let mut hw = Vec::new();
    let mut macs = String::new();
    for i in 0..200u32 {
        let mac = format!("02:10:00:00:{:02x}:{:02x}", i >> 8, i & 0xff);
        hw.push(hardware(
            &format!("m{i}"),
            &mac,
            &format!("10.77.{}.{}", 1 + i / 250, 1 + i % 250),
            true,
        ));
        macs.push_str(&mac);
        macs.push('\n');
    }
    let server = Server::start(&lab.srv, dhcp::Config::default(), hw);
    let dir = tempfile::tempdir().unwrap();
    let mac_file = dir.path().join("macs");
    std::fs::write(&mac_file, macs).unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.cli,
            "/usr/sbin/perfdhcp",
            "-4",
            "-l",
            "bc0",
        ])
        .args([
            "-r",
            "500",
            "-p",
            "3",
            "-R",
            "200",
            "-M",
            &mac_file.display().to_string(),
            "10.77.0.1",
        ])
        .output()
        .expect("perfdhcp");
    let text = String::from_utf8_lossy(&out.stdout);
    // "sent packets: N" / "received packets: M" for DISCOVER-OFFER, then REQUEST-ACK.
    let nums = |key: &str| -> Vec<u64> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter_map(|v| v.trim().parse().ok())
            .collect()
    };
    let sent = nums("sent packets:");
    let recv = nums("received packets:");
    assert_eq!(
        sent.len(),
        2,
        "perfdhcp output:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(recv[1] > 500, "too few ACKs: {recv:?}\n{text}");
    let drops = 1.0 - recv[0] as f64 / sent[0] as f64;
    assert!(drops < 0.05, "DISCOVER drops {drops}\n{text}");
    assert!(server.metrics.sent_count(MessageType::Ack) >= recv[1]);
}

#[test]
fn a_flood_of_unknown_macs_and_garbage_neither_stalls_nor_stops_the_server() {
    if !have_peers(&["/usr/sbin/ip"]) {
        return;
    }
    let (lab, server) = relay_lab("02:00:00:ee:00:02");
    let relay = Ipv4Addr::new(10, 77, 0, 2);
    let to = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), 67);
    in_ns(&lab.cli, move || {
        let s = UdpSocket::bind(SocketAddrV4::new(relay, 0)).unwrap();
        for i in 0..20_000u32 {
            let b = i.to_be_bytes();
            let mac = [0x0a, 0xbb, b[0], b[1], b[2], b[3]];
            let pkt = discover(&mac, relay, vec![]);
            // Every tenth datagram is cut short or has its cookie broken.
            let pkt = match i % 10 {
                0 => pkt[..100].to_vec(),
                5 => [&pkt[..236], &[0u8; 4][..], &pkt[240..]].concat(),
                _ => pkt,
            };
            let _ = s.send_to(&pkt, to);
        }
    });
    // The known MAC is still answered, promptly.
    let pkt = discover(&MAC_BYTES, relay, vec![]);
    let (reply, _) = exchange(&lab.cli, SocketAddrV4::new(relay, 67), to, pkt)
        .expect("no reply after the flood");
    assert_eq!(reply.yiaddr(), Ipv4Addr::new(10, 77, 0, 50));
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metrics.silent_count(Reason::UnknownMac) < 1_000 {
        assert!(
            Instant::now() < deadline,
            "unknown-MAC requests not counted: {:?}",
            server.metrics
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.metrics.dropped_count(dhcp::metrics::Drop::Malformed) >= 100,
        "{:?}",
        server.metrics
    );
}

/// RFC 2131 §4.3.2 with a real client: ISC dhclient remembers a lease for an address that is
/// not the machine's reservation and asks for it in INIT-REBOOT; boots answers DHCPNAK, and
/// dhclient starts over with a DISCOVER and binds the reservation.
#[test]
fn dhclient_init_reboot_for_a_wrong_address_gets_a_nak() {
    if !have_peers(&["/usr/sbin/dhclient", "/usr/sbin/ip"]) {
        return;
    }
    let lab = Lab::new(MAC);
    let server = Server::start(
        &lab.srv,
        dhcp::Config::default(),
        vec![hardware("node1", MAC, "10.77.0.50", true)],
    );
    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("leases");
    std::fs::write(
        &leases,
        "lease {\n  interface \"bc0\";\n  fixed-address 10.77.0.99;\n  option subnet-mask 255.255.255.0;\n  option dhcp-server-identifier 10.77.0.1;\n  renew 4 2037/12/31 00:00:00;\n  rebind 4 2037/12/31 00:00:00;\n  expire 4 2037/12/31 00:00:00;\n}\n",
    )
    .unwrap();
    let events = dir.path().join("events");
    let script = dir.path().join("script.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$reason $new_ip_address\" >> {}\nexit 0\n",
            events.display()
        ),
    )
    .unwrap();
    sh(&["chmod", "+x", &script.display().to_string()]);
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.cli,
            "/usr/sbin/dhclient",
            "-d",
            "-v",
            "-1",
        ])
        .arg("-lf")
        .arg(&leases)
        .arg("-pf")
        .arg(dir.path().join("pid"))
        .arg("-sf")
        .arg(&script)
        .arg("bc0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dhclient");
    let deadline = Instant::now() + Duration::from_secs(30);
    let bound = loop {
        let seen = std::fs::read_to_string(&events).unwrap_or_default();
        if let Some(l) = seen
            .lines()
            .find(|l| l.starts_with("BOUND ") || l.starts_with("REBOOT "))
        {
            break l.to_string();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dhclient never bound; events: {seen}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(bound, "BOUND 10.77.0.50", "the reservation, after a NAK");
    assert_eq!(server.metrics.sent_count(MessageType::Nak), 1);
    assert!(server.metrics.sent_count(MessageType::Ack) >= 1);
}
