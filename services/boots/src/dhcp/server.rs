//! The DHCP socket loop.
//!
//! One UDP socket on `0.0.0.0:67` (or `--dhcp-bind-addr`), with `IP_PKTINFO` on: every request
//! arrives with the index of the interface it came in on and the local address it was sent to,
//! and a broadcast reply is sent with that interface index, so it leaves where the request came
//! in even on a multi-homed host (upstream Smee does the same). `--dhcp-bind-interface`
//! additionally pins the socket to one interface (SO_BINDTODEVICE).
//!
//! The receive loop never waits on the backend: a lookup that completes on the first poll (the
//! in-memory embedded and Kubernetes indexes always do) is answered inline; one that does not
//! (the remote store API) moves to a spawned task, at most `max_in_flight` of them, each with a
//! timeout. Beyond that, requests are dropped and counted — DHCP clients retransmit.

use std::future::Future;
use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use dhcproto::v4::{Message, MessageType};
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use tinkerbell_core::store::{HardwareLookup, StoreError};
use tinkerbell_model::Hardware;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::handler::{self, Outcome};
use super::metrics::{DhcpMetrics, Drop};
use super::netboot::mac_string;
use super::{Config, ConfigError, wire};
use crate::record::Recorder;
use tinkerbell_core::timeline::Phase;

/// Largest datagram read (upstream reads 4096 bytes; DHCP messages are ≤ 576 unless option
/// 57 says more).
const RECV_BUF: usize = 4096;
/// DHCP client port.
const CLIENT_PORT: u16 = 68;
/// DHCP server (and relay) port.
const SERVER_PORT: u16 = 67;

/// Why the DHCP server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The socket could not be set up or bound.
    #[error("cannot listen for DHCP on {addr}{}", iface.as_ref().map(|i| format!(" (interface {i})")).unwrap_or_default())]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Interface, if bound to one.
        iface: Option<String>,
        /// Error.
        #[source]
        source: io::Error,
    },
    /// The server task panicked or was aborted.
    #[error("DHCP server task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
}

/// A request as received.
#[derive(Debug, Clone, Copy)]
struct Received {
    len: usize,
    peer: SocketAddrV4,
    ifindex: u32,
    local: Ipv4Addr,
}

struct Shared {
    cfg: Config,
    lookup: Arc<dyn HardwareLookup>,
    metrics: Arc<DhcpMetrics>,
    sock: UdpSocket,
    in_flight: Arc<Semaphore>,
    recorder: Option<Recorder>,
}

/// A running DHCP server.
#[derive(Debug)]
pub struct DhcpServer {
    local_addr: SocketAddr,
    metrics: Arc<DhcpMetrics>,
    task: JoinHandle<Result<(), DhcpError>>,
}

fn bind_socket(cfg: &Config) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    if let Some(iface) = &cfg.bind_interface {
        s.bind_device(Some(iface.as_bytes()))?;
    }
    socket::setsockopt(&s, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
    // Bursts (a rack powering on, a benchmark) should queue in the kernel, not drop there.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::V4(cfg.bind).into())?;
    Ok(s.into())
}

