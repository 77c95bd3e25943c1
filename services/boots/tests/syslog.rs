//! boots' syslog receiver on 127.0.0.1 with real senders (util-linux `logger`, RFC 5424 and
//! RFC 3164, raw sockets on 127.0.0.x) and the HTTP route, through `Boots::start` as the
//! appliance uses it: what is kept, within which budgets, and what is not logged.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    let b = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    (st, serde_json::from_slice(&b).unwrap_or_default())
}

#[tokio::test]
async fn lines_from_logger_and_raw_senders_are_kept_per_machine() {
    let (_dir, boots, cancel) = start_default().await;
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
    let r = boots.router_alone(Some("t0ken".into()));
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

/// boots with the default syslog configuration on 127.0.0.1 and Hardware `node1` at 127.0.0.1.
async fn start_default() -> (tempfile::TempDir, Boots, CancellationToken) {
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
    (dir, boots, cancel)
}

/// `boots_syslog_received_total`.
async fn received(r: &axum::Router) -> u64 {
    let req = Request::get("/boots/metrics")
        .header("authorization", "Bearer t0ken")
        .body(Body::empty())
        .unwrap();
    let resp = r.clone().oneshot(req).await.unwrap();
    let b = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(b.to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("boots_syslog_received_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no received counter in {text}"))
}

/// Wait until boots has taken `n` datagrams off its socket (and so stored them).
async fn wait_received(r: &axum::Router, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = received(r).await;
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {n} datagrams arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An RFC 5424 line of just under 8 KiB (the default longest message) whose JSON body decodes
/// into thousands of values: small on the wire, big in memory.
fn heavy_line(n: usize) -> Vec<u8> {
    let zeros = vec!["0"; 4000].join(",");
    let line = format!(r#"<14>1 - node1 hook - - - {{"n":{n},"a":[{zeros}]}}"#);
    assert!(line.len() < 8192);
    line.into_bytes()
}

#[tokio::test]
async fn retention_is_a_byte_budget_and_strangers_get_a_smaller_one() {
    let (_dir, boots, cancel) = start_default().await;
    let addr = boots.syslog_addr().unwrap();
    let r = boots.router_alone(Some("t0ken".into()));
    let mut sent = 0;

    // 100 heavy lines from node1 (127.0.0.1): ~13 MiB once decoded, over its 4 MiB budget,
    // though far under the line counts of old (2,000 per machine).
    let known = UdpSocket::bind("127.0.0.1:0").unwrap();
    for n in 0..100 {
        known.send_to(&heavy_line(n), addr).unwrap();
        sent += 1;
        if sent % 8 == 0 {
            wait_received(&r, sent).await;
        }
    }
    wait_received(&r, sent).await;
    let (st, v) = get(&r, "/tinkerbell/v1/logs/node1").await;
    assert_eq!(st, StatusCode::OK);
    let kept = v.as_array().unwrap().clone();
    assert!(
        !kept.is_empty() && kept.len() < 100,
        "{} of 100 heavy lines kept",
        kept.len()
    );
    // The newest are kept, decoded.
    assert_eq!(kept.last().unwrap()["json"]["n"], 99);

    // Unknown senders on 127.0.0.2-9, 40 heavy lines each: together they fill only their
    // own, smaller budget (8 MiB), and node1 keeps every line it had.
    for host in 2..=9u8 {
        let s = UdpSocket::bind(SocketAddr::from(([127, 0, 0, host], 0))).unwrap();
        for n in 0..40 {
            s.send_to(&heavy_line(n), addr).unwrap();
            sent += 1;
            if sent % 8 == 0 {
                wait_received(&r, sent).await;
            }
        }
    }
    wait_received(&r, sent).await;
    let (st, v) = get(&r, "/tinkerbell/v1/logs").await;
    assert_eq!(st, StatusCode::OK);
    let machines = v.as_array().unwrap();
    let strangers: u64 = machines
        .iter()
        .filter(|m| m["machine"] != "default/node1")
        .map(|m| m["lines"].as_u64().unwrap())
        .sum();
    assert!(
        strangers > 0 && strangers < 100,
        "{strangers} of 320 strangers' heavy lines kept"
    );
    let (_, v) = get(&r, "/tinkerbell/v1/logs/node1").await;
    assert_eq!(v.as_array().unwrap().len(), kept.len());

    cancel.cancel();
    boots.join().await.unwrap();
}

/// Counts INFO (and more severe) events of boots' syslog module while armed.
struct SyslogInfoEvents {
    armed: Arc<AtomicBool>,
    seen: Arc<AtomicUsize>,
}

impl tracing::Subscriber for SyslogInfoEvents {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        *m.level() <= tracing::Level::INFO
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, e: &tracing::Event<'_>) {
        let m = e.metadata();
        let syslog =
            m.target().contains("syslog") || m.module_path().is_some_and(|p| p.contains("syslog"));
        if syslog && self.armed.load(Ordering::SeqCst) {
            self.seen.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// A sender decides how much it sends; it must not decide how much boots logs at INFO.
#[tokio::test]
async fn received_lines_are_not_logged_at_info() {
    let armed = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    // This runtime has one thread: the receiver task runs under this subscriber too.
    let _guard = tracing::subscriber::set_default(SyslogInfoEvents {
        armed: armed.clone(),
        seen: seen.clone(),
    });
    let (_dir, boots, cancel) = start_default().await;
    let addr = boots.syslog_addr().unwrap();
    let r = boots.router_alone(Some("t0ken".into()));
    // Another test's thread may have registered the syslog callsites while this subscriber was
    // being installed, caching "never" for them; recompute with every subscriber in place.
    tracing::callsite::rebuild_interest_cache();
    armed.store(true, Ordering::SeqCst);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..20 {
        s.send_to(
            format!("<30>Nov 24 00:00:00 hook app: line {i}").as_bytes(),
            addr,
        )
        .unwrap();
    }
    wait_received(&r, 20).await;
    assert_eq!(boots.logs().unwrap().len(), 20);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "syslog lines logged at INFO"
    );
    armed.store(false, Ordering::SeqCst);
    cancel.cancel();
    boots.join().await.unwrap();
}
