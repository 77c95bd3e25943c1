//! An opt-in IPv6 Router Advertisement responder, so a stock iPXE does not wait ~16 s for an
//! IPv6 router that is not there.
//!
//! Why: the iPXE in QEMU's NIC ROMs and Debian's `ipxe` package runs IPv6 autoconfiguration
//! alongside DHCPv4 in `ifconf` (autoboot) and only goes on when both are done; with no IPv6
//! router on the link its Router Solicitations go unanswered until the autoconfiguration times
//! out, and every netboot pays that (twice per provisioning: HookOS, and the netboot attempt
//! after the installed OS reboots). dnsmasq avoids it by sending RAs; upstream Smee has no such
//! feature.
//!
//! What it sends changes nothing on the link: router lifetime 0 (not a default router), M=0
//! O=0 (no DHCPv6), no prefix information, no reachable time or retransmission timer, current
//! hop limit unspecified. A host that receives it learns only that its solicitation was
//! answered; iPXE then ends its IPv6 autoconfiguration at once (no DHCPv6 to start), and a
//! Linux host adds no address and no route.
//!
//! Why opt-in (`--ipv6-ra-enabled`): a host processes every RA it receives, so on a link with
//! a real IPv6 router ours is a second voice — harmless by content, but an operator must decide
//! to add it, and a link where the router's RAs are monitored (RA guard, `ndpmon`) would flag
//! it. It is only started on the interface given by `--dhcp-bind-interface`.
//!
//! The wire (RFC 4861): a raw ICMPv6 socket bound to the interface (SO_BINDTODEVICE) joins
//! all-routers (ff02::2) there and reads Router Solicitations. Each is validated per §6.1.1:
//! IP hop limit 255 (read from the IPV6_HOPLIMIT control message, IPV6_RECVHOPLIMIT), ICMP
//! code 0, ICMP length at least 8, every option of non-zero length, and no source link-layer
//! address option when the source is the unspecified address. The ICMP checksum is checked by
//! the kernel for raw ICMPv6 sockets and filled in by it on send (RFC 3542 §3.1). Invalid
//! solicitations are counted per reason and dropped. Answers go to all-nodes (ff02::1) from
//! the interface's link-local address (the kernel's source choice for a link-scope
//! destination), hop limit 255, at most one per [`Config::min_delay_between_ras`] (RFC 4861
//! MIN_DELAY_BETWEEN_RAS, 3 s): the first solicitation is answered at once, one arriving
//! sooner after the last answer is answered when the interval has passed, and further ones in
//! the meantime share that answer. (§6.2.6's random 0–500 ms delay spreads the answers of
//! several routers; with one responder answering at once is what saves the time.)

use std::io::{self, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, SockaddrIn6};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// All-nodes link-local multicast (RFC 4291), where the answers go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// All-routers link-local multicast (RFC 4291), where solicitations are sent.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// ICMPv6 type of a Router Solicitation.
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a Router Advertisement.
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// Hop limit of every Neighbor Discovery message, sent and accepted (RFC 4861).
pub const ND_HOP_LIMIT: u8 = 255;
/// RFC 4861 MIN_DELAY_BETWEEN_RAS.
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// The longest interface name Linux accepts (IFNAMSIZ without the NUL).
const IFNAME_MAX: usize = 15;
/// NDP option type of the source link-layer address.
const OPT_SOURCE_LINK_ADDR: u8 = 1;

/// Where and how the responder answers.
#[derive(Debug, Clone)]
pub struct Config {
    /// The interface (`--dhcp-bind-interface`).
    pub interface: String,
    /// At most one answer per this interval (RFC 4861 MIN_DELAY_BETWEEN_RAS, 3 s).
    pub min_delay_between_ras: Duration,
}

impl Config {
    /// A responder on `interface` with RFC 4861's interval.
    pub fn new(interface: impl Into<String>) -> Config {
        Config {
            interface: interface.into(),
            min_delay_between_ras: MIN_DELAY_BETWEEN_RAS,
        }
    }

    /// Check the configuration; every problem is reported.
    pub fn validate(&self) -> Result<(), RaError> {
        let mut p = Vec::new();
        let i = &self.interface;
        if i.is_empty() {
            p.push("interface: empty (set --dhcp-bind-interface)".to_string());
        } else if i.len() > IFNAME_MAX || i.contains(['/', ' ', '\0']) || i == "." || i == ".." {
            p.push(format!("interface {i:?}: not an interface name"));
        }
        if self.min_delay_between_ras.is_zero() {
            p.push("min_delay_between_ras: must be more than 0".to_string());
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(RaError::Config(p.join("; ")))
        }
    }
}