impl DhcpServer {
    /// Validate `cfg`, bind the socket and start serving. The socket is bound when this
    /// returns; the server stops when `cancel` fires. With a `recorder`, every OFFER and ACK
    /// sent to a known Hardware is recorded in the timeline (detail: the address given, or
    /// the boot file in the proxy modes).
    pub async fn start(
        cfg: &Config,
        lookup: Arc<dyn HardwareLookup>,
        recorder: Option<Recorder>,
        cancel: CancellationToken,
    ) -> Result<DhcpServer, DhcpError> {
        cfg.validate()?;
        let bind_err = |source| DhcpError::Bind {
            addr: cfg.bind_addr(),
            iface: cfg.bind_interface.clone(),
            source,
        };
        let std_sock = bind_socket(cfg).map_err(bind_err)?;
        let sock = UdpSocket::from_std(std_sock).map_err(bind_err)?;
        let local_addr = sock.local_addr().map_err(bind_err)?;
        let metrics = Arc::new(DhcpMetrics::default());
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            lookup,
            metrics: metrics.clone(),
            sock,
            in_flight: Arc::new(Semaphore::new(cfg.max_in_flight)),
            recorder,
        });
        tracing::info!(addr = %local_addr, mode = ?cfg.mode, iface = ?cfg.bind_interface, "DHCP listening");
        let task = tokio::spawn(serve(shared, cancel));
        Ok(DhcpServer {
            local_addr,
            metrics,
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counters.
    pub fn metrics(&self) -> Arc<DhcpMetrics> {
        self.metrics.clone()
    }

    /// Wait for the server to stop.
    pub async fn join(self) -> Result<(), DhcpError> {
        self.task.await.map_err(DhcpError::Join)?
    }
}

/// Read one datagram with its IP_PKTINFO.
fn recv_one(fd: i32, buf: &mut [u8], cmsg: &mut [u8]) -> io::Result<Received> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<SockaddrIn>(fd, &mut iov, Some(cmsg), MsgFlags::empty())
        .map_err(io::Error::from)?;
    let peer = msg
        .address
        .map(|a| SocketAddrV4::new(a.ip(), a.port()))
        .unwrap_or_else(|| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let mut ifindex = 0;
    let mut local = Ipv4Addr::UNSPECIFIED;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::Ipv4PacketInfo(pi) = c {
                ifindex = u32::try_from(pi.ipi_ifindex).unwrap_or(0);
                local = Ipv4Addr::from(u32::from_be(pi.ipi_spec_dst.s_addr));
            }
        }
    }
    Ok(Received {
        len: msg.bytes,
        peer,
        ifindex,
        local,
    })
}

async fn serve(shared: Arc<Shared>, cancel: CancellationToken) -> Result<(), DhcpError> {
    let fd = shared.sock.as_raw_fd();
    let mut buf = vec![0u8; RECV_BUF];
    let mut cmsg = nix::cmsg_space!(nix::libc::in_pktinfo);
    loop {
        let r = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            r = shared.sock.async_io(Interest::READABLE, || recv_one(fd, &mut buf, &mut cmsg)) => r,
        };
        match r {
            Ok(rx) => handle_packet(&shared, &buf[..rx.len], rx),
            Err(e) => {
                // ICMP errors surface here (ECONNREFUSED …); they never stop the listener.
                tracing::debug!(error = %e, "DHCP receive error");
            }
        }
    }
}

/// Poll a future once; `Err(future)` hands it back when it is not ready.
fn poll_once<F: Future + Unpin>(mut f: F) -> Result<F::Output, F> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut f).poll(&mut cx) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(f),
    }
}

type LookupResult = Result<Option<Arc<Hardware>>, StoreError>;

fn handle_packet(shared: &Arc<Shared>, bytes: &[u8], rx: Received) {
    let m = &shared.metrics;
    let req = match wire::decode(bytes) {
        Ok(req) => req,
        Err(e) => {
            m.dropped(Drop::Malformed);
            tracing::debug!(peer = %rx.peer, error = %e, "malformed DHCP packet dropped");
            return;
        }
    };
    m.received(req.opts().msg_type());
    let mac = match handler::precheck(&shared.cfg, &req) {
        Ok(mac) => mac,
        Err(reason) => {
            m.silent(reason);
            tracing::debug!(peer = %rx.peer, xid = req.xid(), ?reason, "not answered");
            return;
        }
    };
    let lookup = shared.lookup.clone();
    let mac_s = mac_string(&mac);
    let fut: Pin<Box<dyn Future<Output = LookupResult> + Send>> = Box::pin(async move {
        // A Hardware whose DHCP is on hold (`tinkerbell move` handing it to another
        // appliance) is answered as if unknown, so two servers never answer one machine.
        let hw = lookup.hardware_by_mac(&mac_s).await?;
        Ok(hw.filter(|h| !h.dhcp_on_hold()))
    });
    match poll_once(fut) {
        Ok(result) => finish(shared, &req, &mac, rx, result),
        Err(fut) => {
            let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
                m.dropped(Drop::Busy);
                return;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                shared
                    .metrics
                    .set_in_flight(shared.cfg.max_in_flight - shared.in_flight.available_permits());
                match tokio::time::timeout(shared.cfg.lookup_timeout, fut).await {
                    Ok(result) => finish(&shared, &req, &mac, rx, result),
                    Err(_) => shared.metrics.dropped(Drop::LookupTimeout),
                }
                drop(permit);
                shared
                    .metrics
                    .set_in_flight(shared.cfg.max_in_flight - shared.in_flight.available_permits());
            });
        }
    }
}

