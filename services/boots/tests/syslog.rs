//! boots' syslog receiver on 127.0.0.1 with real senders (util-linux `logger`, RFC 5424 and
//! RFC 3164) and the HTTP route, through `Boots::start` as the appliance uses it.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tinkerbell_boots::{Boots, Config, syslog};
use tinkerbell_core::model::{Dhcp, Hardware, HardwareSpec, Interface, Ip};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Object, Store};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn hardware() -> Hardware {
    let mut h = Hardware::new(
        "node1",
        HardwareSpec {
            interfaces: Some(vec![Interface {
                dhcp: Some(Dhcp {
                    mac: Some("02:00:00:00:00:01".into()),
                    ip: Some(Ip {
                        address: Some("127.0.0.1".into()),
                        ..Ip::default()
                    }),
                    ..Dhcp::default()
                }),
                ..Interface::default()
            }]),
            ..HardwareSpec::default()
        },
    );
    h.metadata.namespace = Some("default".into());
    h
}

async fn get(r: &axum::Router, uri: &str) -> (StatusCode, serde_json::Value) {
    let req = Request::get(uri)
        .header("authorization", "Bearer t0ken")
        .body(Body::empty())
        .unwrap();
    let resp = r.clone().oneshot(req).await.unwrap();
    let st = resp.status();
    let b = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (st, serde_json::from_slice(&b).unwrap_or_default())
}

#[tokio::test]
async fn lines_from_logger_and_raw_senders_are_kept_per_machine() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store
        .create(Object::Hardware(Arc::new(hardware())))
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let config = Config {
        dhcp: None,
        syslog: Some(syslog::Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..syslog::Config::default()
        }),
        ..Config::default()
    };
    let boots = Boots::start(&config, Arc::new(store), Default::default(), cancel.clone())
        .await
        .unwrap();
    let addr = boots.syslog_addr().unwrap();
    assert_eq!(boots.local_addrs(), vec![addr]);
    let logs = boots.logs().unwrap();

    // RFC 3164 and garbage from a raw socket (source 127.0.0.1 → node1).
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(
        b"<30>Nov 24 00:00:00 hook tink-agent[12]: action started",
        addr,
    )
    .unwrap();
    s.send_to(&[0xff, 0, 1, 2], addr).unwrap();
    // RFC 5424 from util-linux logger (Debian essential).
    let out = Command::new("logger")
        .args([
            "-n",
            "127.0.0.1",
            "-P",
            &addr.port().to_string(),
            "-d",
            "--rfc5424",
        ])
        .args(["-t", "hookos", "-p", "daemon.err", "disk wiped"])
        .output()
        .expect("logger");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    while logs.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "only {} lines arrived",
            logs.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = boots.router(Some("t0ken".into()));
    let (st, v) = get(&r, "/tinkerbell/v1/logs/node1").await;
    assert_eq!(st, StatusCode::OK);
    let lines = v.as_array().unwrap();
    assert_eq!(lines.len(), 3, "{v}");
    let find = |m: &str| lines.iter().find(|l| l["message"] == m).cloned();
    let l = find("action started").expect("3164 line");
    assert_eq!(l["app"], "tink-agent");
    assert_eq!(l["procid"], "12");
    assert_eq!(l["severity"], "info");
    let l = find("disk wiped").expect("5424 line");
    assert_eq!(l["app"], "hookos");
    assert_eq!(l["facility"], "daemon");
    assert_eq!(l["severity"], "err");
    assert_eq!(l["source"], "127.0.0.1");

    let (st, m) = get(&r, "/boots/metrics").await;
    assert_eq!(st, StatusCode::OK, "{m}");
    cancel.cancel();
    boots.join().await.unwrap();
}
