//! One read transfer: option negotiation, then DATA in windows of `windowsize` blocks until the
//! last block is acknowledged. Runs in its own task on its own connected socket, whose port is
//! the server's transfer ID.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nix::errno::Errno;
use nix::sys::socket::{self, ControlMessage, MsgFlags, MultiHeaders};
use tokio::io::{AsyncReadExt, BufReader, Interest};
use tokio::net::UdpSocket;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use tinkerbell_core::timeline::Phase;

use super::cache::{Cached, FileHold, FileKey};
use super::files::{self, OpenError, Resolved};
use super::metrics::Outcome;
use super::packet::{self, ErrorCode, Mode, Packet, Request};
use super::server::Shared;

/// A request copied out of the receive buffer.
#[derive(Debug)]
pub(crate) struct OwnedRequest {
    filename: String,
    mode: Mode,
    options: Vec<(String, String)>,
}

impl From<&Request<'_>> for OwnedRequest {
    fn from(r: &Request<'_>) -> Self {
        OwnedRequest {
            filename: r.filename.to_string(),
            mode: r.mode,
            options: r
                .options
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_string()))
                .collect(),
        }
    }
}

impl OwnedRequest {
    fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Serve one request and count how it ended.
pub(crate) async fn run(
    shared: Arc<Shared>,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    req: OwnedRequest,
    cancel: CancellationToken,
) {
    let span = tracing::info_span!("tftp", %peer, file = %req.filename);
    shared.metrics.active().inc();
    let outcome = tokio::select! {
        o = transfer(&shared, local, peer, &req).instrument(span.clone()) => o,
        () = cancel.cancelled() => Outcome::Cancelled,
    };
    shared.metrics.active().dec();
    shared.metrics.outcome(outcome);
    if outcome == Outcome::Completed
        && let Some(rec) = &shared.recorder
    {
        let mac = match files::resolve(&req.filename, &shared.binaries) {
            Ok(Resolved::Binary { mac, .. }) => mac,
            _ => None,
        };
        let ip = peer.ip().to_canonical().to_string();
        rec.by_mac_or_ip(
            mac.as_deref(),
            Some(&ip),
            Phase::Tftp,
            req.filename.clone(),
            false,
        )
        .await;
    }
    span.in_scope(|| tracing::debug!(?outcome, "tftp transfer ended"));
}

/// Where the bytes come from.
enum Source {
    /// In memory: an iPXE binary, or an asset file's shared copy with the hold that lets
    /// concurrent transfers of the same file find it.
    Memory {
        data: io::Cursor<Bytes>,
        _hold: Option<FileHold>,
    },
    File(BufReader<tokio::fs::File>),
}

impl Source {
    fn memory(data: Bytes, hold: Option<FileHold>) -> Source {
        Source::Memory {
            data: io::Cursor::new(data),
            _hold: hold,
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Memory { data, .. } => AsyncReadExt::read(data, buf).await,
            Source::File(f) => AsyncReadExt::read(f, buf).await,
        }
    }

