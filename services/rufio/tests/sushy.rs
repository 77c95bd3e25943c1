//! The Redfish client against sushy-tools' `sushy-emulator` (PyPI `sushy-tools`, fake
//! driver) on 127.0.0.1. The fake driver applies power changes 1-11 s later, so power
//! assertions poll with a bounded wait.

mod common;

use std::time::Duration;

use common::{NODE1, NODE2, Sushy};
use tinkerbell_rufio::redfish::RedfishClient;
use tinkerbell_rufio::{Bmc, BootDevice, ErrorKind, PowerAction, PowerState};

async fn sushy(tls: bool) -> Sushy {
    let s = Sushy::start(tls);
    s.ready().await;
    s
}

async fn wait_power(c: &RedfishClient, want: PowerState) {
    common::wait_for(
        &format!("power {want}"),
        Duration::from_secs(20),
        || async move { (c.power_state().await.unwrap() == want).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn power_on_off_status_and_cycle() {
    let s = sushy(false).await;
    let mut cfg = s.config();
    cfg.system_name = Some("node1".into());
    let c = RedfishClient::new(cfg).unwrap();
    assert_eq!(c.power_state().await.unwrap(), PowerState::Off);
    c.power(PowerAction::On).await.unwrap();
    wait_power(&c, PowerState::On).await;
    // On when already on is skipped, not an error.
    c.power(PowerAction::On).await.unwrap();
    // sushy has no PowerCycle: the quirk table's fallback (ForceRestart) is used.
    c.power(PowerAction::Cycle).await.unwrap();
    c.power(PowerAction::Off).await.unwrap();
    wait_power(&c, PowerState::Off).await;

    // The first member is node1 when no system is named; node2 by name is on.
    let first = RedfishClient::new(s.config()).unwrap();
    assert_eq!(first.power_state().await.unwrap(), PowerState::Off);
    let mut cfg = s.config();
    cfg.system_name = Some(NODE2.into());
    let c2 = RedfishClient::new(cfg).unwrap();
    assert_eq!(c2.power_state().await.unwrap(), PowerState::On);
    c2.power(PowerAction::Soft).await.unwrap();
    wait_power(&c2, PowerState::Off).await;
}

#[tokio::test]
async fn boot_override() {
    let s = sushy(false).await;
    let mut cfg = s.config();
    cfg.system_name = Some(NODE1.into());
    let c = RedfishClient::new(cfg).unwrap();
    c.boot_device(BootDevice::Pxe, false, true).await.unwrap();
    let b = c.boot_override().await.unwrap();
    assert_eq!(b.target.as_deref(), Some("Pxe"));
    assert_eq!(b.mode.as_deref(), Some("UEFI"));
    c.boot_device(BootDevice::Cdrom, true, false).await.unwrap();
    let b = c.boot_override().await.unwrap();
    assert_eq!(b.target.as_deref(), Some("Cd"));
    assert_eq!(b.mode.as_deref(), Some("Legacy"));
    c.boot_device(BootDevice::Disk, true, true).await.unwrap();
    assert_eq!(
        c.boot_override().await.unwrap().target.as_deref(),
        Some("Hdd")
    );
    // Redfish has no "safe" override target.
    let e = c
        .boot_device(BootDevice::Safe, false, false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

/// An HTTP server with `/boot.iso` (sushy downloads the image it inserts).
async fn iso_server() -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/boot.iso",
        axum::routing::get(|| async { vec![0u8; 4096] }),
    );
    (
        addr,
        tokio::spawn(async move { axum::serve(listener, app).await }),
    )
}

#[tokio::test]
async fn virtual_media_insert_and_eject() {
    // sushy downloads the image: serve one.
    let (addr, server) = iso_server().await;
    let s = sushy(false).await;
    let c = RedfishClient::new(s.config()).unwrap();
    let url = format!("http://{addr}/boot.iso");
    c.virtual_media(&url, "CD").await.unwrap();
    let slots = c.virtual_media_slots().await.unwrap();
    let cd = slots
        .iter()
        .find(|m| m.inserted)
        .unwrap_or_else(|| panic!("nothing inserted: {slots:?}"));
    assert_eq!(cd.image.as_deref(), Some(url.as_str()), "{slots:?}");
    // Inserting again ejects first.
    c.virtual_media(&url, "CD").await.unwrap();
    // Eject.
    c.virtual_media("", "CD").await.unwrap();
    let slots = c.virtual_media_slots().await.unwrap();
    assert!(slots.iter().all(|m| !m.inserted), "{slots:?}");
    // No slot for an unknown kind.
    let e = c.virtual_media(&url, "Tape").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    server.abort();
}

#[tokio::test]
async fn wrong_password_unknown_system_and_unreachable() {
    let s = sushy(false).await;
    let mut cfg = s.config();
    cfg.password = "wrong".into();
    let e = RedfishClient::new(cfg)
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthenticationRefused, "{e}");
    assert!(!format!("{e:?}").contains("wrong"));

    let mut cfg = s.config();
    cfg.system_name = Some("node9".into());
    let e = RedfishClient::new(cfg)
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Failed, "{e}");

    let mut cfg = s.config();
    cfg.port = Some(common::free_tcp_port());
    let e = RedfishClient::new(cfg)
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
}

#[tokio::test]
async fn silent_server_times_out() {
    // Accepts connections, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let mut cfg = tinkerbell_rufio::redfish::RedfishConfig::new(
        "http://127.0.0.1",
        "admin",
        "password".into(),
    );
    cfg.port = Some(port);
    cfg.timeout = Duration::from_millis(500);
    let start = std::time::Instant::now();
    let e = RedfishClient::new(cfg)
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(start.elapsed() < Duration::from_secs(3));
    hold.abort();
}

#[tokio::test]
async fn insecure_tls_is_per_bmc() {
    let s = sushy(true).await;
    // A self-signed certificate is refused by default...
    let e = RedfishClient::new(s.config())
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    // ...and accepted for a BMC marked insecureTLS.
    let mut cfg = s.config();
    cfg.insecure_tls = true;
    assert_eq!(
        RedfishClient::new(cfg)
            .unwrap()
            .power_state()
            .await
            .unwrap(),
        PowerState::Off
    );
}

#[tokio::test]
async fn virtual_media_through_the_task_action() {
    use tinkerbell_rufio::action::{self, ActionOutcome, Step};
    let (addr, server) = iso_server().await;
    let s = sushy(false).await;
    let c = RedfishClient::new(s.config()).unwrap();
    let bmc: &dyn Bmc = &c;
    let insert = Step::VirtualMedia {
        url: format!("http://{addr}/boot.iso"),
        kind: "CD".into(),
    };
    assert_eq!(
        action::run(bmc, &insert).await.unwrap(),
        ActionOutcome::Done
    );
    assert!(
        c.virtual_media_slots()
            .await
            .unwrap()
            .iter()
            .any(|m| m.inserted)
    );
    let eject = Step::VirtualMedia {
        url: String::new(),
        kind: "CD".into(),
    };
    assert_eq!(action::run(bmc, &eject).await.unwrap(), ActionOutcome::Done);
    assert!(
        c.virtual_media_slots()
            .await
            .unwrap()
            .iter()
            .all(|m| !m.inserted)
    );
    server.abort();
}
