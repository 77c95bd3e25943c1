//! The iPXE script route records the requested path in the timeline; the path is the caller's
//! choice (up to the whole URI), so what is kept is bounded: at most 256 bytes of it, cut at a
//! character boundary and marked with `…`, for the Hook script and for a custom script alike.
//! Short paths are kept whole.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use serde_json::json;
use tinkerbell_boots::http;
use tinkerbell_boots::record::Recorder;
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Object, Store};
use tinkerbell_core::timeline::{Phase, Subject, Timeline};
use tower::ServiceExt;

const HOOK_MAC: &str = "02:00:00:00:00:41";
const CUSTOM_MAC: &str = "02:00:00:00:00:42";

fn hardware(name: &str, mac: &str, ip: &str, ipxe: Option<&str>) -> Object {
    let mut netboot = json!({"allowPXE": true, "allowWorkflow": true});
    if let Some(contents) = ipxe {
        netboot["ipxe"] = json!({"contents": contents});
    }
    Object::from_typed_json(json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": "Hardware",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"interfaces": [{
            "dhcp": {"mac": mac, "ip": {"address": ip, "netmask": "255.0.0.0", "family": 4}},
            "netboot": netboot
        }]}
    }))
    .unwrap()
}

async fn fetch(app: &axum::Router, uri: &str) -> u16 {
    let mut req = axum::http::Request::get(uri).body(Body::empty()).unwrap();
    let peer: SocketAddr = "127.0.4.1:40000".parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    app.clone().oneshot(req).await.unwrap().status().as_u16()
}

fn recorded(t: &Timeline, name: &str) -> Vec<String> {
    t.events(&[Subject::hardware("default", name)])
        .into_iter()
        .filter(|e| e.phase == Phase::IpxeScript)
        .map(|e| e.detail)
        .collect()
}

#[tokio::test]
async fn recorded_script_paths_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store
        .create(hardware("hook", HOOK_MAC, "127.0.4.1", None))
        .await
        .unwrap();
    store
        .create(hardware(
            "custom",
            CUSTOM_MAC,
            "127.0.4.2",
            Some("#!ipxe\nexit\n"),
        ))
        .await
        .unwrap();
    let store = Arc::new(store);
    let timeline = Arc::new(Timeline::new());
    let config = http::Config {
        ipxe_dir: None,
        ..http::Config::default()
    };
    let app = http::router(
        store.clone(),
        &config,
        http::HttpMetrics::default(),
        Some(Recorder::new(timeline.clone(), store)),
    )
    .unwrap();

    // 255 ASCII bytes, then a two-byte character straddling byte 256, then ~8 KB more: the
    // cut falls back to the character boundary at 255.
    let junk = format!("{}%C3%A9{}", "x".repeat(255), "y/".repeat(4000));
    let kept = format!("/ipxe/script/{}…", "x".repeat(255));
    assert_eq!(
        fetch(&app, &format!("/ipxe/script/{junk}/{HOOK_MAC}/auto.ipxe")).await,
        200
    );
    assert_eq!(
        fetch(&app, &format!("/ipxe/script/{junk}/{CUSTOM_MAC}/auto.ipxe")).await,
        200
    );
    for name in ["hook", "custom"] {
        let sizes: Vec<usize> = recorded(&timeline, name).iter().map(String::len).collect();
        assert!(
            sizes.iter().all(|n| *n < 300),
            "{name}: recorded details of {sizes:?} bytes"
        );
    }
    assert_eq!(recorded(&timeline, "hook"), vec![kept.clone()]);
    assert_eq!(
        recorded(&timeline, "custom"),
        vec![format!("{kept} (custom)")]
    );

    // A path within the bound is recorded whole.
    assert_eq!(
        fetch(&app, &format!("/ipxe/script/{HOOK_MAC}/auto.ipxe")).await,
        200
    );
    assert_eq!(
        recorded(&timeline, "hook")[1],
        format!("/ipxe/script/{HOOK_MAC}/auto.ipxe")
    );
}
