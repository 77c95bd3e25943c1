//! In-process Hardware lookups per second through the `HardwareLookup` trait (what boots and
//! hegel call per packet/request), with 10,000 Hardware in the embedded store.
//!
//! `cargo bench -p tinkerbell-core --bench lookups` (bench/foundation.sh runs it). Target:
//! more than 1,000,000 lookups/s for each of MAC and IP.

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{HardwareLookup, Object, Store};

const N: u32 = 10_000;
const LOOKUPS: u32 = 2_000_000;

fn mac(i: u32) -> String {
    format!(
        "02:00:00:{:02x}:{:02x}:{:02x}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

fn ip(i: u32) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and expects quick exit.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let n = if quick { 100 } else { N };
        let objs: Vec<Object> = (0..n)
            .map(|i| {
                Object::from_typed_json(json!({
                    "apiVersion": "tinkerbell.org/v1alpha1",
                    "kind": "Hardware",
                    "metadata": {"name": format!("node-{i}"), "namespace": "default"},
                    "spec": {
                        "metadata": {"instance": {"id": mac(i), "hostname": format!("node-{i}")}},
                        "interfaces": [{"dhcp": {"mac": mac(i), "ip": {"address": ip(i), "netmask": "255.0.0.0"}}}]
                    }
                }))
                .unwrap()
            })
            .collect();
        let t = Instant::now();
        store.apply_all(objs).await.unwrap();
        println!("insert {n} Hardware in one transaction: {:.3} s", t.elapsed().as_secs_f64());

        let macs: Vec<String> = (0..n).map(mac).collect();
        let ips: Vec<String> = (0..n).map(ip).collect();
        let lookups = if quick { 1_000 } else { LOOKUPS };
        let backend: &dyn HardwareLookup = &store;

        let t = Instant::now();
        for k in 0..lookups {
            let hw = backend.hardware_by_mac(&macs[(k % n) as usize]).await.unwrap();
            black_box(hw.expect("present"));
        }
        let mac_rate = f64::from(lookups) / t.elapsed().as_secs_f64();

        let t = Instant::now();
        for k in 0..lookups {
            let hw = backend.hardware_by_ip(&ips[(k % n) as usize]).await.unwrap();
            black_box(hw.expect("present"));
        }
        let ip_rate = f64::from(lookups) / t.elapsed().as_secs_f64();

        let t = Instant::now();
        for k in 0..lookups {
            black_box(backend.hardware_by_mac("02:ff:ff:ff:ff:ff").await.unwrap());
            let _ = k;
        }
        let miss_rate = f64::from(lookups) / t.elapsed().as_secs_f64();

        println!("lookup by MAC: {mac_rate:.0}/s");
        println!("lookup by IP:  {ip_rate:.0}/s");
        println!("lookup miss:   {miss_rate:.0}/s");
    });
}
