//! boots' IPv6 Router Advertisement responder against real peers, in two network namespaces
//! joined by a veth pair that this test creates: the responder on one end; on the other,
//! `rdisc6` (ndisc6) solicits and prints the advertisement it accepted (it drops RAs whose
//! hop limit is not 255), the client's kernel (accept_ra=1, forwarding=0) solicits on link up
//! and, since the lifetime is 0 and there are no prefixes, adds no default route and no
//! global address; hand-made solicitations with hop limit 64 and code 1 are counted as
//! malformed and not answered.
//!
//! Needs root, `ip` and rdisc6 (scripts/install-deps.sh). Without them the test fails when CI
//! is set and is skipped (with a message) otherwise.

mod common;

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::process::Command;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tinkerbell_boots::ra::{self, Malformed, RaMetrics, RaResponder};
use tinkerbell_core::testing::sh;
use tokio_util::sync::CancellationToken;

/// Namespaces `srv` (responder on rs0) and `cli` (rc0, still down), deleted on drop.
struct Lab {
    srv: String,
    cli: String,
}

impl Lab {
    fn new() -> Lab {
        let base = format!("bra{}", std::process::id());
        let lab = Lab {
            srv: format!("{base}-s"),
            cli: format!("{base}-c"),
        };
        sh(&["ip", "netns", "add", &lab.srv]);
        sh(&["ip", "netns", "add", &lab.cli]);
        sh(&[
            "ip", "-n", &lab.srv, "link", "add", "rs0", "type", "veth", "peer", "name", "rc0",
            "netns", &lab.cli,
        ]);
        // No duplicate address detection: the link-local addresses are usable at once.
        for (ns, dev) in [(&lab.srv, "rs0"), (&lab.cli, "rc0")] {
            lab.sysctl(ns, &format!("net.ipv6.conf.{dev}.accept_dad=0"));
        }
        // The client behaves like a host: it accepts RAs and does not forward.
        lab.sysctl(&lab.cli, "net.ipv6.conf.rc0.forwarding=0");
        lab.sysctl(&lab.cli, "net.ipv6.conf.rc0.accept_ra=1");
        sh(&["ip", "-n", &lab.srv, "link", "set", "rs0", "up"]);
        lab
    }

    fn sysctl(&self, ns: &str, kv: &str) {
        sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", kv]);
    }

    fn cli(&self, args: &[&str]) -> String {
        let mut a = vec!["ip", "netns", "exec", &self.cli];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&sh(&a).stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.srv, &self.cli] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
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

/// The responder on a runtime thread inside `ns`, until `cancel`.
fn start(
    ns: &str,
    cfg: ra::Config,
    cancel: CancellationToken,
) -> (RaMetrics, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = format!("/run/netns/{ns}");
    let thread = std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let r = RaResponder::start(&cfg, cancel).expect("start the responder");
            tx.send(r.metrics()).unwrap();
            r.join().await.expect("responder ends cleanly");
        });
    });
    (rx.recv().expect("responder started"), thread)
}

/// Send a Router Solicitation `msg` to ff02::2 on rc0 with IP hop limit `hops`, from `ns`.
fn solicit(ns: &str, msg: &'static [u8], hops: u32) {
    in_ns(ns, move || {
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).unwrap();
        let ifindex = nix::net::if_::if_nametoindex("rc0").unwrap();
        s.set_multicast_hops_v6(hops).unwrap();
        s.set_multicast_if_v6(ifindex).unwrap();
        let to = SocketAddr::V6(SocketAddrV6::new(ra::ALL_ROUTERS, 0, 0, ifindex));
        s.send_to(msg, &to.into()).unwrap();
    });
}

/// Poll `f` for at most `limit`.
fn eventually(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !f() {
        assert!(std::time::Instant::now() < deadline, "never true: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn answers_solicitations_without_configuring_anything() {
    if !common::have("ip") || !common::have("rdisc6") {
        return;
    }
    if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        eprintln!("SKIP: no IPv6 in this kernel");
        return;
    }
    let lab = Lab::new();
    let cancel = CancellationToken::new();
    let (metrics, thread) = start(&lab.srv, ra::Config::new("rs0"), cancel.clone());

    // The client's kernel solicits when its link comes up and gets the answer.
    sh(&["ip", "-n", &lab.cli, "link", "set", "rc0", "up"]);
    eventually(
        "the kernel's solicitation is answered",
        Duration::from_secs(10),
        || metrics.solicitations() >= 1 && metrics.advertisements() >= 1,
    );
    let in_ras = || {
        lab.cli(&["cat", "/proc/net/snmp6"])
            .lines()
            .find_map(|l| l.strip_prefix("Icmp6InRouterAdvertisements"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    eventually("the client received the RA", Duration::from_secs(5), || {
        in_ras() >= 1
    });

    // rdisc6 accepts only a hop limit 255 RA from a link-local source; it prints the fields.
    // Its solicitation may fall inside MIN_DELAY_BETWEEN_RAS of the kernel's: then the answer
    // comes when the interval has passed, within its 5 one-second attempts.
    let out = lab.cli(&["rdisc6", "-1", "-r", "5", "-w", "1000", "rc0"]);
    let field = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(name))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    assert!(field("Router lifetime").starts_with("0 "), "{out}");
    assert!(field("Stateful address conf.").starts_with("No"), "{out}");
    assert!(field("Stateful other conf.").starts_with("No"), "{out}");
    assert!(!out.contains("Prefix"), "no prefix information: {out}");
    let from = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("from "))
        .unwrap_or_else(|| panic!("no source in {out}"));
    let from: Ipv6Addr = from.split_whitespace().next().unwrap().parse().unwrap();
    assert!(from.is_unicast_link_local(), "source {from} is link-local");
    assert!(metrics.solicitations() >= 2);

    // Nothing was configured on the client: no default route, no global address.
    let routes = lab.cli(&["ip", "-6", "route", "show", "default"]);
    assert!(routes.trim().is_empty(), "no default route: {routes}");
    let addrs = lab.cli(&["ip", "-6", "addr", "show", "dev", "rc0", "scope", "global"]);
    assert!(addrs.trim().is_empty(), "no global address: {addrs}");

    // Solicitations that fail RFC 4861 6.1.1 are counted and not answered.
    let sent = metrics.advertisements();
    let valid = metrics.solicitations();
    solicit(&lab.cli, &[133, 0, 0, 0, 0, 0, 0, 0], 64);
    solicit(&lab.cli, &[133, 1, 0, 0, 0, 0, 0, 0], 255);
    solicit(
        &lab.cli,
        &[133, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        255,
    );
    eventually(
        "malformed solicitations counted",
        Duration::from_secs(5),
        || {
            metrics.malformed(Malformed::HopLimit) == 1
                && metrics.malformed(Malformed::Code) == 1
                && metrics.malformed(Malformed::OptionLength) == 1
        },
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(metrics.solicitations(), valid);

    // A valid one is answered (at once, or when the interval since the last answer passed).
    solicit(&lab.cli, &[133, 0, 0, 0, 0, 0, 0, 0], 255);
    eventually(
        "a valid hand-made solicitation is answered",
        Duration::from_secs(5),
        || metrics.advertisements() > sent,
    );

    cancel.cancel();
    thread.join().expect("responder thread");
}

#[test]
fn a_missing_interface_is_a_clear_error() {
    if !common::have("ip") {
        return;
    }
    let e = RaResponder::start(&ra::Config::new("nosuch0"), CancellationToken::new()).unwrap_err();
    assert!(matches!(e, ra::RaError::Interface { .. }), "{e:?}");
    assert!(e.to_string().contains("nosuch0"), "{e}");
}