/// Why the responder could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RaError {
    /// Invalid configuration.
    #[error("invalid IPv6 RA configuration: {0}")]
    Config(String),
    /// The interface does not exist.
    #[error("no interface {interface:?}")]
    Interface {
        /// Interface name.
        interface: String,
        /// Error.
        #[source]
        source: nix::Error,
    },
    /// The raw ICMPv6 socket could not be opened or set up (needs CAP_NET_RAW, and IPv6 on
    /// the interface).
    #[error("cannot open a raw ICMPv6 socket on {interface}")]
    Socket {
        /// Interface name.
        interface: String,
        /// Error.
        #[source]
        source: io::Error,
    },
    /// Reading the socket failed for good.
    #[error("reading the ICMPv6 socket on {interface} failed")]
    Receive {
        /// Interface name.
        interface: String,
        /// Error.
        #[source]
        source: io::Error,
    },
    /// The task panicked or was aborted.
    #[error("IPv6 RA responder task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
}

/// A Router Advertisement's fixed part (RFC 4861 §4.2); no options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advertisement {
    /// Cur Hop Limit for the hosts' packets (0: unspecified).
    pub cur_hop_limit: u8,
    /// M: addresses from DHCPv6.
    pub managed: bool,
    /// O: other configuration from DHCPv6.
    pub other: bool,
    /// Router lifetime in seconds (0: not a default router).
    pub router_lifetime: u16,
    /// Reachable time in ms (0: unspecified).
    pub reachable_time: u32,
    /// Retransmission timer in ms (0: unspecified).
    pub retrans_timer: u32,
}

impl Advertisement {
    /// What the responder sends: everything unspecified or zero, so a host learns nothing but
    /// that its solicitation was answered.
    pub const NEUTRAL: Advertisement = Advertisement {
        cur_hop_limit: 0,
        managed: false,
        other: false,
        router_lifetime: 0,
        reachable_time: 0,
        retrans_timer: 0,
    };

    /// The ICMPv6 message (checksum 0: the kernel fills it on a raw ICMPv6 socket).
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = ROUTER_ADVERTISEMENT;
        // b[1] code 0, b[2..4] checksum.
        b[4] = self.cur_hop_limit;
        b[5] = (u8::from(self.managed) << 7) | (u8::from(self.other) << 6);
        b[6..8].copy_from_slice(&self.router_lifetime.to_be_bytes());
        b[8..12].copy_from_slice(&self.reachable_time.to_be_bytes());
        b[12..16].copy_from_slice(&self.retrans_timer.to_be_bytes());
        b
    }
}

/// Why a Router Solicitation was dropped (RFC 4861 §6.1.1).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Malformed {
    /// The IP hop limit was not 255 (it crossed a router), or was not reported.
    HopLimit,
    /// ICMP code not 0.
    Code,
    /// ICMP length under 8 bytes.
    Short,
    /// An option of length 0, or one running past the end.
    OptionLength,
    /// A source link-layer address option from the unspecified address.
    UnspecifiedWithLinkAddr,
}

/// What one ICMPv6 message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A valid Router Solicitation.
    Solicitation,
    /// A Router Solicitation failing §6.1.1.
    Malformed(Malformed),
    /// Another ICMPv6 message (neighbor discovery, echo, ...): not ours.
    Other,
}

/// Classify an ICMPv6 message (`msg` from its type byte) received from `src` with IP hop
/// limit `hop_limit` (`None` when the kernel did not report it).
pub fn classify(msg: &[u8], src: Ipv6Addr, hop_limit: Option<u8>) -> Incoming {
    if msg.first() != Some(&ROUTER_SOLICITATION) {
        return Incoming::Other;
    }
    let bad = Incoming::Malformed;
    if hop_limit != Some(ND_HOP_LIMIT) {
        return bad(Malformed::HopLimit);
    }
    if msg.len() < 8 {
        return bad(Malformed::Short);
    }
    if msg[1] != 0 {
        return bad(Malformed::Code);
    }
    // Options follow the 4 reserved bytes; each is type, length in units of 8 bytes, data.
    let mut opts = &msg[8..];
    while !opts.is_empty() {
        let len = opts.get(1).map_or(0, |l| usize::from(*l) * 8);
        if len == 0 || len > opts.len() {
            return bad(Malformed::OptionLength);
        }
        if opts[0] == OPT_SOURCE_LINK_ADDR && src.is_unspecified() {
            return bad(Malformed::UnspecifiedWithLinkAddr);
        }
        opts = &opts[len..];
    }
    Incoming::Solicitation
}