    /// The next `size` bytes without copying, for an in-memory source.
    fn slice(&mut self, size: usize) -> Option<Bytes> {
        match self {
            Source::Memory { data: c, .. } => {
                let data = c.get_ref();
                let at = (c.position() as usize).min(data.len());
                let end = (at + size).min(data.len());
                let out = data.slice(at..end);
                c.set_position(end as u64);
                Some(out)
            }
            Source::File(_) => None,
        }
    }
}

/// Cuts the source into blocks; in netascii mode, translates LF to CR LF and CR to CR NUL.
struct Blocks {
    source: Source,
    netascii: bool,
    pending: Vec<u8>,
    pending_at: usize,
    eof: bool,
}

impl Blocks {
    async fn next(&mut self, size: usize) -> io::Result<Bytes> {
        if !self.netascii
            && let Some(b) = self.source.slice(size)
        {
            return Ok(b);
        }
        let mut out = vec![0u8; size];
        let mut filled = 0;
        if !self.netascii {
            while filled < size {
                let n = self.source.read(&mut out[filled..]).await?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            out.truncate(filled);
            return Ok(out.into());
        }
        let mut raw = vec![0u8; size];
        while filled < size {
            if self.pending_at < self.pending.len() {
                let n = (self.pending.len() - self.pending_at).min(size - filled);
                out[filled..filled + n]
                    .copy_from_slice(&self.pending[self.pending_at..self.pending_at + n]);
                self.pending_at += n;
                filled += n;
                continue;
            }
            if self.eof {
                break;
            }
            let n = self.source.read(&mut raw).await?;
            if n == 0 {
                self.eof = true;
                continue;
            }
            self.pending.clear();
            self.pending_at = 0;
            for b in &raw[..n] {
                match b {
                    b'\n' => self.pending.extend_from_slice(b"\r\n"),
                    b'\r' => self.pending.extend_from_slice(b"\r\0"),
                    b => self.pending.push(*b),
                }
            }
        }
        out.truncate(filled);
        Ok(out.into())
    }
}

/// Negotiated transfer parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) block_size: usize,
    pub(crate) window: usize,
    pub(crate) timeout: Duration,
}

/// Grant the options we support within our limits; the OACK lists exactly what was granted.
pub(crate) fn negotiate(
    options: &[(String, String)],
    size: Option<u64>,
    max_block: u16,
    max_window: u16,
    default_timeout: Duration,
) -> (Params, Vec<(&'static str, String)>) {
    let mut p = Params {
        block_size: 512,
        window: 1,
        timeout: default_timeout,
    };
    let mut oack: Vec<(&'static str, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, value) in options {
        if !seen.insert(name.as_str()) {
            continue;
        }
        match name.as_str() {
            "blksize" => {
                if let Ok(v) = value.trim().parse::<u32>()
                    && v >= 8
                {
                    let v = v.min(u32::from(max_block));
                    p.block_size = v as usize;
                    oack.push(("blksize", v.to_string()));
                }
            }
            "tsize" => {
                if let Some(size) = size {
                    oack.push(("tsize", size.to_string()));
                }
            }
            "timeout" => {
                if let Ok(v) = value.trim().parse::<u8>()
                    && v >= 1
                {
                    p.timeout = Duration::from_secs(u64::from(v));
                    oack.push(("timeout", v.to_string()));
                }
            }
            "windowsize" => {
                if let Ok(v) = value.trim().parse::<u32>()
                    && (1..=65535).contains(&v)
                {
                    let v = v.min(u32::from(max_window));
                    p.window = v as usize;
                    oack.push(("windowsize", v.to_string()));
                }
            }
            _ => {}
        }
    }
    (p, oack)
}

async fn bind(local: Option<SocketAddr>, peer: SocketAddr) -> io::Result<UdpSocket> {
    let ip = match local {
        Some(l) if !l.ip().is_unspecified() => l.ip(),
        _ => match peer.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        },
    };
    let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    // Connected: the kernel filters other peers' datagrams and picks the route's source.
    sock.connect(peer).await?;
    Ok(sock)
}

async fn open(shared: &Shared, req: &OwnedRequest) -> Result<(Source, u64), (ErrorCode, Outcome)> {
    match files::resolve(&req.filename, &shared.binaries) {
        Err(files::PathError::Traversal) => {
            tracing::warn!("tftp: path outside the root refused");
            Err((ErrorCode::AccessViolation, Outcome::Refused))
        }
        Err(files::PathError::Empty) => Err((ErrorCode::FileNotFound, Outcome::NotFound)),
        Ok(Resolved::Binary { name, mac }) => {
            tracing::debug!(binary = %name, mac = ?mac, "tftp: iPXE binary");
            let data = shared.binaries.get(&name).cloned().unwrap_or_default();
            let len = data.len() as u64;
            Ok((Source::memory(data, None), len))
        }
        Ok(Resolved::Asset(rel)) => {
            let Some(assets) = &shared.assets else {
                return Err((ErrorCode::FileNotFound, Outcome::NotFound));
            };
            let root = assets.path().to_path_buf();
            // openat2 needs the directory fd: reopen per request is cheap but blocking.
            let opened = tokio::task::spawn_blocking(move || {
                files::AssetRoot::open(&root)
                    .map_err(OpenError::Io)
                    .and_then(|r| r.open_file(&rel))
            })
            .await;
            let Ok(opened) = opened else {
                return Err((ErrorCode::NotDefined, Outcome::Failed));
            };
            // Every request opens its file; only then may it share a copy of that very file.
            let res = match opened {
                Ok((file, meta)) => match shared.cache.get(FileKey::of(&meta), file).await {
                    Ok(Cached::Memory(hold, data)) => {
                        let len = data.len() as u64;
                        Ok((Source::memory(data, Some(hold)), len))
                    }
                    Ok(Cached::Stream(file)) => {
                        let reader =
                            BufReader::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
                        Ok((Source::File(reader), meta.len()))
                    }
                    Err(e) => Err(OpenError::Io(e)),
                },
                Err(e) => Err(e),
            };
            match res {
                Ok(v) => Ok(v),
                Err(OpenError::NotFound) => Err((ErrorCode::FileNotFound, Outcome::NotFound)),
                Err(OpenError::Denied) => {
                    tracing::warn!("tftp: path resolving outside the root refused");
                    Err((ErrorCode::AccessViolation, Outcome::Refused))
                }
                Err(OpenError::Io(e)) => {
                    tracing::warn!(error = %e, "tftp: cannot open file");
                    Err((ErrorCode::NotDefined, Outcome::Failed))
                }
            }
        }
    }
}

fn error_text(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::FileNotFound => "file not found",
        ErrorCode::AccessViolation => "access violation",
        ErrorCode::IllegalOperation => "illegal TFTP operation",
        _ => "server error",
    }
}

