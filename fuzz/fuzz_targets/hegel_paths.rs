//! hegel's EC2 metadata tree (`ec2::resolve`, what every `/2009-04-04/...`, `/latest/...` and
//! `/tootles/instanceID/<id>/2009-04-04/...` request is answered from) on fuzzed request paths,
//! split into segments as the routes do, against a fixed Hardware; and the caller's address
//! (`http::client_ip`) from a fuzzed `X-Forwarded-For`. Nothing may panic, and:
//! * a path that resolves against an empty Hardware (what error responses are labelled with)
//!   resolves against every Hardware, to the same route template;
//! * listings have no trailing newline; `public-keys/<n>/openssh-key` is key `n`, trimmed;
//! * the caller is the peer unless the peer is a trusted proxy, and then the peer or one of
//!   the forwarded addresses.
//!
//! Input lines: the request path; the `X-Forwarded-For` value; the trusted proxies (default
//! `10.0.0.0/8,fd00::/8`); every further line is one more SSH key on the Hardware (the keys
//! come from the store, where an operator or a CSV import put them).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tinkerbell_core::model::Hardware;
use tinkerbell_core::store::Object;
use tinkerbell_hegel::Cidr;
use tinkerbell_hegel::ec2::{self, Node};
use tinkerbell_hegel::http::client_ip;

fn fixture() -> &'static Arc<Hardware> {
    static HW: OnceLock<Arc<Hardware>> = OnceLock::new();
    HW.get_or_init(|| {
        let v = json!({
            "apiVersion": "tinkerbell.org/v1alpha1",
            "kind": "Hardware",
            "metadata": {"name": "sm01", "namespace": "tink-system"},
            "spec": {
                "interfaces": [{"dhcp": {"mac": "3c:ec:ef:4c:4f:54", "arch": "x86_64",
                    "ip": {"address": "10.1.1.11", "netmask": "255.255.255.0", "gateway": "10.1.1.1", "family": 4}}}],
                "metadata": {
                    "facility": {"plan_slug": "c3.small.x86", "facility_code": "onprem"},
                    "instance": {
                        "id": "3c:ec:ef:4c:4f:54",
                        "hostname": "sm01",
                        "tags": ["rack-a", "gpu"],
                        "operating_system": {"slug": "ubuntu_22_04", "distro": "ubuntu", "version": "22.04", "image_tag": "22.04"},
                        "ips": [
                            {"address": "203.0.113.11", "family": 4, "public": true},
                            {"address": "10.1.1.11", "family": 4, "public": false},
                            {"address": "2001:db8::11", "family": 6, "public": true}
                        ],
                        "ssh_keys": [
                            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample user@example",
                            "  ",
                            "ssh-rsa AAAAB3NzaC1yc2E= key with spaces"
                        ],
                        "storage": {"disks": [{"device": "/dev/sda", "partitions": [{"label": "ROOT", "number": 1, "size": 0}]}]}
                    }
                },
                "userData": "#cloud-config\nhostname: sm01\n",
                "vendorData": ""
            }
        });
        let o = Object::from_typed_json(v).expect("fixture Hardware");
        o.as_hardware().expect("a Hardware").clone()
    })
}

fn segments_after(path: &str, n: usize) -> Vec<&str> {
    // What the routes do (hegel's http.rs): empty segments dropped, the prefix skipped.
    path.split('/').filter(|s| !s.is_empty()).skip(n).collect()
}

fn check_path(hw: &Hardware, segs: &[&str]) {
    let got = ec2::resolve(hw, segs);
    if let Some(empty) = ec2::resolve(&Hardware::default(), segs) {
        let got = got
            .as_ref()
            .unwrap_or_else(|| panic!("{segs:?} resolves on an empty Hardware only"));
        assert_eq!(
            got.route, empty.route,
            "{segs:?}: route depends on the Hardware"
        );
    }
    let Some(r) = got else { return };
    assert!(r.route.starts_with('/'), "route {:?}", r.route);
    match &r.node {
        Node::Dir(body) => assert!(
            !body.ends_with('\n'),
            "{segs:?}: listing ends with a newline"
        ),
        Node::Leaf(body, _) if r.route == "/meta-data/public-keys/{n}/openssh-key" => {
            let keys = ec2::ssh_keys(hw);
            let n: usize = segs[2].parse().expect("resolved index");
            assert_eq!(keys[n], body.as_str());
            assert_eq!(body.trim(), body.as_str());
        }
        Node::Leaf(..) | Node::Unset => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let path = lines.next().unwrap_or("");
    let xff = lines.next().unwrap_or("");
    let trusted = lines
        .next()
        .filter(|l| !l.is_empty())
        .unwrap_or("10.0.0.0/8,fd00::/8");
    let keys: Vec<String> = lines.map(str::to_string).collect();

    let base = fixture();
    let extended;
    let hw: &Hardware = if keys.is_empty() {
        &**base
    } else {
        let mut h = Hardware::clone(base);
        let inst = h
            .spec
            .metadata
            .as_mut()
            .and_then(|m| m.instance.as_mut())
            .expect("fixture instance");
        inst.ssh_keys.get_or_insert_with(Vec::new).extend(keys);
        extended = h;
        &extended
    };
    // /<version>/... and /tootles/instanceID/<id>/2009-04-04/...
    check_path(hw, &segments_after(path, 1));
    check_path(hw, &segments_after(path, 4));

    let Ok(trusted) = Cidr::parse_list(trusted) else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(xff) {
        headers.append("x-forwarded-for", v);
    }
    let forwarded: Vec<IpAddr> = xff
        .split(',')
        .filter_map(|i| i.trim().parse::<IpAddr>().ok())
        .map(tinkerbell_hegel::config::canonical)
        .collect();
    for peer in [
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        "fd00::1".parse().expect("address"),
    ] {
        let is_trusted = trusted.iter().any(|c| c.contains(peer));
        match client_ip(peer, &headers, &trusted) {
            Ok(ip) if !is_trusted => {
                assert_eq!(ip, peer, "an untrusted peer's X-Forwarded-For was used")
            }
            Ok(ip) => assert!(
                ip == peer || forwarded.contains(&ip),
                "{ip} is neither the peer nor forwarded"
            ),
            Err(_) => assert!(is_trusted, "an untrusted peer was refused"),
        }
    }
});