fn finish(shared: &Shared, req: &Message, mac: &[u8; 6], rx: Received, result: LookupResult) {
    let m = &shared.metrics;
    let hw = match result {
        Ok(hw) => hw,
        Err(e) => {
            m.dropped(Drop::LookupError);
            tracing::warn!(mac = %mac_string(mac), error = %e, "Hardware lookup failed");
            return;
        }
    };
    let local = if rx.local.is_unspecified() {
        shared.cfg.bind.ip().to_owned()
    } else {
        rx.local
    };
    match handler::respond(&shared.cfg, req, mac, local, hw.as_deref()) {
        Outcome::Silent(reason) => {
            m.silent(reason);
            tracing::debug!(mac = %mac_string(mac), xid = req.xid(), ?reason, "not answered");
        }
        Outcome::Reply(reply) => {
            let (dest, broadcast) = if reply.opts().msg_type() == Some(MessageType::Nak)
                && req.giaddr().is_unspecified()
            {
                // RFC 2131 §4.1: without a relay, a DHCPNAK is always broadcast (the client
                // may not hold the address it asked for).
                (SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT), true)
            } else {
                destination(req, rx.peer)
            };
            let Some(bytes) = wire::encode(&reply) else {
                m.dropped(Drop::SendError);
                return;
            };
            let ifindex = if broadcast { rx.ifindex } else { 0 };
            match send(&shared.sock, &bytes, dest, ifindex, local) {
                Ok(_) => {
                    m.sent(reply.opts().msg_type());
                    if let (Some(rec), Some(hw)) = (&shared.recorder, &hw) {
                        record(rec, hw, &reply);
                    }
                    tracing::debug!(mac = %mac_string(mac), xid = req.xid(), %dest, yiaddr = %reply.yiaddr(),
                        file = ?handler::boot_file(&reply), "replied");
                }
                Err(e) => {
                    m.dropped(Drop::SendError);
                    tracing::warn!(%dest, error = %e, "DHCP send failed");
                }
            }
        }
    }
}

/// The timeline event for a reply sent to a known Hardware.
fn record(rec: &Recorder, hw: &Hardware, reply: &Message) {
    let phase = match reply.opts().msg_type() {
        Some(MessageType::Offer) => Phase::DhcpOffer,
        Some(MessageType::Ack) => Phase::DhcpAck,
        _ => return,
    };
    rec.hardware(hw, phase, detail(reply));
}

/// What a DHCP event says: the address handed out (none in proxy mode) and the boot file,
/// when the reply has one — so a timeline shows whether a boot was a netboot (and
/// `/netboot-not-allowed` when it was refused) or an installed OS asking for its address.
fn detail(reply: &Message) -> String {
    let file = handler::boot_file(reply).unwrap_or_default();
    match (reply.yiaddr().is_unspecified(), file.is_empty()) {
        (true, _) => file.to_string(),
        (false, true) => reply.yiaddr().to_string(),
        (false, false) => format!("{} boot file {file}", reply.yiaddr()),
    }
}

/// Where a reply goes (RFC 2131 §4.1) and whether it is a broadcast:
/// relayed → `giaddr:67`; client with an address (`ciaddr`) → unicast to it; otherwise the
/// client has no address yet → `255.255.255.255:68` on the receiving interface.
pub fn destination(req: &Message, peer: SocketAddrV4) -> (SocketAddrV4, bool) {
    if !req.giaddr().is_unspecified() {
        return (SocketAddrV4::new(req.giaddr(), SERVER_PORT), false);
    }
    if !req.ciaddr().is_unspecified() && req.opts().msg_type() != Some(MessageType::Discover) {
        let port = if peer.port() == 0 {
            CLIENT_PORT
        } else {
            peer.port()
        };
        return (SocketAddrV4::new(req.ciaddr(), port), false);
    }
    (SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT), true)
}

