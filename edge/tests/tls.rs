//! HTTPS on the shared listener, and whom a client trusts: real handshakes over loopback with
//! certificates made by openssl.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use tinkerbell_edge::testing::TestPki;
use tinkerbell_edge::tls::{self, TlsError};
use tinkerbell_edge::{HttpLimits, HttpServer, ServeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

fn router() -> Router {
    Router::new().route(
        "/who",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    )
}

async fn serve(pki: &TestPki, limits: HttpLimits) -> (HttpServer, CancellationToken) {
    let cancel = CancellationToken::new();
    let options = ServeOptions {
        grace: Duration::from_secs(1),
        limits,
        tls: Some(tls::server_config(&pki.cert, &pki.key).unwrap()),
    };
    let server = HttpServer::start(
        "127.0.0.1:0".parse().unwrap(),
        router(),
        cancel.child_token(),
        options,
    )
    .await
    .unwrap();
    (server, cancel)
}

/// GET /who over TLS as `name`, trusting the PEM file `trust`: the body, or the handshake's
/// error.
async fn who(addr: SocketAddr, name: &str, trust: &Path) -> Result<String, std::io::Error> {
    let config = tls::client_config(trust).unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut stream = connector.connect(name, tcp).await?;
    stream
        .write_all(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    let out = String::from_utf8_lossy(&out).to_string();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    Ok(out
        .rsplit("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string())
}

#[tokio::test]
async fn a_ca_signed_certificate_is_trusted_for_its_names_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(dir.path(), &["127.0.0.1", "appliance.test"]);
    let (server, cancel) = serve(&pki, HttpLimits::default()).await;
    let addr = server.local_addr();
    // The peer address reaches the routes as over plain HTTP.
    assert_eq!(who(addr, "127.0.0.1", &pki.ca).await.unwrap(), "127.0.0.1");
    assert_eq!(
        who(addr, "appliance.test", &pki.ca).await.unwrap(),
        "127.0.0.1"
    );
    // A name the certificate does not carry is refused, CA or not.
    let e = who(addr, "other.test", &pki.ca).await.unwrap_err();
    assert!(e.to_string().contains("not valid for name"), "{e}");
    // Trusting another CA (of the same name, even): refused.
    let other = tempfile::tempdir().unwrap();
    let other = TestPki::create(other.path(), &["127.0.0.1"]);
    let e = who(addr, "127.0.0.1", &other.ca).await.unwrap_err();
    assert!(e.to_string().contains("invalid peer certificate"), "{e}");
    cancel.cancel();
    server.join().await.unwrap();
}

#[tokio::test]
async fn a_pinned_certificate_is_trusted_whatever_the_name() {
    let dir = tempfile::tempdir().unwrap();
    // Self-signed, for a name the client will not use.
    let pki = TestPki::self_signed(dir.path(), &["appliance.test"]);
    let (server, cancel) = serve(&pki, HttpLimits::default()).await;
    let addr = server.local_addr();
    assert_eq!(who(addr, "127.0.0.1", &pki.ca).await.unwrap(), "127.0.0.1");
    // Another self-signed certificate is not this one.
    let other = tempfile::tempdir().unwrap();
    let other = TestPki::self_signed(other.path(), &["appliance.test"]);
    assert!(who(addr, "appliance.test", &other.ca).await.is_err());
    cancel.cancel();
    server.join().await.unwrap();
}

#[tokio::test]
async fn a_client_that_stalls_the_handshake_gives_its_slot_back() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(dir.path(), &["127.0.0.1"]);
    let limits = HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        max_connections: 1,
    };
    let (server, cancel) = serve(&pki, limits).await;
    let addr = server.local_addr();
    // Holds the only slot and sends nothing.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server hangs up on it at the deadline...
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf))
        .await
        .expect("the server hangs up on a stalled handshake")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // ...and the slot serves the next client.
    let got = tokio::time::timeout(Duration::from_secs(10), who(addr, "127.0.0.1", &pki.ca))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "127.0.0.1");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut out)).await;
    assert!(!out.starts_with(b"HTTP/1.1 200"));
    cancel.cancel();
    server.join().await.unwrap();
}

#[test]
fn bad_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(dir.path(), &["127.0.0.1"]);
    let other = tempfile::tempdir().unwrap();
    let other = TestPki::create(other.path(), &["127.0.0.1"]);
    // A key that is not the certificate's.
    let e = tls::server_config(&pki.cert, &other.key).unwrap_err();
    assert!(matches!(e, TlsError::Rustls { .. }), "{e}");
    assert!(
        e.to_string().contains(&other.key.display().to_string()),
        "{e}"
    );
    // No such file.
    let missing = dir.path().join("missing.pem");
    let e = tls::server_config(&missing, &pki.key).unwrap_err();
    assert!(matches!(e, TlsError::Read { .. }), "{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    // A key where the certificate belongs, and a certificate where the key belongs.
    let e = tls::server_config(&pki.key, &pki.key).unwrap_err();
    assert!(e.to_string().contains("no certificate"), "{e}");
    let e = tls::server_config(&pki.cert, &pki.cert).unwrap_err();
    assert!(e.to_string().contains("no private key"), "{e}");
    let e = tls::client_config(&pki.key).unwrap_err();
    assert!(e.to_string().contains("no certificate"), "{e}");
}
