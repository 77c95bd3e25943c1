//! Shared test helpers: an embedded store in a temp dir with Hardware, and hegel on port 0.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{Kind, Object, Store};
use tinkerbell_hegel::{Config, Hegel};
use tokio_util::sync::CancellationToken;

pub const KEY0: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHegelTestKeyZero alice@lab";
pub const KEY1: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQHegelTestKeyOne";
pub const USER_DATA: &str = "#cloud-config\nhostname: node1\nruncmd:\n  - echo hi\n";

/// A Hardware holding `ip`, with every metadata field set.
pub fn hardware(name: &str, ip: &str, instance_id: &str, hostname: &str) -> Value {
    json!({
        "apiVersion": "tinkerbell.org/v1alpha1",
        "kind": "Hardware",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "interfaces": [{"dhcp": {
                "mac": mac_for(name),
                "ip": {"address": ip, "netmask": "255.0.0.0", "family": 4}
            }}],
            "metadata": {
                "facility": {"plan_slug": "c3.small", "facility_code": "lab1"},
                "instance": {
                    "id": instance_id,
                    "hostname": hostname,
                    "tags": ["rack-1", "role=worker"],
                    "ssh_keys": [KEY0, KEY1],
                    "ips": [
                        {"address": "2001:db8::10", "family": 6, "public": true},
                        {"address": "10.0.0.10", "family": 4, "public": false},
                        {"address": "203.0.113.10", "family": 4, "public": true}
                    ],
                    "operating_system": {"slug": "ubuntu_22_04", "distro": "ubuntu", "version": "22.04", "image_tag": "v1"},
                    "storage": {
                        "disks": [{"device": "/dev/sda", "wipe_table": true,
                                   "partitions": [{"label": "ROOT", "number": 1, "size": 4096}]}],
                        "filesystems": [{"mount": {"device": "/dev/sda1", "format": "ext4", "point": "/",
                                                    "create": {"options": ["-L", "ROOT"]}}}]
                    }
                }
            },
            "userData": USER_DATA,
            "vendorData": "#cloud-config\nvendor: yes\n"
        }
    })
}

fn mac_for(name: &str) -> String {
    let h = name
        .bytes()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    format!(
        "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
        (h >> 24) as u8,
        (h >> 16) as u8,
        (h >> 8) as u8,
        h as u8
    )
}

pub async fn create(store: &EmbeddedStore, v: Value) {
    store
        .create(Object::from_typed_json(v).unwrap())
        .await
        .unwrap();
}

/// Change a Hardware's instance hostname in the store.
pub async fn set_hostname(store: &EmbeddedStore, name: &str, hostname: &str) {
    let obj = store.get(Kind::Hardware, "default", name).await.unwrap();
    let mut v = obj.to_json();
    v["spec"]["metadata"]["instance"]["hostname"] = json!(hostname);
    store
        .update(Object::from_typed_json(v).unwrap())
        .await
        .unwrap();
}

pub struct Running {
    pub addr: SocketAddr,
    pub store: EmbeddedStore,
    pub cancel: CancellationToken,
    pub _dir: tempfile::TempDir,
    pub hegel: Option<Hegel>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// hegel on 127.0.0.1:0 over a fresh embedded store holding `hardware`.
pub async fn start(config: Config, hardware: Vec<Value>) -> Running {
    tinkerbell_edge::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for hw in hardware {
        create(&store, hw).await;
    }
    let cancel = CancellationToken::new();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let hegel = Hegel::start(&config, Arc::new(store.clone()), cancel.child_token())
        .await
        .unwrap();
    Running {
        addr: hegel.local_addr(),
        store,
        cancel,
        _dir: dir,
        hegel: Some(hegel),
    }
}

/// A client whose source address is `ip` (any 127/8 address works on Linux loopback).
pub fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(ip.parse().unwrap()))
        .no_proxy()
        .build()
        .unwrap()
}
