//! `Boots::start` as the appliance runs it, on 127.0.0.1 with an embedded store: a DHCP
//! exchange, a TFTP download, an iPXE script fetch and the HookOS downloads through
//! `Boots::router` each land in the shared timeline under the machine's Hardware; an unknown
//! MAC records nothing. `/boots/metrics` carries the TFTP and HTTP counters next to DHCP's.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use serde_json::json;
use tinkerbell_boots::{Boots, Config, dhcp, http, tftp};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Object, Store};
use tinkerbell_core::timeline::{Phase, Subject, Timeline};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x31];
const MAC_S: &str = "02:00:00:00:00:31";
/// The machine's reserved address: a loopback address, so this test can speak from it.
const IP: &str = "127.0.3.1";

fn encode(m: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    buf
}

fn request(t: MessageType, mac: &[u8; 6], ciaddr: Ipv4Addr, giaddr: Ipv4Addr) -> Message {
    let mut m = Message::new_with_id(
        0x5151,
        ciaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        giaddr,
        mac,
    );
    m.opts_mut().insert(DhcpOption::MessageType(t));
    m
}

fn phases(t: &Timeline) -> Vec<(Phase, String)> {
    t.events(&[Subject::hardware("default", "m31")])
        .into_iter()
        .map(|e| {
            assert_eq!(e.source, "boots");
            (e.phase, e.detail)
        })
        .collect()
}

