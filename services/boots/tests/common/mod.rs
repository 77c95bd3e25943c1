//! Shared test helpers: peers (real client tools), a raw TFTP client with windowsize, and an
//! embedded store with Hardware.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tinkerbell_boots::tftp::packet::{self, Packet, opcode};
use tokio::net::UdpSocket;

/// Whether `tool` can run; with CI=true a missing peer is a failure, otherwise a skip.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is not installed (scripts/install-deps.sh installs it)");
        }
        eprintln!("SKIP: {tool} is not installed (run scripts/install-deps.sh)");
    }
    found
}

/// What a raw download produced.
#[derive(Debug)]
pub struct Got {
    pub data: Vec<u8>,
    pub oack: Vec<(String, String)>,
    pub acks_sent: usize,
}

/// A TFTP read with options, RFC 7440 receiver behaviour (ACK at the end of each window, or
/// the last in-order block on a gap). `drop_first_data` ignores the first DATA packet once,
/// to exercise the server's retransmission. Returns the server's ERROR as `Err((code, msg))`.
pub async fn raw_get(
    server: SocketAddr,
    file: &str,
    mode: &str,
    opts: &[(&str, &str)],
    drop_first_data: bool,
) -> Result<Got, (u16, String)> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rrq = packet::encode_request(opcode::RRQ, file, mode, opts);
    sock.send_to(&rrq, server).await.unwrap();
    let mut buf = vec![0u8; 70_000];
    let mut data = Vec::new();
    let mut oack = Vec::new();
    let mut blksize = 512usize;
    let mut window = 1u64;
    let mut expected: u64 = 1; // next block number wanted (not wrapped)
    let mut since_ack = 0u64;
    let mut acks_sent = 0;
    let mut dropped = !drop_first_data;
    let mut tid: Option<SocketAddr> = None;
    let mut silent = 0;
    loop {
        // RFC 7440 receiver timeout: re-acknowledge the last block received in order.
        let (n, from) = match tokio::time::timeout(
            Duration::from_millis(200),
            sock.recv_from(&mut buf),
        )
        .await
        {
            Ok(r) => {
                silent = 0;
                r.unwrap()
            }
            Err(_) => {
                silent += 1;
                assert!(silent < 100, "server went silent");
                if let Some(t) = tid
                    && (expected > 1 || !oack.is_empty())
                {
                    sock.send_to(&packet::encode_ack((expected - 1) as u16), t)
                        .await
                        .unwrap();
                    acks_sent += 1;
                    since_ack = 0;
                }
                continue;
            }
        };
        if let Some(t) = tid {
            assert_eq!(t, from, "packet from another TID");
        }
        tid = Some(from);
        match Packet::decode(&buf[..n]).unwrap() {
            Packet::Oack { options } => {
                for (k, v) in &options {
                    match k.to_ascii_lowercase().as_str() {
                        "blksize" => blksize = v.parse().unwrap(),
                        "windowsize" => window = v.parse().unwrap(),
                        _ => {}
                    }
                }
                oack = options
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                sock.send_to(&packet::encode_ack(0), from).await.unwrap();
                acks_sent += 1;
            }
            Packet::Data { block, data: d } => {
                if !dropped {
                    dropped = true;
                    continue;
                }
                if block == expected as u16 {
                    data.extend_from_slice(d);
                    let last = d.len() < blksize;
                    since_ack += 1;
                    expected += 1;
                    if last || since_ack == window {
                        sock.send_to(&packet::encode_ack(block), from)
                            .await
                            .unwrap();
                        acks_sent += 1;
                        since_ack = 0;
                    }
                    if last {
                        return Ok(Got {
                            data,
                            oack,
                            acks_sent,
                        });
                    }
                } else if block != (expected - 1) as u16 {
                    // A gap: acknowledge the last block received in order.
                    sock.send_to(&packet::encode_ack((expected - 1) as u16), from)
                        .await
                        .unwrap();
                    acks_sent += 1;
                    since_ack = 0;
                }
            }
            Packet::Error { code, message } => return Err((code, message)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Poll `f` until it holds, for at most 10 s (server-side counters are updated just after the
/// client saw the last packet).
pub async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never true: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