/// What to do with a valid solicitation, given the answers sent before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Answer now.
    Now,
    /// Answer at this instant (the interval since the last answer has not passed).
    At(Instant),
    /// An answer is already scheduled: this solicitation shares it.
    Scheduled,
}

/// RFC 4861 §6.2.6's limit on multicast RAs: at most one per interval; the first at once.
#[derive(Debug, Clone)]
pub struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    pending: Option<Instant>,
}

impl RateLimit {
    /// At most one answer per `interval`.
    pub fn new(interval: Duration) -> RateLimit {
        RateLimit {
            interval,
            last: None,
            pending: None,
        }
    }

    /// A valid solicitation arrived at `now`.
    pub fn solicited(&mut self, now: Instant) -> Decision {
        if self.pending.is_some() {
            return Decision::Scheduled;
        }
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                let at = last + self.interval;
                self.pending = Some(at);
                Decision::At(at)
            }
            _ => Decision::Now,
        }
    }

    /// An answer was sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.last = Some(now);
        self.pending = None;
    }

    /// When the scheduled answer is due, if one is.
    pub fn pending(&self) -> Option<Instant> {
        self.pending
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MalformedLabels {
    reason: Malformed,
}

/// The responder's counters (`boots_ra_*` in /boots/metrics). Clones share them.
#[derive(Debug, Clone, Default)]
pub struct RaMetrics {
    solicitations: Counter,
    malformed: Family<MalformedLabels, Counter>,
    advertisements: Counter,
    delayed: Counter,
    send_errors: Counter,
}

impl RaMetrics {
    /// Register under `boots_ra`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("boots_ra");
        r.register(
            "solicitations",
            "Valid Router Solicitations received",
            self.solicitations.clone(),
        );
        r.register(
            "malformed",
            "Router Solicitations dropped by RFC 4861 6.1.1 validation",
            self.malformed.clone(),
        );
        r.register(
            "advertisements",
            "Router Advertisements sent (lifetime 0, no prefixes)",
            self.advertisements.clone(),
        );
        r.register(
            "delayed",
            "Solicitations answered later or by a shared answer (MIN_DELAY_BETWEEN_RAS)",
            self.delayed.clone(),
        );
        r.register(
            "send_errors",
            "Router Advertisements the kernel refused to send",
            self.send_errors.clone(),
        );
    }

    /// Valid solicitations received.
    pub fn solicitations(&self) -> u64 {
        self.solicitations.get()
    }

    /// Advertisements sent.
    pub fn advertisements(&self) -> u64 {
        self.advertisements.get()
    }

    /// Solicitations dropped for `reason`.
    pub fn malformed(&self, reason: Malformed) -> u64 {
        self.malformed
            .get_or_create(&MalformedLabels { reason })
            .get()
    }
}

/// A running responder.
#[derive(Debug)]
pub struct RaResponder {
    interface: String,
    metrics: RaMetrics,
    task: JoinHandle<Result<(), RaError>>,
}

