//! HTTP(S) sources for the image actions: a reqwest client that works in an empty root
//! filesystem (explicit TLS roots, explicit proxies — nothing read from /etc behind our back),
//! and a bounded bridge from the async body stream to the blocking decompress-and-write
//! thread, which counts and hashes every byte it hands over.
//!
//! The bridge is a channel of at most [`CHANNEL_CHUNKS`] body chunks (hyper's chunks are at
//! most a few hundred KiB), so the download runs ahead of the writer by a bounded amount and
//! the two overlap on separate cores. A body that ends early — a connection cut, or fewer
//! bytes than `Content-Length` — is an error, never an end of file.

use std::fmt;
use std::io::{self, BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes};
use sha2::Digest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ActionError, Env};

/// Body chunks buffered between the network and the writer.
pub const CHANNEL_CHUNKS: usize = 32;

/// TLS roots and proxies for downloads.
#[derive(Clone, Default)]
pub struct HttpSettings {
    /// PEM bundle of trusted roots (from `--ca-file`, or the system bundle when one exists).
    /// Empty: only plain http works, unless `insecure`.
    pub ca_pem: Vec<u8>,
    /// Accept any server certificate (`TINKERBELL_INSECURE_TLS`-style; per action also
    /// `SKIP_VERIFY=true`).
    pub insecure: bool,
    /// Proxy for http URLs.
    pub http_proxy: Option<String>,
    /// Proxy for https URLs.
    pub https_proxy: Option<String>,
    /// Hosts that bypass the proxies (curl/Go syntax).
    pub no_proxy: Option<String>,
}

impl fmt::Debug for HttpSettings {
    // Proxy URLs may carry credentials: say only whether they are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("insecure", &self.insecure)
            .field("http_proxy", &self.http_proxy.is_some())
            .field("https_proxy", &self.https_proxy.is_some())
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl HttpSettings {
    /// These settings with the action's own `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` (upper or
    /// lower case; EKS-A puts them into image2disk's environment) and `SKIP_VERIFY`.
    pub(crate) fn for_action(&self, env: &Env<'_>) -> Result<HttpSettings, ActionError> {
        let mut s = self.clone();
        let pick = |a: &str, b: &str| env.get(a).or_else(|| env.get(b)).map(str::to_string);
        s.http_proxy = pick("HTTP_PROXY", "http_proxy").or(s.http_proxy);
        s.https_proxy = pick("HTTPS_PROXY", "https_proxy").or(s.https_proxy);
        s.no_proxy = pick("NO_PROXY", "no_proxy").or(s.no_proxy);
        s.insecure |= env.bool("SKIP_VERIFY", false)?;
        Ok(s)
    }

    /// The trusted roots as reqwest certificates.
    pub fn roots(&self) -> Result<Vec<reqwest::Certificate>, ActionError> {
        if self.ca_pem.is_empty() {
            return Ok(Vec::new());
        }
        reqwest::Certificate::from_pem_bundle(&self.ca_pem).map_err(ActionError::Client)
    }

    /// A client with these settings. Never consults the system's CA store or proxy env.
    pub fn client(&self) -> Result<reqwest::Client, ActionError> {
        install_crypto_provider();
        let mut b = reqwest::Client::builder()
            .tls_certs_only(self.roots()?)
            .tls_danger_accept_invalid_certs(self.insecure)
            .no_proxy()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("tink-worker/", env!("CARGO_PKG_VERSION")));
        let no_proxy = self
            .no_proxy
            .as_deref()
            .and_then(reqwest::NoProxy::from_string);
        if let Some(p) = &self.http_proxy {
            b = b.proxy(
                reqwest::Proxy::http(p)
                    .map_err(ActionError::Client)?
                    .no_proxy(no_proxy.clone()),
            );
        }
        if let Some(p) = &self.https_proxy {
            b = b.proxy(
                reqwest::Proxy::https(p)
                    .map_err(ActionError::Client)?
                    .no_proxy(no_proxy),
            );
        }
        b.build().map_err(ActionError::Client)
    }
}

/// Install rustls' ring provider as the process default (reqwest and oci-client are built
/// without a provider of their own). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An expected digest of the downloaded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// SHA-256, lowercase hex.
    Sha256(String),
    /// SHA-512, lowercase hex.
    Sha512(String),
}

impl Checksum {
    /// Parse `sha256:<hex>` / `sha512:<hex>` (archive2disk's TARFILE_CHECKSUM syntax).
    pub fn parse(name: &'static str, s: &str) -> Result<Checksum, ActionError> {
        let (algo, hex) = s.trim().split_once(':').ok_or(ActionError::InvalidEnv {
            name,
            reason: "expected sha256:<hex> or sha512:<hex>".into(),
        })?;
        Self::of(name, algo, hex)
    }