async fn transfer(
    shared: &Shared,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    req: &OwnedRequest,
) -> Outcome {
    let sock = match bind(local, peer).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "tftp: cannot bind a transfer socket");
            return Outcome::Failed;
        }
    };
    if req.mode == Mode::Mail {
        let _ = sock
            .send(&packet::encode_error(
                ErrorCode::IllegalOperation,
                "mail mode is not supported",
            ))
            .await;
        return Outcome::Refused;
    }
    let (source, size) = match open(shared, req).await {
        Ok(v) => v,
        Err((code, outcome)) => {
            let _ = sock
                .send(&packet::encode_error(code, error_text(code)))
                .await;
            return outcome;
        }
    };
    let cfg = &shared.config;
    let netascii = req.mode == Mode::Netascii;
    // The size after netascii translation is unknown without reading the file: no tsize then.
    let (params, oack) = negotiate(
        &req.options,
        (!netascii).then_some(size),
        cfg.max_block_size,
        cfg.max_window_size,
        cfg.timeout,
    );
    let _ = req.option("tsize");
    let mut blocks = Blocks {
        source,
        netascii,
        pending: Vec::new(),
        pending_at: 0,
        eof: false,
    };
    match send_file(shared, &sock, &mut blocks, params, &oack).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "tftp transfer failed");
            let _ = sock
                .send(&packet::encode_error(ErrorCode::NotDefined, "read error"))
                .await;
            Outcome::Failed
        }
    }
}

/// What the peer answered.
enum Reply {
    Ack(u16),
    Error,
    Timeout,
    Gone,
}

/// Wait for the peer's next ACK or ERROR until `deadline`.
///
/// The retransmission timer is one [`Sleep`] per transfer that is armed lazily: the deadline
/// moves forward with every packet sent, but the timer is only re-armed when it fires before
/// the current deadline, so a transfer touches the timer wheel about once per timeout instead
/// of once per packet.
async fn wait(
    sock: &UdpSocket,
    buf: &mut [u8],
    mut timer: Pin<&mut Sleep>,
    deadline: Instant,
) -> Reply {
    loop {
        tokio::select! {
            biased;
            r = sock.recv(buf) => match r {
                // ICMP port unreachable on the connected socket: the client is gone.
                Err(_) => return Reply::Gone,
                Ok(n) => match Packet::decode(&buf[..n]) {
                    Ok(Packet::Ack { block }) => return Reply::Ack(block),
                    Ok(Packet::Error { code, message }) => {
                        tracing::debug!(code, %message, "tftp: client sent an error");
                        return Reply::Error;
                    }
                    _ => continue,
                },
            },
            () = timer.as_mut() => {
                if timer.deadline() < deadline {
                    timer.as_mut().reset(deadline);
                    continue;
                }
                return Reply::Timeout;
            }
        }
    }
}