fn open(interface: &str, ifindex: u32) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.set_recv_hoplimit_v6(true)?;
    s.set_multicast_if_v6(ifindex)?;
    s.set_multicast_hops_v6(u32::from(ND_HOP_LIMIT))?;
    s.set_unicast_hops_v6(u32::from(ND_HOP_LIMIT))?;
    // Our own answers are not solicitations; do not read them back.
    s.set_multicast_loop_v6(false)?;
    s.join_multicast_v6(&ALL_ROUTERS, ifindex)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl RaResponder {
    /// Validate `config`, open the raw ICMPv6 socket on the interface and join all-routers
    /// there; both are done when this returns. Answers until `cancel` fires.
    pub fn start(config: &Config, cancel: CancellationToken) -> Result<RaResponder, RaError> {
        config.validate()?;
        let interface = config.interface.clone();
        let ifindex = nix::net::if_::if_nametoindex(interface.as_str()).map_err(|source| {
            RaError::Interface {
                interface: interface.clone(),
                source,
            }
        })?;
        let sock_err = |source| RaError::Socket {
            interface: interface.clone(),
            source,
        };
        // tokio's AsyncFd registration is `unsafe` (I/O safety) and the workspace denies unsafe
        // code, so the raw socket rides in a tokio UdpSocket: only its readiness, datagram
        // send (port 0, which a raw socket ignores) and fd are used.
        let std_sock: std::net::UdpSocket = open(&interface, ifindex).map_err(sock_err)?.into();
        let sock = UdpSocket::from_std(std_sock).map_err(sock_err)?;
        let metrics = RaMetrics::default();
        let task = tokio::spawn(serve(
            sock,
            interface.clone(),
            ifindex,
            config.min_delay_between_ras,
            metrics.clone(),
            cancel,
        ));
        tracing::info!(%interface, ifindex, "IPv6 RA responder listening (lifetime 0, no prefixes)");
        Ok(RaResponder {
            interface,
            metrics,
            task,
        })
    }

    /// The interface answered on.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The counters.
    pub fn metrics(&self) -> RaMetrics {
        self.metrics.clone()
    }

    /// Wait for the responder to stop.
    pub async fn join(self) -> Result<(), RaError> {
        self.task.await.map_err(RaError::Join)?
    }
}

struct Received {
    len: usize,
    src: Ipv6Addr,
    hop_limit: Option<u8>,
}

fn recv_one(fd: i32, buf: &mut [u8], cmsg: &mut [u8]) -> io::Result<Received> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<SockaddrIn6>(fd, &mut iov, Some(cmsg), MsgFlags::empty())
        .map_err(io::Error::from)?;
    let src = msg.address.map_or(Ipv6Addr::UNSPECIFIED, |a| a.ip());
    let mut hop_limit = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::Ipv6HopLimit(h) = c {
                hop_limit = u8::try_from(h).ok();
            }
        }
    }
    Ok(Received {
        len: msg.bytes,
        src,
        hop_limit,
    })
}

fn advertise(sock: &UdpSocket, to: SocketAddr, metrics: &RaMetrics, interface: &str) {
    match sock.try_send_to(&Advertisement::NEUTRAL.encode(), to) {
        Ok(_) => {
            metrics.advertisements.inc();
            tracing::debug!(%interface, "router advertisement sent");
        }
        Err(e) => {
            metrics.send_errors.inc();
            tracing::warn!(%interface, error = %e, "cannot send router advertisement");
        }
    }
}

