//! The TFTP server against real clients (tftp-hpa, curl) and a raw client for the options no
//! CLI offers (windowsize), on 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{eventually, have, pattern, raw_get};
use tinkerbell_boots::tftp::metrics::{DropReason, Outcome};
use tinkerbell_boots::tftp::packet::{self, Packet, opcode};
use tinkerbell_boots::tftp::{Config, Tftp};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

struct Lab {
    tftp: Tftp,
    cancel: CancellationToken,
    ipxe: tempfile::TempDir,
    assets: tempfile::TempDir,
    _outside: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

const BIG: usize = 3 * 1024 * 1024 + 1234;

/// A server with three fake iPXE binaries and an asset dir holding a big file, a text file,
/// an escaping symlink and a file whose size is a multiple of 512.
async fn lab(tweak: impl FnOnce(&mut Config)) -> Lab {
    let ipxe = tempfile::tempdir().unwrap();
    for (name, seed) in [("undionly.kpxe", 1), ("ipxe.efi", 2), ("snponly.efi", 3)] {
        std::fs::write(
            ipxe.path().join(name),
            pattern(70_000 + seed * 1000, seed as u32),
        )
        .unwrap();
    }
    std::fs::write(ipxe.path().join("README"), b"not a binary").unwrap();
    let assets = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    std::fs::create_dir(assets.path().join("dir")).unwrap();
    std::fs::write(assets.path().join("dir/big.bin"), pattern(BIG, 9)).unwrap();
    std::fs::write(assets.path().join("exact.bin"), pattern(4096, 5)).unwrap();
    std::fs::write(
        assets.path().join("notes.txt"),
        b"line one\nline two\r\nend\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), assets.path().join("escape"))
        .unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ipxe_dir: Some(ipxe.path().to_path_buf()),
        asset_dir: Some(assets.path().to_path_buf()),
        ..Config::default()
    };
    tweak(&mut config);
    let cancel = CancellationToken::new();
    let tftp = Tftp::start(config, None, cancel.child_token())
        .await
        .unwrap();
    Lab {
        tftp,
        cancel,
        ipxe,
        assets,
        _outside: outside,
    }
}

impl Lab {
    fn port(&self) -> u16 {
        self.tftp.local_addr().port()
    }
    fn ipxe(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.ipxe.path().join(name)).unwrap()
    }
    fn asset(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.assets.path().join(name)).unwrap()
    }
}

