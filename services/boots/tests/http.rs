//! The iPXE HTTP routes on 127.0.0.1 over an embedded store: golden scripts for several
//! Hardware, lookup by source address and trusted X-Forwarded-For, allowPXE, binaries, HookOS
//! artifacts with Range and conditional requests, metrics.
//!
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test -p tinkerbell-boots --test http`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use common::pattern;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tinkerbell_boots::http::{Config, Http, HttpMetrics, Route, ScriptConfig};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Object, Store};
use tinkerbell_core::worker_token::WorkerTokenKey;
use tokio_util::sync::CancellationToken;

fn hw(name: &str, mac: &str, ip: &str, extra: Value) -> Value {
    let mut v = json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": "Hardware",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "interfaces": [{
                "dhcp": {"mac": mac, "ip": {"address": ip, "netmask": "255.0.0.0", "family": 4}},
                "netboot": {"allowPXE": true, "allowWorkflow": true}
            }],
            "metadata": {"facility": {"facility_code": "lab1"}}
        }
    });
    merge(&mut v, extra);
    v
}

/// Hardware `name` whose one interface (MAC `02:00:00:00:00:0<n>`, no reserved address)
/// has `netboot`.
fn mac_only(name: &str, n: u8, netboot: Value) -> Value {
    let mac = format!("02:00:00:00:00:0{n}");
    let extra = json!({"spec": {"interfaces": [{"dhcp": {"mac": mac}, "netboot": netboot}]}});
    hw(name, &mac, &format!("127.0.1.{n}"), extra)
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn fixtures() -> Vec<Value> {
    vec![
        hw("basic", "02:00:00:00:00:01", "127.0.1.1", json!({})),
        hw(
            "agent-vlan-osie",
            "02:00:00:00:00:02",
            "127.0.1.2",
            json!({"spec": {
                "agentID": "worker-2",
                "interfaces": [{
                    "dhcp": {"mac": "02:00:00:00:00:02", "arch": "aarch64", "vlan_id": "42",
                             "ip": {"address": "127.0.1.2", "netmask": "255.0.0.0", "family": 4}},
                    "netboot": {"allowPXE": true, "osie": {
                        "baseURL": "http://images.lab:8080/hook",
                        "kernel": "vmlinuz-custom", "initrd": "initrd-custom",
                        "kernelParams": ["sshd=1", "tink_worker_image=example/agent:dev"]}}
                }]
            }}),
        ),
        mac_only(
            "custom-url",
            3,
            json!({"allowPXE": true, "ipxe": {"url": "https://boot.example/menu.ipxe"}}),
        ),
        mac_only(
            "custom-contents",
            4,
            json!({"allowPXE": true, "ipxe": {"contents": "dhcp\nchain http://10.0.0.1/x.ipxe"}}),
        ),
        mac_only("no-pxe", 5, json!({"allowPXE": false})),
        mac_only(
            "bad-url",
            6,
            json!({"allowPXE": true, "ipxe": {"url": "tftp://10.0.0.1/x"}}),
        ),
    ]
}

fn key() -> WorkerTokenKey {
    WorkerTokenKey::from_bytes(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
}

fn script_config() -> ScriptConfig {
    ScriptConfig {
        osie_url: "http://10.1.1.1:7173".into(),
        extra_kernel_args: vec!["tink_worker_image=ghcr.io/tinkerbell/tink-agent:latest".into()],
        tink_server: "10.1.1.1:42113".into(),
        syslog_host: "10.1.1.1".into(),
        ..ScriptConfig::default()
    }
}

struct Lab {
    http: Http,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
    hookos: tempfile::TempDir,
    ipxe: tempfile::TempDir,
    registry: Arc<Registry>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Lab {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http.local_addr(), path)
    }
    fn addr(&self) -> SocketAddr {
        self.http.local_addr()
    }
}

async fn lab(tweak: impl FnOnce(&mut Config)) -> Lab {
    tinkerbell_edge::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for v in fixtures() {
        store
            .create(Object::from_typed_json(v).unwrap())
            .await
            .unwrap();
    }
    let hookos = tempfile::tempdir().unwrap();
    std::fs::write(hookos.path().join("vmlinuz-x86_64"), pattern(1 << 20, 11)).unwrap();
    std::fs::write(hookos.path().join("initramfs-x86_64"), pattern(300_000, 12)).unwrap();
    let ipxe = tempfile::tempdir().unwrap();
    std::fs::write(ipxe.path().join("undionly.kpxe"), pattern(70_000, 1)).unwrap();
    std::fs::write(ipxe.path().join("ipxe.efi"), pattern(90_000, 2)).unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ipxe_dir: Some(ipxe.path().to_path_buf()),
        hookos_dir: Some(hookos.path().to_path_buf()),
        script: script_config(),
        worker_token_key: Some(key()),
        ..Config::default()
    };
    tweak(&mut config);
    // The metrics route needs the registry before the server starts: register a shared
    // HttpMetrics clone? Http::start makes its own, so scrape through a registry built after.
    let cancel = CancellationToken::new();
    let http = Http::start(&config, Arc::new(store), None, None, cancel.child_token())
        .await
        .unwrap();
    let mut registry = Registry::default();
    http.metrics().register(&mut registry);
    Lab {
        http,
        cancel,
        _dir: dir,
        hookos,
        ipxe,
        registry: Arc::new(registry),
    }
}

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(ip.parse().unwrap()))
        .no_proxy()
        .build()
        .unwrap()
}

fn golden(name: &str, got: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.ipxe"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing; run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(got, want, "{name} differs from {}", path.display());
}

/// The script with its worker token (time-dependent: it carries its expiry) as `<TOKEN>`, and
/// the token.
fn split_token(script: &str) -> (String, Option<String>) {
    let Some(at) = script.find("worker_token=") else {
        return (script.to_string(), None);
    };
    let start = at + "worker_token=".len();
    let end = script[start..]
        .find(char::is_whitespace)
        .map_or(script.len(), |e| start + e);
    let token = script[start..end].to_string();
    (
        format!("{}<TOKEN>{}", &script[..start], &script[end..]),
        Some(token),
    )
}

#[tokio::test]
async fn golden_scripts_by_mac() {
    let lab = lab(|_| {}).await;
    for (name, mac, machine) in [
        ("basic", "02:00:00:00:00:01", "127.0.1.1"),
        ("agent-vlan-osie", "02-00-00-00-00-02", "127.0.1.2"),
        ("custom-url", "02:00:00:00:00:03", "127.0.1.3"),
        ("custom-contents", "0200.0000.0004", "127.0.1.4"),
    ] {
        // Asked by the machine itself, from its reserved address.
        let r = client_from(machine)
            .get(lab.url(&format!("/ipxe/script/{mac}/auto.ipxe")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        golden(name, &split_token(&r.text().await.unwrap()).0);
    }
    // The token on the command line is the one the tink server will verify: the worker's
    // (its agentID, else its MAC), plain (the machine asked from its reservation), expiring.
    let now = tinkerbell_core::worker_token::unix_now();
    for (mac, machine, worker) in [
        ("02:00:00:00:00:01", "127.0.1.1", "02:00:00:00:00:01"),
        ("02:00:00:00:00:02", "127.0.1.2", "worker-2"),
    ] {
        let body = client_from(machine)
            .get(lab.url(&format!("/ipxe/script/{mac}/auto.ipxe")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let tok = split_token(&body).1.expect("a worker token");
        assert_eq!(key().check(worker, &tok, None, now), Ok(()), "{worker}");
        let day = tinkerbell_core::worker_token::TOKEN_TTL.as_secs();
        assert!(
            key().check(worker, &tok, None, now + day + 5).is_err(),
            "expires"
        );
        assert!(key().check("02:00:00:00:00:09", &tok, None, now).is_err());
    }
}

/// Another host asking for a machine's script (by its MAC in the path) gets no token: the
/// token used to go to whoever asked.
#[tokio::test]
async fn another_host_gets_no_worker_token() {
    let lab = lab(|_| {}).await;
    for other in ["127.0.0.1", "127.0.1.2"] {
        let r = client_from(other)
            .get(lab.url("/ipxe/script/02:00:00:00:00:01/auto.ipxe"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("worker_token="),
            "{other} got a token:\n{body}"
        );
        assert!(body.contains("hw_addr=02:00:00:00:00:01"), "{body}");
    }
}

#[tokio::test]
async fn static_script_and_default_hookos_url() {
    // Auto-proxy mode, no OSIE URL configured: the download URL is our own /hookos.
    let lab = lab(|c| {
        c.static_script = true;
        c.script.osie_url = String::new();
    })
    .await;
    let c = client_from("127.0.0.1");
    let r = c
        .get(lab.url("/ipxe/script/02:00:00:00:00:99/auto.ipxe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r
        .text()
        .await
        .unwrap()
        .replace(&lab.addr().to_string(), "HOST");
    let (body, tok) = split_token(&body);
    golden("static", &body);
    // An unknown machine has no reservation: its token is bound to the address that asked.
    let tok = tok.expect("a worker token for discovery");
    let now = tinkerbell_core::worker_token::unix_now();
    let asked: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let elsewhere: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(
        key().check("02:00:00:00:00:99", &tok, Some(asked), now),
        Ok(())
    );
    assert!(
        key()
            .check("02:00:00:00:00:99", &tok, Some(elsewhere), now)
            .is_err()
    );
    let r = c
        .get(lab.url("/ipxe/script/02:00:00:00:00:01/auto.ipxe"))
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(body.contains(&format!("set download-url http://{}/hookos\n", lab.addr())));
}

#[tokio::test]
async fn allow_pxe_false_unknown_and_bad_custom() {
    let lab = lab(|_| {}).await;
    let c = client_from("127.0.0.1");
    for (path, status) in [
        ("/ipxe/script/02:00:00:00:00:05/auto.ipxe", 404),
        ("/ipxe/script/02:00:00:00:00:99/auto.ipxe", 404),
        ("/ipxe/script/02:00:00:00:00:01/other.ipxe", 404),
        ("/ipxe/script/02:00:00:00:00:06/auto.ipxe", 500),
    ] {
        let r = c.get(lab.url(path)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    let r = c
        .get(lab.url("/ipxe/script/02:00:00:00:00:05/auto.ipxe"))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("allowPXE"));
    assert_eq!(lab.http.metrics().get(Route::Script, 404), 4);
}

#[tokio::test]
async fn lookup_by_source_ip_and_trusted_forwarded_for() {
    let lab = lab(|c| c.trusted_proxies = vec!["127.0.2.1".parse().unwrap()]).await;
    // No MAC in the path: the peer address picks the Hardware.
    let r = client_from("127.0.1.1")
        .get(lab.url("/ipxe/script/auto.ipxe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("hw_addr=02:00:00:00:00:01 ")
    );
    // A trusted proxy relays for 127.0.1.2.
    let r = client_from("127.0.2.1")
        .get(lab.url("/ipxe/script/auto.ipxe"))
        .header("x-forwarded-for", "127.0.1.2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("worker_id=worker-2 "));
    // An untrusted peer's header is ignored: looked up as itself, which has no Hardware.
    let r = client_from("127.0.2.2")
        .get(lab.url("/ipxe/script/auto.ipxe"))
        .header("x-forwarded-for", "127.0.1.2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // allowPXE false by IP as well.
    let r = client_from("127.0.1.5")
        .get(lab.url("/ipxe/script/auto.ipxe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn binaries_and_hookos_range() {
    let lab = lab(|_| {}).await;
    let c = client_from("127.0.0.1");
    let undi = std::fs::read(lab.ipxe.path().join("undionly.kpxe")).unwrap();
    for path in [
        "/ipxe/binary/undionly.kpxe",
        "/ipxe/binary/52:54:00:12:34:56/undionly.kpxe",
        "/ipxe/binary/525400123456/undionly.kpxe",
    ] {
        let r = c.get(lab.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.bytes().await.unwrap(), undi, "{path}");
    }
    let r = c
        .head(lab.url("/ipxe/binary/ipxe.efi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "90000");
    for path in [
        "/ipxe/binary/nope.efi",
        "/ipxe/binary/notamac/ipxe.efi",
        "/ipxe/binary/a/b/ipxe.efi",
    ] {
        assert_eq!(
            c.get(lab.url(path)).send().await.unwrap().status(),
            404,
            "{path}"
        );
    }
    // HookOS: whole file and a Range.
    let kernel = std::fs::read(lab.hookos.path().join("vmlinuz-x86_64")).unwrap();
    let r = c
        .get(lab.url("/hookos/vmlinuz-x86_64"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), kernel);
    let r = c
        .get(lab.url("/hookos/vmlinuz-x86_64"))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 1000-1999/1048576");
    assert_eq!(r.bytes().await.unwrap(), &kernel[1000..2000]);
    assert_eq!(
        c.get(lab.url("/hookos/../Cargo.toml"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let m = lab.http.metrics();
    assert_eq!(m.get(Route::Binary, 200), 4);
    assert_eq!(m.get(Route::Hookos, 206), 1);
    // The metrics route renders the registry.
    let app = axum::Router::new().route(
        "/smee/metrics",
        tinkerbell_edge::metrics::route(lab.registry.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let body = c
        .get(format!("http://{addr}/smee/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("boots_http_requests_total{route=\"Binary\",status=\"200\"} 4"),
        "{body}"
    );
    let _ = HttpMetrics::default();
}

/// The HookOS route as HTTP clients use it: HEAD, suffix and open ranges, an unsatisfiable
/// range, If-Range, If-Modified-Since, a file larger than one read chunk, directories and
/// encoded traversal (sent raw: URL parsers fold `%2e%2e` before sending).
#[tokio::test]
async fn hookos_http_semantics() {
    let lab = lab(|_| {}).await;
    let c = client_from("127.0.0.1");
    // Larger than one 1 MiB chunk and not a multiple of it.
    let big = pattern((3 << 20) + 12_345, 13);
    std::fs::write(lab.hookos.path().join("big.img"), &big).unwrap();
    std::fs::create_dir(lab.hookos.path().join("sub")).unwrap();
    let url = lab.url("/hookos/big.img");
    let len = big.len();

    // A name longer than the filesystem allows is not found, not a server error (found by
    // fuzz/http_range: it answered 500 and logged a warning, at any client's will).
    let long = lab.url(&format!("/hookos/{}", "n".repeat(300)));
    assert_eq!(c.get(&long).send().await.unwrap().status(), 404);

    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let last_modified = r.headers()["last-modified"].to_str().unwrap().to_string();
    assert_eq!(r.bytes().await.unwrap(), big);

    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], len.to_string());
    assert!(r.bytes().await.unwrap().is_empty());

    let get = |range: &str| c.get(&url).header("range", range.to_string()).send();
    let r = get("bytes=-100").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes {}-{}/{len}", len - 100, len - 1)
    );
    assert_eq!(r.bytes().await.unwrap(), &big[len - 100..]);
    let r = get("bytes=1048570-").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), &big[1_048_570..]);
    let r = get(&format!("bytes={len}-")).await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], format!("bytes */{len}"));
    // Several ranges: the whole file.
    let r = get("bytes=0-1,5-6").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), len);

    // If-Range: the range only while the file is the one the validator names.
    let if_range = |v: &str| {
        let req = c.get(&url).header("range", "bytes=0-9");
        req.header("if-range", v.to_string()).send()
    };
    assert_eq!(if_range(&last_modified).await.unwrap().status(), 206);
    let r = if_range("Thu, 01 Jan 1970 00:00:00 GMT").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), len);

    let ims = |v: &str| {
        c.get(&url)
            .header("if-modified-since", v.to_string())
            .send()
    };
    let r = ims(&last_modified).await.unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = ims("Thu, 01 Jan 1970 00:00:00 GMT").await.unwrap();
    assert_eq!(r.status(), 200);

    for path in ["/hookos/sub", "/hookos/sub/", "/hookos/", "/hookos/nope"] {
        let r = c.get(lab.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = c.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);

    // Encoded traversal, sent byte for byte. The temp dirs are siblings: without the check,
    // `..` would reach the iPXE directory's undionly.kpxe.
    let ipxe_dir = lab.ipxe.path().file_name().unwrap().to_str().unwrap();
    for raw in [
        format!("/hookos/%2e%2e/{ipxe_dir}/undionly.kpxe"),
        format!("/hookos/..%2f{ipxe_dir}%2fundionly.kpxe"),
        format!("/hookos/sub/%2E%2E/%2E%2E/{ipxe_dir}/undionly.kpxe"),
    ] {
        assert_eq!(raw_status(lab.addr(), &raw).await, 404, "{raw}");
    }
    assert_eq!(raw_status(lab.addr(), "/hookos/big%2eimg").await, 200);
}

/// The status of `GET raw` sent as is over a fresh connection.
async fn raw_status(addr: SocketAddr, raw: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("HEAD {raw} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let head = String::from_utf8_lossy(&resp);
    head.split(' ').nth(1).unwrap().parse().unwrap()
}