async fn serve(
    sock: UdpSocket,
    interface: String,
    ifindex: u32,
    interval: Duration,
    metrics: RaMetrics,
    cancel: CancellationToken,
) -> Result<(), RaError> {
    let to = SocketAddr::V6(SocketAddrV6::new(ALL_NODES, 0, 0, ifindex));
    let mut limit = RateLimit::new(interval);
    let mut buf = vec![0u8; 1500];
    // IPV6_HOPLIMIT carries a C int.
    let mut cmsg = nix::cmsg_space!(i32);
    let mut consecutive_errors = 0u32;
    loop {
        let due = limit.pending();
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                advertise(&sock, to, &metrics, &interface);
                limit.sent(Instant::now());
            }
            ready = sock.readable() => {
                ready.map_err(|source| RaError::Receive {
                    interface: interface.clone(),
                    source,
                })?;
                let fd = sock.as_raw_fd();
                let r = match sock.try_io(Interest::READABLE, || recv_one(fd, &mut buf, &mut cmsg)) {
                    Ok(r) => {
                        consecutive_errors = 0;
                        r
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        // A transient error (ENOBUFS, an interface going down) is logged; a
                        // socket that only fails ends the responder.
                        consecutive_errors += 1;
                        tracing::warn!(%interface, error = %e, "ICMPv6 receive failed");
                        if consecutive_errors >= 100 {
                            return Err(RaError::Receive { interface, source: e });
                        }
                        continue;
                    }
                };
                match classify(&buf[..r.len], r.src, r.hop_limit) {
                    Incoming::Other => {}
                    Incoming::Malformed(reason) => {
                        metrics.malformed.get_or_create(&MalformedLabels { reason }).inc();
                        tracing::debug!(%interface, src = %r.src, ?reason, "router solicitation dropped");
                    }
                    Incoming::Solicitation => {
                        metrics.solicitations.inc();
                        tracing::debug!(%interface, src = %r.src, "router solicitation");
                        let now = Instant::now();
                        match limit.solicited(now) {
                            Decision::Now => {
                                advertise(&sock, to, &metrics, &interface);
                                limit.sent(now);
                            }
                            Decision::At(_) | Decision::Scheduled => {
                                metrics.delayed.inc();
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutral_advertisement_bytes() {
        // RFC 4861 §4.2: type 134, code 0, checksum (kernel), cur hop limit, M|O|reserved,
        // router lifetime, reachable time, retrans timer.
        assert_eq!(
            Advertisement::NEUTRAL.encode(),
            [134, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let a = Advertisement {
            cur_hop_limit: 64,
            managed: true,
            other: true,
            router_lifetime: 1800,
            reachable_time: 30_000,
            retrans_timer: 1000,
        };
        assert_eq!(
            a.encode(),
            [
                134, 0, 0, 0, 64, 0xc0, 0x07, 0x08, 0, 0, 0x75, 0x30, 0, 0, 0x03, 0xe8
            ]
        );
        let o = Advertisement {
            other: true,
            ..Advertisement::NEUTRAL
        };
        assert_eq!(o.encode()[5], 0x40);
    }

    #[test]
    fn solicitation_validation() {
        let ll: Ipv6Addr = "fe80::5054:ff:fe12:3401".parse().unwrap();
        let any = Ipv6Addr::UNSPECIFIED;
        let rs = [133, 0, 0, 0, 0, 0, 0, 0];
        // With a source link-layer address option (type 1, length 1 = 8 bytes).
        let rs_slla = [
            133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x01,
        ];
        let cases: &[(&[u8], Ipv6Addr, Option<u8>, Incoming)] = &[
            (&rs, ll, Some(255), Incoming::Solicitation),
            (&rs, any, Some(255), Incoming::Solicitation),
            (&rs_slla, ll, Some(255), Incoming::Solicitation),
            (&rs, ll, Some(64), Incoming::Malformed(Malformed::HopLimit)),
            (&rs, ll, None, Incoming::Malformed(Malformed::HopLimit)),
            (
                &rs[..7],
                ll,
                Some(255),
                Incoming::Malformed(Malformed::Short),
            ),
            (
                &[133, 1, 0, 0, 0, 0, 0, 0],
                ll,
                Some(255),
                Incoming::Malformed(Malformed::Code),
            ),
            (
                &[133, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
                ll,
                Some(255),
                Incoming::Malformed(Malformed::OptionLength),
            ),
            (
                &rs_slla[..12],
                ll,
                Some(255),
                Incoming::Malformed(Malformed::OptionLength),
            ),
            (
                &rs_slla,
                any,
                Some(255),
                Incoming::Malformed(Malformed::UnspecifiedWithLinkAddr),
            ),
            (&[135, 0, 0, 0], ll, Some(255), Incoming::Other),
            (&[], ll, Some(255), Incoming::Other),
        ];
        for (i, (msg, src, hl, want)) in cases.iter().enumerate() {
            assert_eq!(classify(msg, *src, *hl), *want, "case {i}");
        }
    }

    #[test]
    fn rate_limit_answers_the_first_at_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = RateLimit::new(s(3));
        assert_eq!(l.solicited(t0), Decision::Now);
        l.sent(t0);
        assert_eq!(l.solicited(t0 + s(1)), Decision::At(t0 + s(3)));
        assert_eq!(l.pending(), Some(t0 + s(3)));
        assert_eq!(l.solicited(t0 + s(2)), Decision::Scheduled);
        l.sent(t0 + s(3));
        assert_eq!(l.pending(), None);
        assert_eq!(l.solicited(t0 + s(6)), Decision::Now);
    }

    #[test]
    fn config_problems_name_the_field() {
        assert!(Config::new("br0").validate().is_ok());
        let e = Config {
            interface: String::new(),
            min_delay_between_ras: Duration::ZERO,
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--dhcp-bind-interface") && e.contains("min_delay"),
            "{e}"
        );
        let e = Config::new("a-very-long-interface-name")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("not an interface name"), "{e}");
    }
}