async fn eventually(t: &Timeline, phase: Phase) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !phases(t).iter().any(|(p, _)| *p == phase) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{phase} never recorded: {:?}",
            phases(t)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn dhcp_tftp_script_and_hookos_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    tinkerbell_edge::tls::install_crypto_provider();
    let store = EmbeddedStore::open(&dir.path().join("store")).unwrap();
    let hw = json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": "Hardware",
        "metadata": {"name": "m31", "namespace": "default"},
        "spec": {"interfaces": [{
            "dhcp": {"mac": MAC_S, "ip": {"address": IP, "netmask": "255.0.0.0", "family": 4}},
            "netboot": {"allowPXE": true, "allowWorkflow": true}
        }]}
    });
    store
        .create(Object::from_typed_json(hw).unwrap())
        .await
        .unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir(&assets).unwrap();
    std::fs::write(assets.join("grub.efi"), common::pattern(3000, 1)).unwrap();
    let hookos = dir.path().join("hookos");
    std::fs::create_dir(&hookos).unwrap();
    std::fs::write(hookos.join("vmlinuz-x86_64"), common::pattern(5000, 2)).unwrap();
    std::fs::write(hookos.join("initramfs-x86_64"), common::pattern(7000, 3)).unwrap();

    let config = Config {
        dhcp: Some(dhcp::Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..dhcp::Config::default()
        }),
        tftp: Some(tftp::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ipxe_dir: None,
            asset_dir: Some(assets),
            ..tftp::Config::default()
        }),
        http: Some(http::Config {
            ipxe_dir: None,
            hookos_dir: Some(hookos),
            script: http::ScriptConfig {
                tink_server_port: Some(42113),
                ..http::ScriptConfig::default()
            },
            ..http::Config::default()
        }),
        syslog: None,
        ra: None,
    };
    let timeline = Arc::new(Timeline::new());
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let boots = Boots::start(
        &config,
        Arc::new(store),
        timeline.clone(),
        cancel.child_token(),
    )
    .await
    .unwrap();
    assert!(Arc::ptr_eq(boots.timeline(), &timeline));
    let dhcp_addr = boots.dhcp_addr().unwrap();
    let tftp_addr = boots.tftp_addr().unwrap();
    assert_eq!(boots.local_addrs(), vec![dhcp_addr, tftp_addr]);

    // DHCP. A relayed DISCOVER (the OFFER goes to the relay's port 67: nobody listens there,
    // which UDP does not mind), then a REQUEST from the reserved address (the ACK comes back
    // by unicast). An unknown MAC is silent and records nothing.
    let client = UdpSocket::bind((IP, 0)).await.unwrap();
    let relay: Ipv4Addr = "127.0.0.1".parse().unwrap();
    let unknown = request(
        MessageType::Discover,
        &[2, 0, 0, 0, 0, 0x99],
        Ipv4Addr::UNSPECIFIED,
        relay,
    );
    client.send_to(&encode(&unknown), dhcp_addr).await.unwrap();
    let discover = request(MessageType::Discover, &MAC, Ipv4Addr::UNSPECIFIED, relay);
    client.send_to(&encode(&discover), dhcp_addr).await.unwrap();
    eventually(&timeline, Phase::DhcpOffer).await;
    let req = request(
        MessageType::Request,
        &MAC,
        IP.parse().unwrap(),
        Ipv4Addr::UNSPECIFIED,
    );
    client.send_to(&encode(&req), dhcp_addr).await.unwrap();
    let mut buf = vec![0u8; 1500];
    let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
        .await
        .expect("an ACK")
        .unwrap();
    let ack = Message::decode(&mut Decoder::new(&buf[..n])).unwrap();
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr().to_string(), IP);
    assert!(ack.opts().get(OptionCode::ServerIdentifier).is_some());
    eventually(&timeline, Phase::DhcpAck).await;

    // TFTP, from the machine's address (no MAC in the path: found by source IP).
    let got = common::raw_get(
        tftp_addr,
        "grub.efi",
        "octet",
        &[("blksize", "1468")],
        false,
    )
    .await;
    // raw_get speaks from 127.0.0.1, which no Hardware holds: nothing recorded for it.
    assert_eq!(got.unwrap().data.len(), 3000);
    let sock = std::net::UdpSocket::bind((IP, 0)).unwrap();
    let from_machine = tokio::task::spawn_blocking(move || {
        let rrq = tftp::packet::encode_request(tftp::packet::opcode::RRQ, "grub.efi", "octet", &[]);
        sock.send_to(&rrq, tftp_addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut total = 0;
        let mut buf = [0u8; 600];
        loop {
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            let block = u16::from_be_bytes([buf[2], buf[3]]);
            sock.send_to(&tftp::packet::encode_ack(block), from)
                .unwrap();
            total += n - 4;
            if n - 4 < 512 {
                return total;
            }
        }
    });
    assert_eq!(from_machine.await.unwrap(), 3000);
    eventually(&timeline, Phase::Tftp).await;

    // The script and HookOS over HTTP, from the machine's address.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr: SocketAddr = listener.local_addr().unwrap();
    let router = boots.router_alone(None);
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let c = reqwest::Client::builder()
        .local_address(IP.parse::<std::net::IpAddr>().unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let script = c
        .get(format!("http://{http_addr}/ipxe/script/{MAC_S}/auto.ipxe"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    let script = script.text().await.unwrap();
    // The tink server default: the address the request was sent to, with the given port.
    assert!(
        script.contains("grpc_authority=127.0.0.1:42113 "),
        "{script}"
    );
    assert!(
        script.contains("set download-url http://127.0.0.1:"),
        "{script}"
    );
    for f in ["vmlinuz-x86_64", "initramfs-x86_64"] {
        let r = c
            .get(format!("http://{http_addr}/hookos/{f}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    eventually(&timeline, Phase::Initramfs).await;

    let got = phases(&timeline);
    let order: Vec<Phase> = got.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        order,
        [
            Phase::DhcpOffer,
            Phase::DhcpAck,
            Phase::Tftp,
            Phase::IpxeScript,
            Phase::Kernel,
            Phase::Initramfs
        ],
        "{got:?}"
    );
    assert_eq!(got[0].1, IP, "the address offered");
    assert_eq!(got[1].1, IP, "the address acknowledged");
    assert_eq!(got[2].1, "grub.efi");
    assert_eq!(got[3].1, format!("/ipxe/script/{MAC_S}/auto.ipxe"));
    assert_eq!(got[4].1, "/hookos/vmlinuz-x86_64");
    assert_eq!(got[5].1, "/hookos/initramfs-x86_64");
    assert_eq!(timeline.subjects().len(), 1, "nothing for unknown clients");

    let metrics = c
        .get(format!("http://{http_addr}/boots/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "boots_dhcp_sent_total{type=\"ack\"} 1",
        "boots_tftp_transfers_total{outcome=\"Completed\"} 2",
        "boots_http_requests_total{route=\"Script\",status=\"200\"} 1",
        "boots_http_requests_total{route=\"Hookos\",status=\"200\"} 2",
    ] {
        assert!(metrics.contains(want), "{want} missing in:\n{metrics}");
    }
    // One exposition: the OpenMetrics end marker once, at the end.
    assert_eq!(metrics.matches("# EOF").count(), 1, "{metrics}");
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
}