/// Send with IP_PKTINFO: interface `ifindex` (when not 0) and source address `local`.
fn send(
    sock: &UdpSocket,
    bytes: &[u8],
    dest: SocketAddrV4,
    ifindex: u32,
    local: Ipv4Addr,
) -> io::Result<usize> {
    let pktinfo = nix::libc::in_pktinfo {
        ipi_ifindex: i32::try_from(ifindex).unwrap_or(0),
        ipi_spec_dst: nix::libc::in_addr {
            s_addr: u32::from(local).to_be(),
        },
        ipi_addr: nix::libc::in_addr { s_addr: 0 },
    };
    let addr = SockaddrIn::from(dest);
    let fd = sock.as_raw_fd();
    let iov = [IoSlice::new(bytes)];
    let cmsg = [ControlMessage::Ipv4PacketInfo(&pktinfo)];
    // Non-blocking: a full send buffer is a drop (counted), not a stall of the receive loop.
    sock.try_io(Interest::WRITABLE, || {
        socket::sendmsg(fd, &iov, &cmsg, MsgFlags::empty(), Some(&addr)).map_err(io::Error::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::DhcpOption;

    #[test]
    fn event_detail_names_the_address_and_the_boot_file() {
        let mut m = msg(
            MessageType::Ack,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
        );
        assert_eq!(detail(&m), "");
        m.set_yiaddr(Ipv4Addr::new(10, 99, 0, 101));
        assert_eq!(detail(&m), "10.99.0.101");
        m.set_fname_str("/netboot-not-allowed");
        assert_eq!(detail(&m), "10.99.0.101 boot file /netboot-not-allowed");
        m.set_yiaddr(Ipv4Addr::UNSPECIFIED);
        assert_eq!(detail(&m), "/netboot-not-allowed");
    }

    fn msg(t: MessageType, ciaddr: Ipv4Addr, giaddr: Ipv4Addr) -> Message {
        let mut m = Message::new_with_id(
            1,
            ciaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            giaddr,
            &[1, 2, 3, 4, 5, 6],
        );
        m.opts_mut().insert(DhcpOption::MessageType(t));
        m
    }

    #[test]
    fn reply_destination_table() {
        let z = Ipv4Addr::UNSPECIFIED;
        let relay = Ipv4Addr::new(10, 1, 0, 1);
        let client = Ipv4Addr::new(10, 0, 0, 50);
        let peer0 = SocketAddrV4::new(z, 68);
        let cases = [
            (
                "relayed discover",
                msg(MessageType::Discover, z, relay),
                peer0,
                SocketAddrV4::new(relay, 67),
                false,
            ),
            (
                "relayed renew",
                msg(MessageType::Request, client, relay),
                peer0,
                SocketAddrV4::new(relay, 67),
                false,
            ),
            (
                "fresh discover",
                msg(MessageType::Discover, z, z),
                peer0,
                SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
                true,
            ),
            (
                "selecting request",
                msg(MessageType::Request, z, z),
                peer0,
                SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
                true,
            ),
            (
                "renewing request",
                msg(MessageType::Request, client, z),
                SocketAddrV4::new(client, 68),
                SocketAddrV4::new(client, 68),
                false,
            ),
            (
                "discover with stale ciaddr",
                msg(MessageType::Discover, client, z),
                peer0,
                SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
                true,
            ),
        ];
        for (name, m, peer, want, bcast) in cases {
            assert_eq!(destination(&m, peer), (want, bcast), "{name}");
        }
    }

    #[test]
    fn poll_once_hands_back_pending_futures() {
        assert_eq!(poll_once(Box::pin(async { 7 })).ok(), Some(7));
        let pending = Box::pin(std::future::pending::<u8>());
        assert!(poll_once(pending).is_err());
    }
}