fn tftp_hpa(port: u16, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("tftp")
        .current_dir(dir)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_hpa_downloads_binaries_and_assets_byte_identical() {
    if !have("tftp") {
        return;
    }
    let lab = lab(|_| {}).await;
    let out = tempfile::tempdir().unwrap();
    let port = lab.port();
    let dir = out.path().to_path_buf();
    let res = tokio::task::spawn_blocking(move || {
        let cases = [
            ("undionly.kpxe", "a"),
            // tftp-hpa reads `a:b` as host:file, so the dash MAC form here.
            ("52-54-00-12-34-56/ipxe.efi", "b"),
            ("/snponly.efi", "c"),
            ("dir/big.bin", "d"),
            ("exact.bin", "e"),
        ];
        let mut outs = Vec::new();
        for (remote, local) in cases {
            let o = tftp_hpa(port, &dir, &["-m", "binary", "-c", "get", remote, local]);
            outs.push((remote, o));
        }
        // tftp-hpa's default mode is netascii: the server translates, the client undoes it.
        let o = tftp_hpa(port, &dir, &["-c", "get", "notes.txt", "f"]);
        outs.push(("notes.txt", o));
        outs
    })
    .await
    .unwrap();
    for (remote, o) in &res {
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "tftp get {remote}: {} {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let read = |n: &str| std::fs::read(out.path().join(n)).unwrap();
    assert_eq!(read("a"), lab.ipxe("undionly.kpxe"));
    assert_eq!(read("b"), lab.ipxe("ipxe.efi"));
    assert_eq!(read("c"), lab.ipxe("snponly.efi"));
    assert_eq!(read("d"), lab.asset("dir/big.bin"));
    assert_eq!(read("e"), lab.asset("exact.bin"));
    assert_eq!(read("f"), lab.asset("notes.txt"));
    let m = lab.tftp.metrics();
    eventually("6 completed", || m.outcomes(Outcome::Completed) == 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_downloads_with_blksize() {
    if !have("curl") {
        return;
    }
    let lab = lab(|_| {}).await;
    let port = lab.port();
    for (path, blksize, want) in [
        ("dir/big.bin", Some("1468"), lab.asset("dir/big.bin")),
        ("dir/big.bin", Some("8192"), lab.asset("dir/big.bin")),
        (
            "aa-bb-cc-dd-ee-ff/undionly.kpxe",
            None,
            lab.ipxe("undionly.kpxe"),
        ),
        ("exact.bin", Some("512"), lab.asset("exact.bin")),
    ] {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sS", "--fail"]);
        if let Some(b) = blksize {
            cmd.args(["--tftp-blksize", b]);
        }
        cmd.arg(format!("tftp://127.0.0.1:{port}/{path}"));
        let o = cmd.output().await.unwrap();
        assert!(
            o.status.success(),
            "curl {path} {blksize:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.stdout == want, "curl {path} {blksize:?}: bytes differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowsize_blksize_tsize_with_raw_client() {
    let lab = lab(|c| c.max_window_size = 32).await;
    let addr = lab.tftp.local_addr();
    let big = lab.asset("dir/big.bin");
    // windowsize 16: 3 MiB in blocks of 1428 → one ACK per 16 blocks.
    let g = raw_get(
        addr,
        "dir/big.bin",
        "octet",
        &[("blksize", "1428"), ("tsize", "0"), ("windowsize", "16")],
        false,
    )
    .await
    .unwrap();
    assert_eq!(g.data, big);
    assert_eq!(
        g.oack,
        vec![
            ("blksize".to_string(), "1428".to_string()),
            ("tsize".to_string(), BIG.to_string()),
            ("windowsize".to_string(), "16".to_string()),
        ]
    );
    let blocks = BIG / 1428 + 1;
    // One ACK per window (a few more if a receive timeout fired on a loaded machine).
    assert!(
        g.acks_sent > blocks.div_ceil(16) && g.acks_sent < blocks / 4,
        "{} ACKs for {blocks} blocks",
        g.acks_sent
    );
    // A window above our limit is granted at the limit.
    let g = raw_get(addr, "exact.bin", "octet", &[("windowsize", "1000")], false)
        .await
        .unwrap();
    assert_eq!(g.oack, vec![("windowsize".to_string(), "32".to_string())]);
    assert_eq!(g.data, lab.asset("exact.bin"));
    // blksize 8 on 600 kB: 75,000 blocks, so the 16-bit block number rolls over.
    std::fs::write(lab.assets.path().join("roll.bin"), pattern(600_000, 7)).unwrap();
    let g = raw_get(
        addr,
        "roll.bin",
        "octet",
        &[("blksize", "8"), ("windowsize", "32")],
        false,
    )
    .await
    .unwrap();
    assert!(g.data == pattern(600_000, 7), "rollover transfer differs");
    // Larger than what is read whole into memory: streamed from the file.
    std::fs::write(lab.assets.path().join("huge.bin"), pattern(17 << 20, 8)).unwrap();
    let g = raw_get(
        addr,
        "huge.bin",
        "octet",
        &[("blksize", "1428"), ("windowsize", "16"), ("tsize", "0")],
        false,
    )
    .await
    .unwrap();
    assert!(g.data == pattern(17 << 20, 8), "streamed transfer differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_packet_is_retransmitted_after_timeout() {
    let lab = lab(|c| c.timeout = Duration::from_millis(200)).await;
    let addr = lab.tftp.local_addr();
    // Lockstep, first DATA ignored by the client.
    let g = raw_get(addr, "undionly.kpxe", "octet", &[], true)
        .await
        .unwrap();
    assert_eq!(g.data, lab.ipxe("undionly.kpxe"));
    // Window of 8, first DATA ignored: the client reports the gap, the server resends.
    let g = raw_get(addr, "ipxe.efi", "octet", &[("windowsize", "8")], true)
        .await
        .unwrap();
    assert_eq!(g.data, lab.ipxe("ipxe.efi"));
    // An OACK nobody acknowledges is retransmitted (client asked for timeout 1).
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rrq = packet::encode_request(opcode::RRQ, "exact.bin", "octet", &[("timeout", "1")]);
    sock.send_to(&rrq, addr).await.unwrap();
    let mut buf = [0u8; 600];
    for _ in 0..2 {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            Packet::decode(&buf[..n]).unwrap(),
            Packet::Oack { .. }
        ));
    }
    let m = lab.tftp.metrics();
    eventually("2 completed", || m.outcomes(Outcome::Completed) >= 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_writes_and_missing_files_are_refused() {
    let lab = lab(|_| {}).await;
    let addr = lab.tftp.local_addr();
    for (path, code) in [
        ("../../../../etc/passwd", 2),
        ("dir/../../etc/passwd", 2),
        ("..\\..\\etc\\passwd", 2),
        ("escape", 2),
        ("/etc/passwd", 1),
        ("nope.bin", 1),
        ("dir", 1),
    ] {
        let e = raw_get(addr, path, "octet", &[], false).await.unwrap_err();
        assert_eq!(e.0, code, "{path}: {e:?}");
    }
    // A write request is refused with an access violation.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(
        &packet::encode_request(opcode::WRQ, "upload.bin", "octet", &[]),
        addr,
    )
    .await
    .unwrap();
    let mut buf = [0u8; 600];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        Packet::decode(&buf[..n]).unwrap(),
        Packet::Error { code: 2, .. }
    ));
    assert!(!lab.assets.path().join("upload.bin").exists());
    let m = lab.tftp.metrics();
    eventually("5 refused", || m.outcomes(Outcome::Refused) == 5).await;
    eventually("3 not found", || m.outcomes(Outcome::NotFound) == 3).await;

    if have("tftp") {
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("local.bin"), b"data").unwrap();
        let port = lab.port();
        let dir: PathBuf = out.path().to_path_buf();
        let (get, put) = tokio::task::spawn_blocking(move || {
            (
                tftp_hpa(
                    port,
                    &dir,
                    &["-m", "binary", "-c", "get", "../../etc/passwd", "x"],
                ),
                tftp_hpa(
                    port,
                    &dir,
                    &["-m", "binary", "-c", "put", "local.bin", "up.bin"],
                ),
            )
        })
        .await
        .unwrap();
        let get_err = String::from_utf8_lossy(&get.stderr).to_string()
            + &String::from_utf8_lossy(&get.stdout);
        let put_err = String::from_utf8_lossy(&put.stderr).to_string()
            + &String::from_utf8_lossy(&put.stdout);
        assert!(
            get_err.contains("Access violation") || get_err.contains("access violation"),
            "{get_err}"
        );
        assert!(
            put_err.contains("write requests are not accepted"),
            "{put_err}"
        );
        assert!(!lab.assets.path().join("up.bin").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_counted_and_busy_slots_drop() {
    let lab = lab(|c| {
        c.max_transfers = 1;
        c.timeout = Duration::from_millis(400);
    })
    .await;
    let addr = lab.tftp.local_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for junk in [
        &b""[..],
        b"\x00",
        b"\x00\x09zz",
        b"\x00\x01noterminator",
        b"\x00\x01f\x00badmode\x00",
    ] {
        sock.send_to(junk, addr).await.unwrap();
    }
    sock.send_to(&packet::encode_ack(3), addr).await.unwrap();
    // Occupy the only slot: a client that never acknowledges.
    let staller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    staller
        .send_to(
            &packet::encode_request(opcode::RRQ, "exact.bin", "octet", &[]),
            addr,
        )
        .await
        .unwrap();
    let mut buf = [0u8; 600];
    tokio::time::timeout(Duration::from_secs(5), staller.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let e = tokio::time::timeout(
        Duration::from_millis(800),
        raw_get(addr, "undionly.kpxe", "octet", &[], false),
    )
    .await;
    assert!(
        e.is_err(),
        "second transfer must not be served while the slot is busy"
    );
    let m = lab.tftp.metrics();
    assert_eq!(m.drops(DropReason::Malformed), 5);
    assert_eq!(m.drops(DropReason::Unexpected), 1);
    assert_eq!(m.drops(DropReason::Busy), 1);
    // The listener is alive and serves once the slot frees (the staller times out).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Ok(g)) = tokio::time::timeout(
            Duration::from_secs(3),
            raw_get(addr, "undionly.kpxe", "octet", &[], false),
        )
        .await
        {
            assert_eq!(g.data, lab.ipxe("undionly.kpxe"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server never recovered"
        );
    }
    eventually("1 timed out", || m.outcomes(Outcome::TimedOut) == 1).await;
}

#[tokio::test]
async fn debian_ipxe_binaries_are_served_by_default() {
    let dir = Path::new(tinkerbell_boots::tftp::files::DEBIAN_IPXE_DIR);
    if !dir.join("undionly.kpxe").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Debian's ipxe package is not installed"
        );
        eprintln!("SKIP: Debian's ipxe package is not installed");
        return;
    }
    let cancel = CancellationToken::new();
    let tftp = Tftp::start(
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        },
        None,
        cancel.child_token(),
    )
    .await
    .unwrap();
    for (req, file) in [
        ("undionly.kpxe", "undionly.kpxe"),
        ("ipxe.efi", "ipxe.efi"),
        ("snponly.efi", "snponly.efi"),
        ("02:00:00:00:00:01/snp-x86_64.efi", "snponly.efi"),
    ] {
        let g = raw_get(
            tftp.local_addr(),
            req,
            "octet",
            &[("blksize", "1432")],
            false,
        )
        .await
        .unwrap();
        assert_eq!(g.data, std::fs::read(dir.join(file)).unwrap(), "{req}");
    }
    cancel.cancel();
    tftp.join().await.unwrap();
}

/// Send `n` read requests for `file` from `from` (a loopback address other than 127.0.0.1),
/// from sockets that never acknowledge; returns the sockets, which must stay open (a closed
/// one would answer with ICMP port unreachable and end its transfers early). Paced in batches
/// closed by a junk datagram the listener counts, so none is lost in the request socket's
/// receive buffer; returns the number of junk datagrams sent.
async fn silent_requests(
    addr: std::net::SocketAddr,
    from: [u8; 4],
    n: usize,
    files: &[&str],
    m: &tinkerbell_boots::tftp::TftpMetrics,
    junk_sent: &mut u64,
) -> Vec<UdpSocket> {
    let mut socks = Vec::new();
    for i in 0..n {
        // A new source port every 4 requests, as a flood with fresh transfer IDs would have.
        if i % 4 == 0 {
            let s = UdpSocket::bind((std::net::Ipv4Addr::from(from), 0))
                .await
                .unwrap();
            socks.push(s);
        }
        let rrq = packet::encode_request(opcode::RRQ, files[i % files.len()], "octet", &[]);
        socks.last().unwrap().send_to(&rrq, addr).await.unwrap();
        if i % 32 == 31 || i == n - 1 {
            socks[0].send_to(b"\x00", addr).await.unwrap();
            *junk_sent += 1;
            let want = *junk_sent;
            eventually("flood batch processed", || {
                m.drops(DropReason::Malformed) == want
            })
            .await;
        }
    }
    socks
}

/// Item 8 of the security review: 512 requests that are never acknowledged, from one address,
/// plus 64 from each of four more, must not lock out a real client on another address. Before
/// the per-client cap they took all 512 transfer slots for `(max_retries + 1) * timeout` and
/// tftp-hpa's request was dropped (it retransmits only after 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_flood_does_not_lock_out_tftp_hpa() {
    if !have("tftp") {
        return;
    }
    // Default limits; a longer timeout keeps the flood's transfers alive for the whole test.
    let lab = lab(|c| c.timeout = Duration::from_secs(3)).await;
    let addr = lab.tftp.local_addr();
    let m = lab.tftp.metrics();
    let files = ["exact.bin", "undionly.kpxe"];
    let mut junk = 0;
    let mut stallers = silent_requests(addr, [127, 0, 0, 2], 512, &files, m, &mut junk).await;
    for last in 3..=6 {
        stallers.extend(silent_requests(addr, [127, 0, 0, last], 64, &files, m, &mut junk).await);
    }
    // Each flooding address holds its 8 slots; the rest of its requests were dropped.
    assert_eq!(m.active_transfers(), 5 * 8);
    assert_eq!(m.drops(DropReason::ClientBusy), 512 + 4 * 64 - 5 * 8);

    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    // tftp-hpa retransmits its request after 5 s: finishing well before proves the first one
    // was served.
    let got = tokio::time::timeout(
        Duration::from_secs(4),
        tokio::process::Command::new("tftp")
            .current_dir(out.path())
            .kill_on_drop(true)
            .args(["127.0.0.1", &lab.port().to_string()])
            .args(["-m", "binary", "-c", "get", "undionly.kpxe", "got"])
            .output(),
    )
    .await;
    let took = started.elapsed();
    let o = got
        .unwrap_or_else(|_| panic!("tftp-hpa not served within 4 s while flooded"))
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "tftp get: {} {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        std::fs::read(out.path().join("got")).unwrap() == lab.ipxe("undionly.kpxe"),
        "tftp-hpa's copy differs"
    );
    eprintln!("tftp-hpa served in {took:?} while flooded");
    assert_eq!(m.drops(DropReason::Busy), 0, "global slots exhausted");
    eventually("tftp-hpa's transfer completed", || {
        m.outcomes(Outcome::Completed) == 1
    })
    .await;
    // The flood's transfers are still waiting for their first ACK: the slots were held.
    assert_eq!(m.active_transfers(), 5 * 8);
    drop(stallers);
}

/// Concurrent transfers of one asset file share one copy in memory, which is freed when the
/// last of them ends; a transfer of that file meanwhile is served from the same copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_of_one_file_hold_one_copy() {
    let lab = lab(|c| c.timeout = Duration::from_millis(500)).await;
    let addr = lab.tftp.local_addr();
    let m = lab.tftp.metrics();
    let mut junk = 0;
    // 16 transfers stalled on their first block (8 per address, the per-client limit).
    let mut stallers = Vec::new();
    for last in [2, 3] {
        stallers.extend(
            silent_requests(addr, [127, 0, 0, last], 8, &["dir/big.bin"], m, &mut junk).await,
        );
    }
    eventually("16 transfers in progress", || m.active_transfers() == 16).await;
    assert_eq!(m.file_loads(), 1);
    assert_eq!(m.file_cache_bytes(), BIG as i64);
    // One more, to the end, from the same copy.
    let g = raw_get(
        addr,
        "dir/big.bin",
        "octet",
        &[("blksize", "1428"), ("windowsize", "16")],
        false,
    )
    .await
    .unwrap();
    assert!(g.data == lab.asset("dir/big.bin"), "shared copy differs");
    assert_eq!(m.file_loads(), 1);
    assert_eq!(m.file_cache_bytes(), BIG as i64);
    // The stalled ones give up (6 timeouts of 0.5 s): the copy is freed with the last.
    eventually("16 timed out", || m.outcomes(Outcome::TimedOut) == 16).await;
    eventually("copy freed", || m.file_cache_bytes() == 0).await;
    // The next transfer reads the file again, and sees what is on disk now.
    std::fs::write(lab.assets.path().join("dir/big.bin"), pattern(BIG, 10)).unwrap();
    let g = raw_get(addr, "dir/big.bin", "octet", &[("blksize", "1428")], false)
        .await
        .unwrap();
    assert!(g.data == pattern(BIG, 10), "stale copy served");
    assert_eq!(m.file_loads(), 2);
    eventually("copy freed", || m.file_cache_bytes() == 0).await;
    drop(stallers);
}
