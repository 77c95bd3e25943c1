//! The listener's limits against clients that hold connections open, on the real server over
//! raw TCP: a header-read deadline (slow or stalled headers are disconnected) and a cap on
//! connections served at once (beyond it nothing is accepted until a connection ends).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tinkerbell_edge::{HttpLimits, HttpServer, ServeOptions};
use tinkerbell_hegel::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Everything the server sends until it closes the connection (a reset counts as closed).
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: hegel\r\nConnection: close\r\n\r\n";

fn is_ok_healthz(got: &[u8]) -> bool {
    let got = String::from_utf8_lossy(got);
    got.starts_with("HTTP/1.1 200") && got.ends_with("\r\n\r\nok")
}

#[tokio::test]
async fn stalled_or_slow_headers_are_disconnected() {
    let limit = Duration::from_millis(400);
    let h = start(
        Config {
            limits: HttpLimits {
                header_read_timeout: limit,
                ..HttpLimits::default()
            },
            ..Config::default()
        },
        vec![],
    )
    .await;
    let started = Instant::now();
    // Half a request line, then nothing.
    let mut partial = connect(h.addr).await;
    partial.write_all(b"GET /heal").await.unwrap();
    // Nothing at all.
    let mut silent = connect(h.addr).await;
    // Headers dribbled a byte at a time, each well within the deadline: the deadline is for
    // the whole header section, not for each read.
    let mut slow = connect(h.addr).await;
    let (mut slow_rd, mut slow_wr) = slow.split();
    let dribble = async {
        for b in b"GET /healthz HTTP/1.1\r\nHost: hegel\r\nX-Padding: "
            .iter()
            .cycle()
        {
            if slow_wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let closed = async {
        let mut buf = [0u8; 64];
        // Closed (EOF or reset) with nothing sent.
        assert!(matches!(slow_rd.read(&mut buf).await, Ok(0) | Err(_)));
    };
    let slow_closed = async {
        tokio::select! {
            () = dribble => panic!("the dribble ended without the server closing"),
            () = closed => {}
        }
    };
    let all = async {
        tokio::join!(
            async { assert!(read_to_close(&mut partial).await.is_empty()) },
            async { assert!(read_to_close(&mut silent).await.is_empty()) },
            slow_closed,
        )
    };
    timeout(Duration::from_secs(10), all)
        .await
        .expect("every stalled connection is closed within the deadline");
    assert!(
        started.elapsed() >= limit - Duration::from_millis(50),
        "not closed before the deadline ({:?})",
        started.elapsed()
    );
    // A prompt client is served as before.
    let mut ok = connect(h.addr).await;
    ok.write_all(HEALTHZ).await.unwrap();
    let got = timeout(Duration::from_secs(10), read_to_close(&mut ok))
        .await
        .unwrap();
    assert!(is_ok_healthz(&got), "{}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn connections_beyond_the_cap_are_not_served_while_the_earlier_ones_hold() {
    let h = start(
        Config {
            limits: HttpLimits {
                max_connections: 2,
                header_read_timeout: Duration::from_secs(60),
            },
            ..Config::default()
        },
        vec![],
    )
    .await;
    // Two connections hold every slot with unfinished requests.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = connect(h.addr).await;
        s.write_all(b"GET /hea").await.unwrap();
        holders.push(s);
    }
    // A third, complete request is not answered while they hold...
    let mut third = connect(h.addr).await;
    third.write_all(HEALTHZ).await.unwrap();
    let mut buf = [0u8; 64];
    match timeout(Duration::from_millis(700), third.read(&mut buf)).await {
        Err(_) => {}
        Ok(r) => panic!(
            "served beyond the cap: {:?}",
            r.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        ),
    }
    // ...and is, as soon as one of them goes away.
    drop(holders.pop());
    let got = timeout(Duration::from_secs(10), read_to_close(&mut third))
        .await
        .expect("served once a slot is free");
    assert!(is_ok_healthz(&got), "{}", String::from_utf8_lossy(&got));
    // The remaining holder still holds its slot; the freed one serves the next client.
    let mut next = connect(h.addr).await;
    next.write_all(HEALTHZ).await.unwrap();
    let got = timeout(Duration::from_secs(10), read_to_close(&mut next))
        .await
        .unwrap();
    assert!(is_ok_healthz(&got), "{}", String::from_utf8_lossy(&got));
}

/// The deadline is for headers only: a slow handler and a slowly read large response (a HookOS
/// initramfs on `tinkerbell serve`'s port) are not cut off by it.
#[tokio::test]
async fn slow_answers_are_not_cut_by_the_header_deadline() {
    use axum::routing::get;
    const BIG: usize = 16 << 20;
    let router = axum::Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                "done"
            }),
        )
        .route("/big", get(|| async { vec![7u8; BIG] }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let options = ServeOptions {
        limits: HttpLimits {
            header_read_timeout: Duration::from_millis(200),
            max_connections: 4,
        },
        ..ServeOptions::new(Duration::from_secs(1))
    };
    let server = HttpServer::serve(listener, router, cancel.child_token(), options).unwrap();
    let addr = server.local_addr();

    let mut slow = connect(addr).await;
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = timeout(Duration::from_secs(10), read_to_close(&mut slow))
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("done"),
        "{got}"
    );

    // Read the big answer slowly: well over the header deadline in all.
    let mut big = connect(addr).await;
    big.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut total = 0;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = timeout(Duration::from_secs(10), big.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        total += n;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        started.elapsed() > Duration::from_millis(400),
        "the read was not slow: {:?}",
        started.elapsed()
    );
    assert!(total > BIG, "got {total} bytes of {BIG} and headers");
}