    fn of(name: &'static str, algo: &str, hex: &str) -> Result<Checksum, ActionError> {
        let hex = hex.trim().to_ascii_lowercase();
        let (len, c) = match algo.to_ascii_lowercase().as_str() {
            "sha256" => (64, Checksum::Sha256(hex.clone())),
            "sha512" => (128, Checksum::Sha512(hex.clone())),
            other => {
                return Err(ActionError::InvalidEnv {
                    name,
                    reason: format!("unsupported digest algorithm {other:?}"),
                });
            }
        };
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ActionError::InvalidEnv {
                name,
                reason: format!("not a {algo} hex digest"),
            });
        }
        Ok(c)
    }

    /// The image checksum from `IMG_CHECKSUM` (`sha256:…`), `IMG_SHA256` or `IMG_SHA512`.
    pub(crate) fn from_image_env(env: &Env<'_>) -> Result<Option<Checksum>, ActionError> {
        if let Some(s) = env.get("IMG_CHECKSUM") {
            return Self::parse("IMG_CHECKSUM", s).map(Some);
        }
        if let Some(s) = env.get("IMG_SHA256") {
            return Self::of("IMG_SHA256", "sha256", s).map(Some);
        }
        if let Some(s) = env.get("IMG_SHA512") {
            return Self::of("IMG_SHA512", "sha512", s).map(Some);
        }
        Ok(None)
    }

    pub(crate) fn hasher(&self) -> Hasher {
        match self {
            Checksum::Sha256(_) => Hasher::Sha256(sha2::Sha256::new()),
            Checksum::Sha512(_) => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Compare with the finished `hasher`.
    pub(crate) fn verify(&self, hasher: Hasher) -> Result<(), ActionError> {
        let (algorithm, expected) = match self {
            Checksum::Sha256(h) => ("sha256", h),
            Checksum::Sha512(h) => ("sha512", h),
        };
        let actual = hasher.finish();
        if &actual == expected {
            Ok(())
        } else {
            Err(ActionError::Checksum {
                algorithm,
                expected: expected.clone(),
                actual,
            })
        }
    }
}

/// A running digest.
pub(crate) enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }
    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// GET `url`; an error status is an error naming the URL.
pub(crate) async fn get(
    client: &reqwest::Client,
    url: &str,
) -> Result<reqwest::Response, ActionError> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|source| ActionError::Http {
            url: url.to_string(),
            source,
        })?;
    if !resp.status().is_success() {
        return Err(ActionError::HttpStatus {
            url: url.to_string(),
            status: resp.status(),
        });
    }
    Ok(resp)
}

/// A blocking reader over a body streamed by a tokio task.
pub(crate) struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
    expected_len: Option<u64>,
    count: u64,
    counter: Arc<AtomicU64>,
    hasher: Option<Hasher>,
    cancel: CancellationToken,
    done: bool,
}

/// Start pumping `stream` into a [`BodyReader`] (on the current runtime).
pub(crate) fn spawn_body<S>(
    stream: S,
    expected_len: Option<u64>,
    hasher: Option<Hasher>,
    cancel: CancellationToken,
) -> BodyReader
where
    S: futures::Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    use futures::StreamExt;
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let token = cancel.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = tokio::select! {
                () = token.cancelled() => break,
                item = stream.next() => item,
            };
            let Some(item) = item else { break };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    BodyReader {
        rx,
        cur: Bytes::new(),
        expected_len,
        count: 0,
        counter: Arc::new(AtomicU64::new(0)),
        hasher,
        cancel,
        done: false,
    }
}

/// The body of `resp` as a `Stream` of io results.
pub(crate) fn response_stream(
    resp: reqwest::Response,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static {
    use futures::TryStreamExt;
    resp.bytes_stream()
        .map_err(|e| io::Error::other(super::error_chain(&e)))
}

impl BodyReader {
    /// A shared counter of the bytes received so far.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.counter.clone()
    }

    /// Read and discard the rest of the body (so the digest covers all of it).
    pub fn drain(&mut self) -> io::Result<()> {
        loop {
            let n = self.fill_buf()?.len();
            if n == 0 {
                return Ok(());
            }
            self.consume(n);
        }
    }

    /// The digest state, once the body is fully read.
    pub fn take_hasher(&mut self) -> Option<Hasher> {
        self.hasher.take()
    }
}

impl BufRead for BodyReader {
    /// The rest of the current body chunk, without copying it: the decoders read straight
    /// out of hyper's buffers.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other("cancelled"));
        }
        while self.cur.is_empty() {
            if self.done {
                return Ok(&[]);
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => {
                    if self.cancel.is_cancelled() {
                        return Err(io::Error::other("cancelled"));
                    }
                    if let Some(n) = self.expected_len
                        && n != self.count
                    {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("body truncated: received {} of {n} bytes", self.count),
                        ));
                    }
                    self.done = true;
                    return Ok(&[]);
                }
            }
        }
        Ok(&self.cur)
    }

    /// Count and hash what the reader took.
    fn consume(&mut self, n: usize) {
        let n = n.min(self.cur.len());
        if let Some(h) = &mut self.hasher {
            h.update(&self.cur[..n]);
        }
        self.cur.advance(n);
        self.count += n as u64;
        self.counter.store(self.count, Ordering::Relaxed);
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = buf.len().min(avail.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_syntax() {
        let h = "a".repeat(64);
        assert_eq!(
            Checksum::parse("X", &format!("sha256:{h}")).unwrap(),
            Checksum::Sha256(h.clone())
        );
        assert!(Checksum::parse("X", &format!("md5:{h}")).is_err());
        assert!(Checksum::parse("X", "sha256:abc").is_err());
        assert!(Checksum::parse("X", &h).is_err());
        let env =
            super::super::ActionSpec::env_from_pairs([format!("IMG_SHA256={}", h.to_uppercase())]);
        assert_eq!(
            Checksum::from_image_env(&Env(&env)).unwrap(),
            Some(Checksum::Sha256(h))
        );
    }

    #[test]
    fn proxy_settings_debug_hides_credentials() {
        let s = HttpSettings {
            https_proxy: Some("http://user:secret@proxy:3128".into()),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("secret"));
    }
}
