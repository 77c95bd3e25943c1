//! The EC2 2009-04-04 metadata tree, computed from a Hardware.
//!
//! Pure functions, no I/O: [`resolve`] maps the path below the version (`meta-data/hostname`)
//! to a listing or a value. Listings follow EC2 and upstream Tinkerbell: children sorted,
//! sub-directories with a trailing `/`, one per line, no trailing newline. A trailing slash on
//! the request is accepted everywhere.
//!
//! Field mapping (upstream `toEC2Instance`, plus the gaps upstream leaves):
//! * `instance-id` ← `metadata.instance.id`; `hostname`, `local-hostname` ←
//!   `metadata.instance.hostname`; `tags` ← `metadata.instance.tags` (one per line);
//! * `public-ipv4` ← first `instance.ips[]` with family 4 and public; `local-ipv4` ← first with
//!   family 4 and not public; `public-ipv6` ← first with family 6;
//! * `plan` ← `facility.plan_slug`; `facility` ← `facility.facility_code`;
//! * `operating-system/{slug,distro,version,image_tag}` ← `instance.operating_system`;
//! * `public-keys/` ← `instance.ssh_keys` in EC2's form (`0=<name>`, `0/openssh-key`), which
//!   upstream never fills;
//! * `user-data` ← `spec.userData`, `vendor-data` ← `spec.vendorData` (404 when unset);
//! * `dynamic/instance-identity/document`: EC2's identity JSON with what a Hardware knows.
//!
//! `iqn` and `operating-system/license_activation/state` have no Hardware field; like
//! upstream they answer an empty value.

use tinkerbell_core::model::{
    Hardware, MetadataFacility, MetadataInstance, MetadataInstanceOperatingSystem,
};

/// `text/plain`, what upstream answers for every leaf.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// User and vendor data are opaque bytes.
pub const OCTETS: &str = "application/octet-stream";

/// What a path resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory: the listing body.
    Dir(String),
    /// A value and its content type.
    Leaf(String, &'static str),
    /// The path exists but this Hardware has no value for it (answered 404).
    Unset,
}

/// A resolved path: the route template (the metrics label) and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Route template, e.g. `/meta-data/public-keys/{n}/openssh-key`.
    pub route: &'static str,
    /// The answer.
    pub node: Node,
}

const VERSION_ROOT: &[&str] = &["dynamic/", "meta-data/", "user-data", "vendor-data"];
const META_DATA: &[&str] = &[
    "facility",
    "hostname",
    "instance-id",
    "iqn",
    "local-hostname",
    "local-ipv4",
    "operating-system/",
    "plan",
    "public-ipv4",
    "public-ipv6",
    "public-keys/",
    "tags",
];
const OPERATING_SYSTEM: &[&str] = &[
    "distro",
    "image_tag",
    "license_activation/",
    "slug",
    "version",
];

fn dir(route: &'static str, children: &[&str]) -> Option<Resolved> {
    Some(Resolved {
        route,
        node: Node::Dir(children.join("\n")),
    })
}

fn leaf(route: &'static str, value: impl Into<String>) -> Option<Resolved> {
    Some(Resolved {
        route,
        node: Node::Leaf(value.into(), TEXT),
    })
}

fn opt_data(route: &'static str, value: Option<&str>) -> Option<Resolved> {
    Some(Resolved {
        route,
        node: match value {
            Some(v) => Node::Leaf(v.to_string(), OCTETS),
            None => Node::Unset,
        },
    })
}

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// The instance section of a Hardware, if any.
pub fn instance(hw: &Hardware) -> Option<&MetadataInstance> {
    hw.spec.metadata.as_ref().and_then(|m| m.instance.as_ref())
}

/// The SSH public keys, trimmed, empty ones dropped.
pub fn ssh_keys(hw: &Hardware) -> Vec<&str> {
    instance(hw)
        .and_then(|i| i.ssh_keys.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|k| k.trim())
        .filter(|k| !k.is_empty())
        .collect()
}

/// The name EC2 lists a key under (`0=<name>`): the key's comment when it is a plain word,
/// else `key-<n>`.
pub fn key_name(index: usize, key: &str) -> String {
    let comment = key.split_whitespace().nth(2);
    match comment {
        Some(c)
            if c.chars()
                .all(|ch| ch.is_ascii_graphic() && ch != '=' && ch != '/') =>
        {
            c.to_string()
        }
        _ => format!("key-{index}"),
    }
}

fn first_ip(hw: &Hardware, pick: impl Fn(i64, bool) -> bool) -> String {
    instance(hw)
        .and_then(|i| i.ips.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|ip| pick(ip.family.unwrap_or(0), ip.public.unwrap_or(false)))
        .map(|ip| s(&ip.address).to_string())
        .unwrap_or_default()
}

