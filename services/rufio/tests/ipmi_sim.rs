//! The IPMI client against OpenIPMI's `ipmi_sim` (Debian `openipmi`) on 127.0.0.1,
//! cipher suite 3. The simulator's chassis_control hook records what the BMC was asked to do.

mod common;

use std::time::{Duration, Instant};

use common::IpmiSim;
use tinkerbell_rufio::ipmi::{IpmiClient, IpmiConfig};
use tinkerbell_rufio::{Bmc, BmcConfig, BootDevice, ErrorKind, PowerAction, PowerState};

async fn sim(max_sessions: u32) -> (IpmiSim, IpmiClient) {
    let s = IpmiSim::start(max_sessions);
    s.ready().await;
    let c = IpmiClient::new(s.config()).unwrap();
    (s, c)
}

#[tokio::test]
async fn power_on_off_cycle_reset_soft_and_status() {
    let (s, c) = sim(4).await;
    assert_eq!(c.power_state().await.unwrap(), PowerState::Off);

    c.power(PowerAction::On).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(s.path("power")).unwrap().trim(),
        "1"
    );
    assert_eq!(c.power_state().await.unwrap(), PowerState::On);

    c.power(PowerAction::Off).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(s.path("power")).unwrap().trim(),
        "0"
    );
    assert_eq!(c.power_state().await.unwrap(), PowerState::Off);

    c.power(PowerAction::On).await.unwrap();
    c.power(PowerAction::Cycle).await.unwrap();
    c.power(PowerAction::Reset).await.unwrap();
    assert_eq!(c.power_state().await.unwrap(), PowerState::On);
    c.power(PowerAction::Soft).await.unwrap();
    assert_eq!(c.power_state().await.unwrap(), PowerState::Off);

    let sets: Vec<String> = s
        .hook_log()
        .into_iter()
        .filter(|l| l.starts_with("set "))
        .collect();
    assert_eq!(
        sets,
        [
            "set power 1",
            "set power 0",
            "set power 1",
            // cycle: ipmi_sim powers off (and on again after its cycle delay)
            "set power 0",
            "set reset 1",
            "set shutdown 1",
        ],
        "hook log: {:?}",
        s.hook_log()
    );
}

#[tokio::test]
async fn boot_device_flags_reach_the_bmc() {
    let (s, c) = sim(4).await;
    c.boot_device(BootDevice::Pxe, true, true).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(s.path("boot")).unwrap().trim(),
        "pxe"
    );
    // ipmi_sim keeps only the device selector of parameter 5 (its valid, persistent and EFI
    // bits read back as 0; `boot_flags_encoding` in src/ipmi covers what we send).
    assert_eq!(c.boot_flags().await.unwrap().selector, 0x1, "force PXE");

    c.boot_device(BootDevice::Disk, false, false).await.unwrap();
    // ipmi_sim reports anything but PXE to the hook as "default".
    assert_eq!(
        std::fs::read_to_string(s.path("boot")).unwrap().trim(),
        "default"
    );
    assert_eq!(
        c.boot_flags().await.unwrap().selector,
        0x2,
        "force hard drive"
    );

    c.boot_device(BootDevice::Bios, false, true).await.unwrap();
    assert_eq!(c.boot_flags().await.unwrap().selector, 0x6);
    c.boot_device(BootDevice::Cdrom, false, true).await.unwrap();
    assert_eq!(c.boot_flags().await.unwrap().selector, 0x5);
}

#[tokio::test]
async fn device_id() {
    let (_s, c) = sim(4).await;
    let d = c.device_id().await.unwrap();
    // From the emu file: mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
    assert_eq!(d.manufacturer_id, 0x1291);
    assert_eq!(d.product_id, 0x0f02);
    assert_eq!(d.firmware_major, 9);
    assert_eq!(d.ipmi_version, 0x02);
}

#[tokio::test]
async fn wrong_password_or_user_is_authentication_refused() {
    let (s, _c) = sim(2).await;
    let mut cfg = s.config();
    cfg.password = "wrong".into();
    let e = IpmiClient::new(cfg)
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthenticationRefused, "{e}");
    assert!(!format!("{e:?}").contains("wrong"), "no password in errors");

    let mut cfg = s.config();
    cfg.username = "nobody".into();
    let e = IpmiClient::new(cfg)
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AuthenticationRefused, "{e}");

    // Failed logins leave no half-open sessions behind: the 2-session limit still admits us.
    let c = IpmiClient::new(s.config()).unwrap();
    for _ in 0..4 {
        c.power_state().await.unwrap();
    }
}

#[tokio::test]
async fn cipher_suites() {
    let (s, _c) = sim(4).await;
    // ipmi_sim has no RAKP-HMAC-SHA256: a clear "unsupported", not a hang.
    let mut cfg = s.config();
    cfg.cipher_suite = Some(17);
    let e = IpmiClient::new(cfg)
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("cipher suite 17"), "{e}");

    // Weak suites are refused before anything is sent...
    let mut cfg = s.config();
    cfg.cipher_suite = Some(2);
    let e = IpmiClient::new(cfg.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    // ...and work when explicitly allowed.
    cfg.allow_weak_cipher_suites = true;
    assert_eq!(
        IpmiClient::new(cfg).unwrap().power_state().await.unwrap(),
        PowerState::Off
    );
    // Unknown suites are refused.
    let mut cfg = s.config();
    cfg.cipher_suite = Some(8);
    assert_eq!(
        IpmiClient::new(cfg).unwrap_err().kind(),
        ErrorKind::Unsupported
    );

    // No suite configured: 3 first, as bmclib.
    let mut cfg = s.config();
    cfg.cipher_suite = None;
    let c = IpmiClient::new(cfg).unwrap();
    let sess = c.open().await.unwrap();
    assert_eq!(sess.cipher_suite(), 3);
    sess.close().await;
}

