//! Component tests: the real server on 127.0.0.1:0 over an embedded store, a real HTTP client.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use common::*;
use tinkerbell_hegel::Config;
use tower::ServiceExt;

const ME: &str = "127.0.0.1";

fn node1() -> serde_json::Value {
    hardware("node1", ME, "i-node1", "node1.lab")
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, String) {
    let r = c.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Every route, exact bytes, under both versions.
#[tokio::test]
async fn every_route() {
    let h = start(Config::default(), vec![node1()]).await;
    let c = client_from(ME);
    let meta = "facility\nhostname\ninstance-id\niqn\nlocal-hostname\nlocal-ipv4\noperating-system/\nplan\npublic-ipv4\npublic-ipv6\npublic-keys/\ntags";
    let table: &[(&str, u16, &str)] = &[
        ("", 200, "dynamic/\nmeta-data/\nuser-data\nvendor-data"),
        ("/", 200, "dynamic/\nmeta-data/\nuser-data\nvendor-data"),
        ("/dynamic", 200, "instance-identity/"),
        ("/dynamic/instance-identity/", 200, "document"),
        (
            "/dynamic/instance-identity/document",
            200,
            "{\n  \"architecture\": \"\",\n  \"instanceId\": \"i-node1\",\n  \"privateIp\": \"10.0.0.10\"\n}",
        ),
        ("/meta-data", 200, meta),
        ("/meta-data/", 200, meta),
        ("/meta-data/instance-id", 200, "i-node1"),
        ("/meta-data/instance-id/", 200, "i-node1"),
        ("/meta-data/hostname", 200, "node1.lab"),
        ("/meta-data/local-hostname", 200, "node1.lab"),
        ("/meta-data/iqn", 200, ""),
        ("/meta-data/plan", 200, "c3.small"),
        ("/meta-data/facility", 200, "lab1"),
        ("/meta-data/tags", 200, "rack-1\nrole=worker"),
        ("/meta-data/public-ipv4", 200, "203.0.113.10"),
        ("/meta-data/local-ipv4", 200, "10.0.0.10"),
        ("/meta-data/public-ipv6", 200, "2001:db8::10"),
        ("/meta-data/public-keys", 200, "0=alice@lab\n1=key-1"),
        ("/meta-data/public-keys/", 200, "0=alice@lab\n1=key-1"),
        ("/meta-data/public-keys/0", 200, "openssh-key"),
        ("/meta-data/public-keys/0/", 200, "openssh-key"),
        ("/meta-data/public-keys/0/openssh-key", 200, KEY0),
        ("/meta-data/public-keys/1/openssh-key", 200, KEY1),
        ("/meta-data/public-keys/2/openssh-key", 404, "not found"),
        ("/meta-data/public-keys/00/openssh-key", 404, "not found"),
        (
            "/meta-data/operating-system",
            200,
            "distro\nimage_tag\nlicense_activation/\nslug\nversion",
        ),
        ("/meta-data/operating-system/slug", 200, "ubuntu_22_04"),
        ("/meta-data/operating-system/distro", 200, "ubuntu"),
        ("/meta-data/operating-system/version", 200, "22.04"),
        ("/meta-data/operating-system/image_tag", 200, "v1"),
        (
            "/meta-data/operating-system/license_activation",
            200,
            "state",
        ),
        (
            "/meta-data/operating-system/license_activation/state",
            200,
            "",
        ),
        ("/user-data", 200, USER_DATA),
        ("/vendor-data", 200, "#cloud-config\nvendor: yes\n"),
        ("/meta-data/nope", 404, "not found"),
        ("/dynamic/nope", 404, "not found"),
    ];
    for version in ["/2009-04-04", "/latest"] {
        for (path, status, body) in table {
            let url = h.url(&format!("{version}{path}"));
            let (s, b) = get(&c, &url).await;
            assert_eq!((s, b.as_str()), (*status, *body), "GET {url}");
        }
    }
    // The root lists the versions; other versions do not exist.
    assert_eq!(
        get(&c, &h.url("/")).await,
        (200, "2009-04-04\nlatest".into())
    );
    assert_eq!(
        get(&c, &h.url("/2021-03-23/meta-data/instance-id")).await.0,
        404
    );
    // Leaves are text/plain, user-data is opaque bytes.
    let r = c
        .get(h.url("/2009-04-04/meta-data/hostname"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    let r = c.get(h.url("/2009-04-04/user-data")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(get(&c, &h.url("/healthz")).await, (200, "ok".into()));
}

#[tokio::test]
async fn rootio_metadata_json() {
    let h = start(Config::default(), vec![node1()]).await;
    let r = client_from(ME)
        .get(h.url("/metadata"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!({"metadata": {"instance": {"storage": {
            "disks": [{"device": "/dev/sda", "partitions": [{"label": "ROOT", "number": 1, "size": 4096}], "wipe_table": true}],
            "filesystems": [{"mount": {"create": {"options": ["-L", "ROOT"]}, "device": "/dev/sda1", "format": "ext4", "point": "/"}}]
        }}}})
    );
}

#[tokio::test]
async fn unknown_address_gets_404_with_message() {
    let h = start(Config::default(), vec![node1()]).await;
    let c = client_from("127.0.0.9");
    for path in [
        "/2009-04-04/meta-data/instance-id",
        "/latest/meta-data/",
        "/2009-04-04/user-data",
        "/metadata",
    ] {
        assert_eq!(
            get(&c, &h.url(path)).await,
            (404, "no hardware found for source ip: 127.0.0.9".into()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn missing_user_data_is_404() {
    let mut hw = node1();
    hw["spec"].as_object_mut().unwrap().remove("userData");
    let h = start(Config::default(), vec![hw]).await;
    let (s, _) = get(&client_from(ME), &h.url("/2009-04-04/user-data")).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn changed_hardware_is_served_immediately() {
    let h = start(Config::default(), vec![node1()]).await;
    let c = client_from(ME);
    let url = h.url("/2009-04-04/meta-data/hostname");
    assert_eq!(get(&c, &url).await.1, "node1.lab");
    set_hostname(&h.store, "node1", "renamed.lab").await;
    assert_eq!(get(&c, &url).await.1, "renamed.lab");
}

#[tokio::test]
async fn forwarded_for_only_from_trusted_proxies() {
    let other = hardware("node2", "10.1.2.3", "i-node2", "node2.lab");
    // 127.0.0.1 is a trusted proxy; 127.0.0.2 is not (and holds node3).
    let node3 = hardware("node3", "127.0.0.2", "i-node3", "node3.lab");
    let config = Config {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Config::default()
    };
    let h = start(config, vec![node1(), other, node3]).await;
    let url = h.url("/2009-04-04/meta-data/instance-id");
    // From the trusted proxy, the forwarded address identifies the caller.
    let r = get_with(&client_from(ME), &url, "X-Forwarded-For", "10.1.2.3").await;
    assert_eq!(r.text().await.unwrap(), "i-node2");
    // A spoofed left-most entry is ignored: the right-most untrusted one counts.
    let r = get_with(
        &client_from(ME),
        &url,
        "X-Forwarded-For",
        "127.0.0.2, 10.1.2.3",
    )
    .await;
    assert_eq!(r.text().await.unwrap(), "i-node2");
    // From an untrusted peer, the header changes nothing.
    let r = get_with(
        &client_from("127.0.0.2"),
        &url,
        "X-Forwarded-For",
        "10.1.2.3",
    )
    .await;
    assert_eq!(r.text().await.unwrap(), "i-node3");
    // A trusted proxy sending garbage is a bad request.
    let r = get_with(&client_from(ME), &url, "X-Forwarded-For", "bogus").await;
    assert_eq!(r.status(), 400);
}

/// The instance-ID route serves a Hardware only to that Hardware: the caller's address (after
/// trusted proxies) must be one of its interface addresses. Anyone else gets the answer an
/// unknown instance ID gets, so the route is not an oracle for which IDs exist.
#[tokio::test]
async fn instance_id_endpoint_serves_only_the_owner() {
    let node2 = hardware("node2", "10.1.2.3", "i-node2", "node2.lab");
    let node3 = hardware("node3", "127.0.0.2", "i-node3", "node3.lab");
    let config = Config {
        instance_endpoint: true,
        // 127.0.0.1 (node1's address) is also a trusted proxy.
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Config::default()
    };
    let h = start(config, vec![node1(), node2, node3]).await;
    let refused = |id: &str| (404, format!("no hardware found for instance id: {id}"));
    // A stranger gets nobody's metadata, user-data included.
    let stranger = client_from("127.0.0.9");
    for path in [
        "/tootles/instanceID/i-node2/2009-04-04/meta-data/hostname",
        "/tootles/instanceID/i-node2/2009-04-04/user-data",
        "/tootles/instanceID/i-node2/2009-04-04/",
        "/tootles/instanceID/i-node3/2009-04-04/user-data",
    ] {
        let id = path.split('/').nth(3).unwrap();
        assert_eq!(get(&stranger, &h.url(path)).await, refused(id), "{path}");
    }
    // Another machine does not get its neighbour's either.
    assert_eq!(
        get(
            &client_from(ME),
            &h.url("/tootles/instanceID/i-node3/2009-04-04/user-data")
        )
        .await,
        refused("i-node3")
    );
    // The owner does.
    let owner = client_from("127.0.0.2");
    assert_eq!(
        get(
            &owner,
            &h.url("/tootles/instanceID/i-node3/2009-04-04/meta-data/hostname")
        )
        .await,
        (200, "node3.lab".into())
    );
    assert_eq!(
        get(&owner, &h.url("/tootles/instanceID/i-node3/2009-04-04/")).await,
        (200, "dynamic/\nmeta-data/\nuser-data\nvendor-data".into())
    );
    // So does the owner behind a trusted proxy.
    let r = get_with(
        &client_from(ME),
        &h.url("/tootles/instanceID/i-node2/2009-04-04/meta-data/hostname"),
        "X-Forwarded-For",
        "10.1.2.3",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "node2.lab");
    // An untrusted peer's X-Forwarded-For changes nothing.
    let r = get_with(
        &stranger,
        &h.url("/tootles/instanceID/i-node2/2009-04-04/meta-data/hostname"),
        "X-Forwarded-For",
        "10.1.2.3",
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        get(
            &owner,
            &h.url("/tootles/instanceID/i-nope/2009-04-04/meta-data/hostname")
        )
        .await,
        refused("i-nope")
    );
    // Disabled by default.
    let h2 = start(Config::default(), vec![node1()]).await;
    let (s, _) = get(
        &client_from(ME),
        &h2.url("/tootles/instanceID/i-node1/2009-04-04/meta-data/hostname"),
    )
    .await;
    assert_eq!(s, 404);
}

/// With tokens required, the instance-ID route wants the owner's address and a token issued to
/// it; a stranger's own valid token does not open another machine's data.
#[tokio::test]
async fn instance_id_endpoint_with_tokens() {
    let node3 = hardware("node3", "127.0.0.2", "i-node3", "node3.lab");
    let config = Config {
        instance_endpoint: true,
        require_tokens: true,
        ..Config::default()
    };
    let h = start(config, vec![node1(), node3]).await;
    let url = h.url("/tootles/instanceID/i-node3/2009-04-04/user-data");
    let tok_url = h.url("/latest/api/token");
    let owner = client_from("127.0.0.2");
    let stranger = client_from("127.0.0.9");
    let token_of = |c: reqwest::Client| {
        let tok_url = tok_url.clone();
        async move {
            let r = put_token(&c, &tok_url, Some("60")).await;
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let owner_tok = token_of(owner.clone()).await;
    let stranger_tok = token_of(stranger.clone()).await;
    let with =
        |c: &reqwest::Client, tok: &str| c.get(&url).header("X-aws-ec2-metadata-token", tok).send();
    // The owner: no token is 401, its token is 200.
    assert_eq!(get(&owner, &url).await.0, 401);
    let r = with(&owner, &owner_tok).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), USER_DATA);
    // A stranger with a valid token of its own: refused.
    let r = with(&stranger, &stranger_tok).await.unwrap();
    assert_eq!(r.status(), 404);
    // A stranger presenting the owner's token: the token is bound to the owner's address.
    assert_eq!(with(&stranger, &owner_tok).await.unwrap().status(), 401);
}

async fn get_with(c: &reqwest::Client, url: &str, name: &str, value: &str) -> reqwest::Response {
    c.get(url).header(name, value).send().await.unwrap()
}

async fn put_token(c: &reqwest::Client, url: &str, ttl: Option<&str>) -> reqwest::Response {
    let mut rb = c.put(url);
    if let Some(t) = ttl {
        rb = rb.header("X-aws-ec2-metadata-token-ttl-seconds", t);
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn token_ttl_bounds_and_binding() {
    let node3 = hardware("node3", "127.0.0.2", "i-node3", "node3.lab");
    let h = start(Config::default(), vec![node1(), node3]).await;
    let c = client_from(ME);
    let tok_url = h.url("/latest/api/token");
    for bad in [
        None,
        Some("0"),
        Some("21601"),
        Some("-1"),
        Some("abc"),
        Some(""),
    ] {
        let r = put_token(&c, &tok_url, bad).await;
        assert_eq!(r.status(), 400, "ttl {bad:?}");
    }
    for good in ["1", "21600"] {
        let r = put_token(&c, &tok_url, Some(good)).await;
        assert_eq!(r.status(), 200, "ttl {good}");
        assert_eq!(r.headers()["x-aws-ec2-metadata-token-ttl-seconds"], good);
        assert_eq!(r.text().await.unwrap().len(), 64);
    }
    // Firecracker's header name works too.
    let r = c
        .put(&tok_url)
        .header("X-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // GET on the token path is not allowed.
    assert_eq!(c.get(&tok_url).send().await.unwrap().status(), 405);
    // A relayed token request from an untrusted peer is refused (as EC2 and MMDS do).
    let r = c
        .put(&tok_url)
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .header("X-Forwarded-For", "10.9.9.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Optional mode: no token is fine, a good token is fine, a bad one is 401.
    let url = h.url("/latest/meta-data/instance-id");
    let tok = put_token(&c, &tok_url, Some("60"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(get(&c, &url).await, (200, "i-node1".into()));
    let r = get_with(&c, &url, "X-aws-ec2-metadata-token", &tok).await;
    assert_eq!(r.status(), 200);
    let r = get_with(&c, &url, "X-aws-ec2-metadata-token", "forged").await;
    assert_eq!(r.status(), 401);
    // Bound to the address it was issued to.
    let r = get_with(
        &client_from("127.0.0.2"),
        &url,
        "X-aws-ec2-metadata-token",
        &tok,
    )
    .await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn required_tokens() {
    let config = Config {
        require_tokens: true,
        ..Config::default()
    };
    let h = start(config, vec![node1()]).await;
    let c = client_from(ME);
    let url = h.url("/2009-04-04/meta-data/hostname");
    let (s, body) = get(&c, &url).await;
    assert_eq!(s, 401);
    assert!(body.contains("session token is required"), "{body}");
    assert_eq!(get(&c, &h.url("/metadata")).await.0, 401);
    let tok = put_token(&c, &h.url("/latest/api/token"), Some("30"))
        .await
        .text()
        .await
        .unwrap();
    let r = get_with(&c, &url, "X-aws-ec2-metadata-token", &tok).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "node1.lab");
    let r = get_with(&c, &url, "X-metadata-token", &tok).await;
    assert_eq!(r.status(), 200);
    // Health and metrics need no token.
    assert_eq!(get(&c, &h.url("/healthz")).await.0, 200);
    assert_eq!(get(&c, &h.url("/metrics")).await.0, 200);
}

/// Expiry, on the router itself with the clock paused (no sockets, so no real time passes).
#[tokio::test(start_paused = true)]
async fn token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let store = tinkerbell_core::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
    create(&store, node1()).await;
    let config = Config {
        require_tokens: true,
        ..Config::default()
    };
    let mut registry = tinkerbell_edge::metrics::Registry::default();
    let app = tinkerbell_hegel::router(Arc::new(store), &config, &mut registry);
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let call = |req: http::Request<Body>| {
        let app = app.clone();
        async move {
            let mut req = req;
            req.extensions_mut().insert(ConnectInfo(peer));
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let (s, tok) = call(
        http::Request::put("/latest/api/token")
            .header("X-aws-ec2-metadata-token-ttl-seconds", "10")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let read = || {
        http::Request::get("/latest/meta-data/instance-id")
            .header("X-aws-ec2-metadata-token", &tok)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(call(read()).await, (200, "i-node1".into()));
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(call(read()).await.0, 200);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        call(read()).await,
        (401, "invalid or expired session token".into())
    );
}

/// One request to `app` as if from `peer` (the router directly: no sockets).
async fn call(app: &axum::Router, peer: &str, req: http::Request<Body>) -> (u16, String) {
    let mut req = req;
    let peer: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn token_request(ttl: &str) -> http::Request<Body> {
    http::Request::put("/latest/api/token")
        .header("X-aws-ec2-metadata-token-ttl-seconds", ttl)
        .body(Body::empty())
        .unwrap()
}

fn read_with(token: &str) -> http::Request<Body> {
    http::Request::get("/latest/meta-data/instance-id")
        .header("X-aws-ec2-metadata-token", token)
        .body(Body::empty())
        .unwrap()
}

/// One address minting tokens in a loop, past the whole table's cap (70,000 > 65,536), with
/// the default configuration: it only ever evicts its own tokens; another address's earlier
/// token keeps working.
#[tokio::test]
async fn token_flood_from_one_address_spares_other_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let store = tinkerbell_core::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
    create(&store, node1()).await;
    create(
        &store,
        hardware("node3", "127.0.0.2", "i-node3", "node3.lab"),
    )
    .await;
    let config = Config {
        require_tokens: true,
        ..Config::default()
    };
    let mut registry = tinkerbell_edge::metrics::Registry::default();
    let app = tinkerbell_hegel::router(Arc::new(store), &config, &mut registry);
    let victim = "127.0.0.1:40000";
    let flooder = "127.0.0.2:40001";
    // Same lifetime for every token, the victim's issued first: the oldest, the closest to
    // expiry, the first a shared eviction would pick.
    let (s, victim_tok) = call(&app, victim, token_request("21600")).await;
    assert_eq!(s, 200);
    let mut flood = Vec::new();
    for i in 0..70_000 {
        let (s, tok) = call(&app, flooder, token_request("21600")).await;
        assert_eq!(s, 200, "token request {i}");
        if i == 0 || i >= 70_000 - 16 {
            flood.push(tok);
        }
    }
    assert_eq!(
        call(&app, victim, read_with(&victim_tok)).await,
        (200, "i-node1".into()),
        "the victim's token survived the flood"
    );
    // The flooder's own newest tokens work, its oldest was evicted.
    assert_eq!(
        call(&app, flooder, read_with(&flood[0])).await.0,
        401,
        "the flooder's first token was evicted"
    );
    for tok in &flood[1..] {
        assert_eq!(
            call(&app, flooder, read_with(tok)).await,
            (200, "i-node3".into())
        );
    }
}

/// A full token table refuses addresses that hold no token (503) instead of evicting anyone's;
/// an address that holds tokens still gets new ones (replacing its own oldest).
#[tokio::test]
async fn full_token_table_refuses_newcomers() {
    let node3 = hardware("node3", "127.0.0.2", "i-node3", "node3.lab");
    let config = Config {
        max_tokens: 2,
        ..Config::default()
    };
    let h = start(config, vec![node1(), node3]).await;
    let tok_url = h.url("/latest/api/token");
    let url = h.url("/latest/meta-data/instance-id");
    let one = client_from(ME);
    let two = client_from("127.0.0.2");
    let r = put_token(&one, &tok_url, Some("600")).await;
    assert_eq!(r.status(), 200);
    let r = put_token(&two, &tok_url, Some("600")).await;
    assert_eq!(r.status(), 200);
    let two_tok = r.text().await.unwrap();
    let r = put_token(&client_from("127.0.0.3"), &tok_url, Some("600")).await;
    assert_eq!(r.status(), 503);
    let r = put_token(&one, &tok_url, Some("600")).await;
    assert_eq!(
        r.status(),
        200,
        "an address holding a token replaces its own"
    );
    let r = get_with(&two, &url, "X-aws-ec2-metadata-token", &two_tok).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "i-node3");
}

#[tokio::test]
async fn metrics_count_by_route_and_status() {
    let h = start(Config::default(), vec![node1()]).await;
    let c = client_from(ME);
    for _ in 0..3 {
        get(&c, &h.url("/2009-04-04/meta-data/hostname")).await;
    }
    get(&c, &h.url("/latest/meta-data/public-keys/1/openssh-key")).await;
    get(
        &client_from("127.0.0.9"),
        &h.url("/2009-04-04/meta-data/hostname"),
    )
    .await;
    get(&c, &h.url("/2009-04-04/no/such/path")).await;
    let (s, body) = get(&c, &h.url("/metrics")).await;
    assert_eq!(s, 200);
    for line in [
        "hegel_http_requests_total{route=\"/meta-data/hostname\",status=\"200\"} 3",
        "hegel_http_requests_total{route=\"/meta-data/hostname\",status=\"404\"} 1",
        "hegel_http_requests_total{route=\"/meta-data/public-keys/{n}/openssh-key\",status=\"200\"} 1",
        "hegel_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
}

#[tokio::test]
async fn shuts_down_on_cancel() {
    let mut h = start(Config::default(), vec![node1()]).await;
    let hegel = h.hegel.take().unwrap();
    h.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), hegel.join())
        .await
        .expect("stops")
        .expect("clean");
}

#[tokio::test]
async fn first_metadata_read_of_a_burst_goes_into_the_timeline() {
    use tinkerbell_core::timeline::{Phase, Subject, Timeline};
    let timeline = Arc::new(Timeline::new());
    let config = Config {
        timeline: Some(timeline.clone()),
        ..Config::default()
    };
    let h = start(config, vec![node1()]).await;
    let me = client_from(ME);
    for path in [
        "/2009-04-04/meta-data/hostname",
        "/2009-04-04/meta-data/local-ipv4",
    ] {
        assert_eq!(get(&me, &h.url(path)).await.0, 200, "{path}");
    }
    // An unknown caller records nothing.
    get(
        &client_from("127.0.0.9"),
        &h.url("/2009-04-04/meta-data/hostname"),
    )
    .await;
    let events = timeline.events(&[Subject::hardware("default", "node1")]);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].phase, Phase::MetadataRead);
    assert_eq!(events[0].source, "hegel");
    assert_eq!(events[0].detail, "/meta-data/hostname");
    assert_eq!(timeline.subjects().len(), 1);
}
