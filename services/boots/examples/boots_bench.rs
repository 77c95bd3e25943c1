//! Driver for bench/tftp.sh and bench/http.sh (not a product binary):
//!
//! * `boots_bench serve TFTP_ADDR ASSET_DIR HTTP_ADDR HOOKOS_DIR` — boots' TFTP and HTTP
//!   servers until killed (empty store, no iPXE binaries needed).
//! * `boots_bench get SERVER FILE PARALLEL BLKSIZE WINDOWSIZE` — PARALLEL simultaneous TFTP
//!   reads (RFC 7440 receiver; WINDOWSIZE 0 = no option, lockstep), with ACK retransmission;
//!   prints `seconds bytes` for the whole batch. The same client is used against every server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinkerbell_boots::tftp::packet::{self, Packet, opcode};
use tokio::net::UdpSocket;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") if args.len() == 5 => serve(&args[1..]).await,
        Some("get") if args.len() == 6 => {
            let server: SocketAddr = args[1].parse()?;
            let parallel: usize = args[3].parse()?;
            let blksize: usize = args[4].parse()?;
            let window: u64 = args[5].parse()?;
            let file = Arc::new(args[2].clone());
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..parallel {
                let file = file.clone();
                tasks.push(tokio::spawn(async move {
                    get(server, &file, blksize, window).await
                }));
            }
            let mut total = 0usize;
            for t in tasks {
                total += t.await??;
            }
            println!("{:.3} {total}", start.elapsed().as_secs_f64());
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: boots_bench serve TFTP_ADDR ASSET_DIR HTTP_ADDR HOOKOS_DIR | get SERVER FILE PARALLEL BLKSIZE WINDOWSIZE"
        ),
    }
}

async fn serve(a: &[String]) -> anyhow::Result<()> {
    use tinkerbell_boots::{http, tftp};
    let cancel = tokio_util::sync::CancellationToken::new();
    let tftp = tftp::Tftp::start(
        tftp::Config {
            listen: a[0].parse()?,
            ipxe_dir: None,
            asset_dir: Some(a[1].clone().into()),
            ..tftp::Config::default()
        },
        None,
        cancel.child_token(),
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let store = tinkerbell_core::store::embedded::EmbeddedStore::open(dir.path())?;
    let http = http::Http::start(
        &http::Config {
            listen: a[2].parse()?,
            ipxe_dir: None,
            hookos_dir: Some(a[3].clone().into()),
            ..http::Config::default()
        },
        Arc::new(store),
        None,
        None,
        cancel.child_token(),
    )
    .await?;
    eprintln!("tftp {} http {}", tftp.local_addr(), http.local_addr());
    tokio::signal::ctrl_c().await?;
    cancel.cancel();
    Ok(())
}

async fn get(server: SocketAddr, file: &str, blksize: usize, window: u64) -> anyhow::Result<usize> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let bs = blksize.to_string();
    let ws = window.to_string();
    let mut opts: Vec<(&str, &str)> = Vec::new();
    if blksize != 512 {
        opts.push(("blksize", &bs));
    }
    if window > 0 {
        opts.push(("windowsize", &ws));
    }
    let rrq = packet::encode_request(opcode::RRQ, file, "octet", &opts);
    sock.send_to(&rrq, server).await?;
    let mut last_sent: (Vec<u8>, SocketAddr) = (rrq, server);
    let mut buf = vec![0u8; 65536 + 4];
    let (mut blksize, mut window) = (512usize, 1u64);
    let mut expected: u64 = 1;
    let mut since_ack = 0u64;
    let mut total = 0usize;
    let mut tries = 0;
    loop {
        let (n, from) = match tokio::time::timeout(
            Duration::from_millis(500),
            sock.recv_from(&mut buf),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => {
                tries += 1;
                anyhow::ensure!(tries < 20, "{file}: server silent");
                sock.send_to(&last_sent.0, last_sent.1).await?;
                continue;
            }
        };
        tries = 0;
        match Packet::decode(&buf[..n])? {
            Packet::Oack { options } => {
                for (k, v) in options {
                    match k {
                        "blksize" => blksize = v.parse()?,
                        "windowsize" => window = v.parse()?,
                        _ => {}
                    }
                }
                let ack = packet::encode_ack(0);
                sock.send_to(&ack, from).await?;
                last_sent = (ack, from);
            }
            Packet::Data { block, data } => {
                if block == expected as u16 {
                    total += data.len();
                    let last = data.len() < blksize;
                    expected += 1;
                    since_ack += 1;
                    if last || since_ack == window {
                        let ack = packet::encode_ack(block);
                        sock.send_to(&ack, from).await?;
                        last_sent = (ack, from);
                        since_ack = 0;
                    }
                    if last {
                        return Ok(total);
                    }
                } else if block != (expected - 1) as u16 {
                    let ack = packet::encode_ack((expected - 1) as u16);
                    sock.send_to(&ack, from).await?;
                    last_sent = (ack, from);
                    since_ack = 0;
                }
            }
            Packet::Error { code, message } => anyhow::bail!("{file}: error {code} {message}"),
            _ => {}
        }
    }
}