/// The number of active sessions on the simulator, our own included.
async fn active_sessions(c: &IpmiClient) -> u8 {
    let mut sess = c.open().await.unwrap();
    let (_, active) = sess.session_counts().await.unwrap();
    sess.close().await;
    active
}

#[tokio::test]
async fn sessions_are_closed_on_every_path() {
    let (s, c) = sim(4).await;
    assert_eq!(active_sessions(&c).await, 1);
    for _ in 0..6 {
        assert_eq!(c.power_state().await.unwrap(), PowerState::Off);
    }
    c.boot_device(BootDevice::Pxe, false, false).await.unwrap();
    c.power(PowerAction::On).await.unwrap();
    assert_eq!(active_sessions(&c).await, 1, "after successful calls");

    // Dropped without close (an error path, a cancelled future): Close Session is still sent.
    for _ in 0..4 {
        let mut sess = c.open().await.unwrap();
        sess.device_id().await.unwrap();
        drop(sess);
    }
    let n = common::wait_for("dropped sessions to close", Duration::from_secs(3), || {
        let c = c.clone();
        async move { Some(active_sessions(&c).await).filter(|n| *n == 1) }
    })
    .await;
    assert_eq!(n, 1, "after dropped sessions");

    // Failed logins.
    let mut bad = s.config();
    bad.password = "wrong".into();
    let bad = IpmiClient::new(bad).unwrap();
    for _ in 0..3 {
        assert_eq!(
            bad.power_state().await.unwrap_err().kind(),
            ErrorKind::AuthenticationRefused
        );
    }
    assert_eq!(active_sessions(&c).await, 1, "after refused logins");

    // Concurrent callers.
    let many: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.power_state().await })
        })
        .collect();
    for h in many {
        assert_eq!(h.await.unwrap().unwrap(), PowerState::On);
    }
    assert_eq!(active_sessions(&c).await, 1, "after concurrent calls");
}

#[tokio::test]
async fn silent_bmc_times_out_within_the_configured_time() {
    // A socket that receives and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = IpmiConfig::new("127.0.0.1", "admin", "password".into());
    cfg.port = silent.local_addr().unwrap().port();
    cfg.timeout = Duration::from_millis(200);
    cfg.retries = 2;
    let start = Instant::now();
    let e = IpmiClient::new(cfg.clone())
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // It retransmitted: three datagrams arrived.
    silent.set_nonblocking(true).unwrap();
    let mut n = 0;
    let mut buf = [0u8; 512];
    while silent.recv(&mut buf).is_ok() {
        n += 1;
    }
    assert_eq!(n, 3);
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let port = common::free_udp_port();
    let mut cfg = IpmiConfig::new("127.0.0.1", "admin", "password".into());
    cfg.port = port;
    cfg.timeout = Duration::from_millis(300);
    let e = IpmiClient::new(cfg)
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");

    let mut cfg = IpmiConfig::new("no-such-host.invalid", "admin", "password".into());
    cfg.timeout = Duration::from_millis(300);
    let e = IpmiClient::new(cfg)
        .unwrap()
        .power_state()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
}

#[tokio::test]
async fn through_the_common_trait_from_a_machine_connection() {
    let (s, _c) = sim(4).await;
    let conn: tinkerbell_core::model::bmc::Connection = serde_json::from_value(serde_json::json!({
        "host": "127.0.0.1",
        "port": s.port,
        "insecureTLS": false,
        "providerOptions": {"ipmitool": {"cipherSuite": "3"}}
    }))
    .unwrap();
    let cfg = BmcConfig::from_connection(
        tinkerbell_rufio::Protocol::Ipmi,
        &conn,
        common::IPMI_USER,
        common::IPMI_PASSWORD.into(),
    )
    .unwrap();
    let bmc = cfg.client().unwrap();
    bmc.power(PowerAction::On).await.unwrap();
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::On);
}

#[tokio::test]
async fn task_actions_run_and_verify() {
    use tinkerbell_rufio::action::{self, ActionOutcome, Step};
    let (s, c) = sim(4).await;
    let job: tinkerbell_core::model::bmc::JobSpec = serde_json::from_value(serde_json::json!({
        "machineRef": {"name": "m", "namespace": "default"},
        "tasks": [
            {"powerAction": "off"},
            {"oneTimeBootDeviceAction": {"device": ["pxe"], "efiBoot": true}},
            {"powerAction": "on"},
            {"powerAction": "status"},
            {"virtualMediaAction": {"mediaURL": "http://x/a.iso", "kind": "CD"}},
        ]
    }))
    .unwrap();
    let steps: Vec<Step> = job
        .tasks
        .unwrap()
        .iter()
        .map(|a| Step::from_action(a).unwrap())
        .collect();
    let mut outcomes = Vec::new();
    for step in &steps[..4] {
        let o = action::run(&c, step).await.unwrap();
        if let ActionOutcome::AwaitPower(want) = o {
            assert_eq!(c.power_state().await.unwrap(), want, "{step:?}");
        }
        outcomes.push(o);
    }
    assert_eq!(
        outcomes,
        [
            ActionOutcome::AwaitPower(PowerState::Off),
            ActionOutcome::Done,
            ActionOutcome::AwaitPower(PowerState::On),
            ActionOutcome::PowerState(PowerState::On),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(s.path("boot")).unwrap().trim(),
        "pxe"
    );
    let e = action::run(&c, &steps[4]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}