/// Most DATA packets handed to the kernel in one call.
const BATCH: usize = 32;

/// The most payload one UDP GSO send may carry (one IPv4 datagram's worth).
const MAX_GSO_BYTES: usize = 65507;

/// Sends DATA packets on the connected transfer socket with few system calls and no copies.
/// Each packet is its 4-byte header and the block's bytes as two iovecs, and a window leaves in
/// one call per [`BATCH`] blocks instead of one `send(2)` per block: `sendmsg(2)` with UDP GSO
/// (`UDP_SEGMENT`: the kernel cuts one buffer into equal datagrams, so the stack is traversed
/// once per window, not once per block), or `sendmmsg(2)` when GSO is refused.
#[derive(Debug)]
struct DataSender {
    /// Whether GSO is still worth trying: off once the kernel refused it for this transfer (no
    /// GSO support, or a block larger than the route's MTU).
    gso: bool,
}

impl DataSender {
    fn new() -> DataSender {
        DataSender { gso: true }
    }

    /// Send `blocks` as DATA packets numbered from `first`; returns once every block is handed
    /// to the kernel.
    async fn send<'b>(
        &mut self,
        sock: &UdpSocket,
        mut first: u64,
        mut blocks: impl Iterator<Item = &'b [u8]>,
    ) -> io::Result<()> {
        let fd = sock.as_raw_fd();
        loop {
            let mut head = [[0u8; 4]; BATCH];
            let mut body: [&[u8]; BATCH] = [&[]; BATCH];
            let mut n = 0;
            while n < BATCH
                && let Some(b) = blocks.next()
            {
                head[n] = packet::data_header((first + n as u64) as u16);
                body[n] = b;
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            let mut iov = [[IoSlice::new(&[]); 2]; BATCH];
            for (i, v) in iov[..n].iter_mut().enumerate() {
                *v = [IoSlice::new(&head[i]), IoSlice::new(body[i])];
            }
            let mut at = 0;
            while at < n {
                let todo = &iov[at..n];
                // GSO cuts at a fixed size: every block but the last must be full.
                let seg = body[at].len() + 4;
                let gso = self.gso
                    && todo.len() > 1
                    && seg * todo.len() <= MAX_GSO_BYTES
                    && body[at..n - 1].iter().all(|b| b.len() + 4 == seg);
                sock.writable().await?;
                let r = sock.try_io(Interest::WRITABLE, || {
                    let r = if gso {
                        let size = seg as u16;
                        let cmsg = [ControlMessage::UdpGsoSegments(&size)];
                        socket::sendmsg::<()>(
                            fd,
                            todo.as_flattened(),
                            &cmsg,
                            MsgFlags::empty(),
                            None,
                        )
                        .map(|_| todo.len())
                    } else if let [one] = todo {
                        socket::sendmsg::<()>(fd, one, &[], MsgFlags::empty(), None).map(|_| 1)
                    } else {
                        // Built per call: the headers hold raw pointers and are not `Send`.
                        let mut hdrs = MultiHeaders::<()>::preallocate(todo.len(), None);
                        let none = [None; BATCH];
                        socket::sendmmsg(
                            fd,
                            &mut hdrs,
                            todo,
                            &none[..todo.len()],
                            [] as [ControlMessage<'_>; 0],
                            MsgFlags::empty(),
                        )
                        .map(Iterator::count)
                    };
                    r.map_err(io::Error::from)
                });
                match r {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(k) => at += k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if gso && gso_refused(&e) => {
                        tracing::debug!(error = %e, "tftp: UDP GSO refused, sending one by one");
                        self.gso = false;
                    }
                    Err(e) => return Err(e),
                }
            }
            first += n as u64;
        }
    }
}

/// Errors with which the kernel refuses a GSO send as such (nothing was sent).
fn gso_refused(e: &io::Error) -> bool {
    [
        Errno::EIO,
        Errno::EINVAL,
        Errno::EMSGSIZE,
        Errno::ENOPROTOOPT,
        Errno::EOPNOTSUPP,
    ]
    .iter()
    .any(|x| e.raw_os_error() == Some(*x as i32))
}

async fn send_file(
    shared: &Shared,
    sock: &UdpSocket,
    blocks: &mut Blocks,
    p: Params,
    oack: &[(&'static str, String)],
) -> io::Result<Outcome> {
    let max_retries = shared.config.max_retries;
    let mut buf = vec![0u8; 1024];
    let mut deadline = Instant::now() + p.timeout;
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);

    if !oack.is_empty() {
        let o = packet::encode_oack(oack);
        let mut retries = 0;
        loop {
            if sock.send(&o).await.is_err() {
                return Ok(Outcome::ClientAborted);
            }
            deadline = Instant::now() + p.timeout;
            match wait(sock, &mut buf, timer.as_mut(), deadline).await {
                Reply::Ack(0) => break,
                Reply::Ack(_) => continue,
                Reply::Error => return Ok(Outcome::ClientAborted),
                Reply::Gone => return Ok(Outcome::ClientAborted),
                Reply::Timeout => {
                    retries += 1;
                    if retries > max_retries {
                        return Ok(Outcome::TimedOut);
                    }
                    shared.metrics.retransmit(1);
                }
            }
        }
    }

    // Blocks not yet acknowledged; the first is block number `base`.
    let mut window: VecDeque<Bytes> = VecDeque::with_capacity(p.window);
    let mut out = DataSender::new();
    let mut base: u64 = 1;
    let mut next_send: u64 = 1;
    let mut highest_sent: u64 = 0;
    let mut last: Option<u64> = None;
    let mut retries = 0u32;
    // The base we last rewound to on a duplicate ACK: one rewind per loss, not one per
    // duplicate (a client may repeat its ACK for every out-of-order block it sees).
    let mut rewound_at: Option<u64> = None;
    loop {
        while window.len() < p.window && last.is_none() {
            let b = blocks.next(p.block_size).await?;
            let num = base + window.len() as u64;
            if b.len() < p.block_size {
                last = Some(num);
            }
            window.push_back(b);
        }
        let end = base + window.len() as u64;
        if next_send < end {
            let from = (next_send - base) as usize;
            let blocks = window.range(from..).map(|b| &b[..]);
            if out.send(sock, next_send, blocks).await.is_err() {
                // ICMP port unreachable from an earlier datagram: the client is gone.
                return Ok(Outcome::ClientAborted);
            }
            if end - 1 > highest_sent {
                let new = (highest_sent + 1).max(next_send);
                let bytes: usize = window.range((new - base) as usize..).map(Bytes::len).sum();
                shared.metrics.sent(bytes);
                highest_sent = end - 1;
            }
            next_send = end;
            deadline = Instant::now() + p.timeout;
        }
        match wait(sock, &mut buf, timer.as_mut(), deadline).await {
            Reply::Ack(n) => {
                // Which block does this 16-bit number mean? One of base-1 ..= end-1.
                let diff = u64::from(n.wrapping_sub((base - 1) as u16));
                if diff > window.len() as u64 {
                    continue; // stale or bogus
                }
                let acked = base - 1 + diff;
                if diff == 0 {
                    // A duplicate ACK. In lockstep, answering it would double every later
                    // packet (Sorcerer's Apprentice); the timeout resends instead. In a window
                    // it is the client's way of saying a block after `acked` went missing.
                    if p.window > 1 && next_send > base && rewound_at != Some(base) {
                        shared.metrics.retransmit(next_send - base);
                        next_send = base;
                        rewound_at = Some(base);
                    }
                    continue;
                }
                for _ in 0..diff {
                    window.pop_front();
                }
                base = acked + 1;
                retries = 0;
                if acked < highest_sent && p.window > 1 {
                    // An ACK inside the window: the blocks after it were lost (RFC 7440 §4);
                    // send again from there instead of waiting for the timeout.
                    shared.metrics.retransmit(next_send - base);
                    next_send = base;
                    rewound_at = Some(base);
                } else {
                    next_send = next_send.max(base);
                }
                if last == Some(acked) {
                    return Ok(Outcome::Completed);
                }
            }
            Reply::Error | Reply::Gone => return Ok(Outcome::ClientAborted),
            Reply::Timeout => {
                retries += 1;
                if retries > max_retries {
                    return Ok(Outcome::TimedOut);
                }
                shared.metrics.retransmit(next_send - base);
                next_send = base;
                deadline = Instant::now() + p.timeout;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn negotiation_table() {
        let d = Duration::from_secs(1);
        // (options, size, max block, max window) -> (block, window, timeout s, oack)
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            Option<u64>,
            (usize, usize, u64),
            &'a [(&'a str, &'a str)],
        );
        let cases: &[Case] = &[
            (&[], Some(10), (512, 1, 1), &[]),
            (
                &[("blksize", "1468"), ("tsize", "0")],
                Some(3000),
                (1468, 1, 1),
                &[("blksize", "1468"), ("tsize", "3000")],
            ),
            // Above our limits: granted at the limit.
            (
                &[("blksize", "65464"), ("windowsize", "1000")],
                None,
                (9000, 64, 1),
                &[("blksize", "9000"), ("windowsize", "64")],
            ),
            // Out of range values are ignored, not answered.
            (
                &[
                    ("blksize", "7"),
                    ("timeout", "0"),
                    ("windowsize", "0"),
                    ("tsize", "0"),
                ],
                None,
                (512, 1, 1),
                &[],
            ),
            (
                &[("timeout", "5"), ("windowsize", "16"), ("foo", "bar")],
                Some(1),
                (512, 16, 5),
                &[("timeout", "5"), ("windowsize", "16")],
            ),
            // First occurrence wins.
            (
                &[("blksize", "1024"), ("blksize", "2048")],
                None,
                (1024, 1, 1),
                &[("blksize", "1024")],
            ),
        ];
        for (o, size, (b, w, t), want) in cases {
            let (p, oack) = negotiate(&opts(o), *size, 9000, 64, d);
            assert_eq!(
                p,
                Params {
                    block_size: *b,
                    window: *w,
                    timeout: Duration::from_secs(*t)
                },
                "{o:?}"
            );
            let want: Vec<(&str, String)> = want.iter().map(|(a, b)| (*a, b.to_string())).collect();
            assert_eq!(oack, want, "{o:?}");
        }
    }

    /// Every way a window leaves (GSO, sendmmsg, one sendmsg) delivers the same datagrams, in
    /// order, across more than one batch and with a short last block.
    #[tokio::test]
    async fn data_sender_delivers_every_block_in_order() {
        let data: Vec<u8> = (0..(BATCH * 2 + 7) * 512 + 100)
            .map(|i| (i % 251) as u8)
            .collect();
        let blocks: Vec<&[u8]> = data.chunks(512).collect();
        for gso in [true, false] {
            let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            tx.connect(rx.local_addr().unwrap()).await.unwrap();
            let mut out = DataSender { gso };
            // Block numbers wrap past 65535.
            let first = 65530u64;
            out.send(&tx, first, blocks.iter().copied()).await.unwrap();
            out.send(&tx, first, blocks[..1].iter().copied())
                .await
                .unwrap();
            // Loopback takes UDP GSO (Linux >= 4.18): no silent fallback.
            assert_eq!(out.gso, gso);
            let mut buf = vec![0u8; 2048];
            for (i, want) in blocks.iter().chain(&blocks[..1]).enumerate() {
                let n = rx.recv(&mut buf).await.unwrap();
                let num = ((first + (i % blocks.len()) as u64) % 65536) as u16;
                match Packet::decode(&buf[..n]).unwrap() {
                    Packet::Data { block, data } => {
                        assert_eq!(block, num, "gso {gso}, datagram {i}");
                        assert_eq!(data, *want, "gso {gso}, datagram {i}");
                    }
                    other => panic!("gso {gso}: {other:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn netascii_translation() {
        let data = Bytes::from_static(b"a\nb\rc\n");
        let mut b = Blocks {
            source: Source::memory(data, None),
            netascii: true,
            pending: Vec::new(),
            pending_at: 0,
            eof: false,
        };
        let mut all = Vec::new();
        loop {
            let blk = b.next(4).await.unwrap();
            let short = blk.len() < 4;
            all.extend(blk);
            if short {
                break;
            }
        }
        assert_eq!(all, b"a\r\nb\r\0c\r\n");
    }
}