/// Resolve `segments` (the path below the version, empty segments already removed).
/// `None` means there is no such path.
pub fn resolve(hw: &Hardware, segments: &[&str]) -> Option<Resolved> {
    let inst = instance(hw);
    let os = inst.and_then(|i| i.operating_system.as_ref());
    let facility = hw.spec.metadata.as_ref().and_then(|m| m.facility.as_ref());
    let non_empty = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_string);
    let of_inst = |f: fn(&MetadataInstance) -> &Option<String>| -> String {
        inst.map_or("", |i| s(f(i))).into()
    };
    let of_facility = |f: fn(&MetadataFacility) -> &Option<String>| -> String {
        facility.map_or("", |x| s(f(x))).into()
    };
    let of_os = |f: fn(&MetadataInstanceOperatingSystem) -> &Option<String>| os.map(|o| s(f(o)));
    match segments {
        [] => dir("/", VERSION_ROOT),
        ["user-data"] => opt_data("/user-data", non_empty(&hw.spec.user_data).as_deref()),
        ["vendor-data"] => opt_data("/vendor-data", non_empty(&hw.spec.vendor_data).as_deref()),
        ["meta-data"] => dir("/meta-data", META_DATA),
        ["dynamic"] => dir("/dynamic", &["instance-identity/"]),
        ["dynamic", "instance-identity"] => dir("/dynamic/instance-identity", &["document"]),
        ["dynamic", "instance-identity", "document"] => {
            leaf("/dynamic/instance-identity/document", identity_document(hw))
        }
        ["meta-data", field] => {
            let (route, value): (&'static str, String) = match *field {
                "instance-id" => ("/meta-data/instance-id", of_inst(|i| &i.id)),
                "hostname" => ("/meta-data/hostname", of_inst(|i| &i.hostname)),
                "local-hostname" => ("/meta-data/local-hostname", of_inst(|i| &i.hostname)),
                "iqn" => ("/meta-data/iqn", String::new()),
                "plan" => ("/meta-data/plan", of_facility(|f| &f.plan_slug)),
                "facility" => ("/meta-data/facility", of_facility(|f| &f.facility_code)),
                "tags" => (
                    "/meta-data/tags",
                    inst.and_then(|i| i.tags.as_deref())
                        .unwrap_or_default()
                        .join("\n"),
                ),
                "public-ipv4" => ("/meta-data/public-ipv4", first_ip(hw, |f, p| f == 4 && p)),
                "local-ipv4" => ("/meta-data/local-ipv4", first_ip(hw, |f, p| f == 4 && !p)),
                "public-ipv6" => ("/meta-data/public-ipv6", first_ip(hw, |f, _| f == 6)),
                "operating-system" => return dir("/meta-data/operating-system", OPERATING_SYSTEM),
                "public-keys" => {
                    let listing: Vec<String> = ssh_keys(hw)
                        .iter()
                        .enumerate()
                        .map(|(n, k)| format!("{n}={}", key_name(n, k)))
                        .collect();
                    return Some(Resolved {
                        route: "/meta-data/public-keys",
                        node: Node::Dir(listing.join("\n")),
                    });
                }
                _ => return None,
            };
            leaf(route, value)
        }
        ["meta-data", "operating-system", field] => {
            let (route, value) = match *field {
                "slug" => ("/meta-data/operating-system/slug", of_os(|o| &o.slug)),
                "distro" => ("/meta-data/operating-system/distro", of_os(|o| &o.distro)),
                "version" => ("/meta-data/operating-system/version", of_os(|o| &o.version)),
                "image_tag" => (
                    "/meta-data/operating-system/image_tag",
                    of_os(|o| &o.image_tag),
                ),
                "license_activation" => {
                    return dir("/meta-data/operating-system/license_activation", &["state"]);
                }
                _ => return None,
            };
            leaf(route, value.unwrap_or(""))
        }
        [
            "meta-data",
            "operating-system",
            "license_activation",
            "state",
        ] => leaf("/meta-data/operating-system/license_activation/state", ""),
        ["meta-data", "public-keys", n, rest @ ..] => {
            let keys = ssh_keys(hw);
            // Only the canonical decimal form: `0`, not `00` or `+0`.
            let idx: usize = n.parse().ok().filter(|i: &usize| i.to_string() == *n)?;
            let key = keys.get(idx)?;
            match rest {
                [] => dir("/meta-data/public-keys/{n}", &["openssh-key"]),
                ["openssh-key"] => leaf("/meta-data/public-keys/{n}/openssh-key", *key),
                _ => None,
            }
        }
        _ => None,
    }
}

/// EC2's instance identity document, with what a Hardware knows: `instanceId`, `privateIp`
/// (as `local-ipv4`) and `architecture` (the first interface's `dhcp.arch`). Without it,
/// cloud-init on an AWS-identified machine retries the missing document for seconds.
pub fn identity_document(hw: &Hardware) -> String {
    let arch = hw
        .interfaces()
        .iter()
        .filter_map(|i| i.dhcp.as_ref())
        .find_map(|d| d.arch.as_deref().filter(|a| !a.is_empty()))
        .unwrap_or("");
    let doc = serde_json::json!({
        "architecture": arch,
        "instanceId": instance(hw).map(|i| s(&i.id)).unwrap_or(""),
        "privateIp": first_ip(hw, |f, p| f == 4 && !p),
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The legacy `/metadata` JSON the rootio action reads (upstream `HackInstance`):
/// `{"metadata":{"instance":{"storage":{"disks":[…],"filesystems":[…]}}}}`.
pub fn hack_instance(hw: &Hardware) -> serde_json::Value {
    use serde_json::json;
    let storage = instance(hw).and_then(|i| i.storage.as_ref());
    let disks: Vec<_> = storage
        .and_then(|st| st.disks.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let parts: Vec<_> = d
                .partitions
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    json!({
                        "label": s(&p.label),
                        "number": p.number.unwrap_or(0),
                        "size": p.size.unwrap_or(0),
                    })
                })
                .collect();
            json!({
                "device": s(&d.device),
                "partitions": parts,
                "wipe_table": d.wipe_table.unwrap_or(false),
            })
        })
        .collect();
    let filesystems: Vec<_> = storage
        .and_then(|st| st.filesystems.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let m = f.mount.clone().unwrap_or_default();
            let options = m
                .create
                .as_ref()
                .and_then(|c| c.options.clone())
                .unwrap_or_default();
            json!({
                "mount": {
                    "create": { "options": options },
                    "device": s(&m.device),
                    "format": s(&m.format),
                    "point": s(&m.point),
                }
            })
        })
        .collect();
    json!({
        "metadata": {
            "instance": {
                "storage": { "disks": disks, "filesystems": filesystems }
            }
        }
    })
}
