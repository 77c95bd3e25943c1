//! EKS Anywhere hardware.csv import: generated objects, error reporting, and a round trip
//! through the embedded store.

use serde_json::json;
use tinkerbell_admin::csv::{CsvErrors, RowError, parse_hardware_csv};
use tinkerbell_core::store::embedded::EmbeddedStore;
use tinkerbell_core::store::{HardwareLookup, Kind, Object, Store};

const NS: &str = "eksa-system";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../core/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn errors_of(input: &str) -> Vec<RowError> {
    match parse_hardware_csv(input, NS) {
        Ok(import) => panic!("expected errors, got {import:?}"),
        Err(CsvErrors(errors)) => errors,
    }
}

/// (line, column, message) triples, for compact assertions.
fn triples(errors: &[RowError]) -> Vec<(usize, Option<&str>, &str)> {
    errors
        .iter()
        .map(|e| (e.line, e.column.as_deref(), e.message.as_str()))
        .collect()
}

fn find<'a>(objects: &'a [Object], kind: Kind, name: &str) -> &'a Object {
    objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn good_file_generates_eksa_objects() {
    let import = parse_hardware_csv(&fixture("hardware.csv"), NS).expect("valid file");
    assert_eq!(import.rows, 3);

    // Secrets, then Machines, then Hardware, each in file order; the row without BMC details
    // (eksa-wk01) has neither a Secret nor a Machine.
    let order: Vec<String> = import.objects.iter().map(|o| o.key().to_string()).collect();
    assert_eq!(
        order,
        [
            "Secret eksa-system/bmc-eksa-cp01-auth",
            "Secret eksa-system/bmc-eksa-wk02-auth",
            "Machine eksa-system/bmc-eksa-cp01",
            "Machine eksa-system/bmc-eksa-wk02",
            "Hardware eksa-system/eksa-cp01",
            "Hardware eksa-system/eksa-wk01",
            "Hardware eksa-system/eksa-wk02",
        ]
    );

    let cp01 = find(&import.objects, Kind::Hardware, "eksa-cp01").to_json();
    assert_eq!(
        cp01,
        json!({
            "apiVersion": "tinkerbell.org/v1alpha1",
            "kind": "Hardware",
            "metadata": {
                "name": "eksa-cp01",
                "namespace": "eksa-system",
                "labels": { "type": "cp", "rack": "r1" },
            },
            "spec": {
                "bmcRef": { "kind": "Machine", "name": "bmc-eksa-cp01" },
                "disks": [{ "device": "/dev/sda" }],
                "interfaces": [{
                    "dhcp": {
                        "arch": "x86_64",
                        "hostname": "eksa-cp01",
                        "ip": {
                            "address": "10.10.50.2",
                            "family": 4,
                            "gateway": "10.10.50.1",
                            "netmask": "255.255.254.0",
                        },
                        "lease_time": 4294967294_i64,
                        "mac": "cc:48:3a:00:00:01",
                        "name_servers": ["8.8.8.8", "8.8.4.4"],
                        "uefi": true,
                    },
                    "netboot": { "allowPXE": true, "allowWorkflow": true },
                }],
                "metadata": {
                    "facility": { "facility_code": "onprem", "plan_slug": "c2.medium.x86" },
                    "instance": {
                        "allow_pxe": true,
                        "always_pxe": true,
                        "hostname": "eksa-cp01",
                        "id": "cc:48:3a:00:00:01",
                        "ips": [{
                            "address": "10.10.50.2",
                            "family": 4,
                            "gateway": "10.10.50.1",
                            "netmask": "255.255.254.0",
                            "public": true,
                        }],
                        "operating_system": {},
                    },
                },
            },
        })
    );

    // No BMC: no bmcRef. Dashed upper-case MAC normalised. Labels as given.
    let wk01 = find(&import.objects, Kind::Hardware, "eksa-wk01").to_json();
    assert_eq!(
        wk01,
        json!({
            "apiVersion": "tinkerbell.org/v1alpha1",
            "kind": "Hardware",
            "metadata": {
                "name": "eksa-wk01",
                "namespace": "eksa-system",
                "labels": { "type": "worker" },
            },
            "spec": {
                "disks": [{ "device": "/dev/nvme0n1" }],
                "interfaces": [{
                    "dhcp": {
                        "arch": "x86_64",
                        "hostname": "eksa-wk01",
                        "ip": {
                            "address": "10.10.50.3",
                            "family": 4,
                            "gateway": "10.10.50.1",
                            "netmask": "255.255.254.0",
                        },
                        "lease_time": 4294967294_i64,
                        "mac": "cc:48:3a:00:00:02",
                        "name_servers": ["1.1.1.1"],
                        "uefi": true,
                    },
                    "netboot": { "allowPXE": true, "allowWorkflow": true },
                }],
                "metadata": {
                    "facility": { "facility_code": "onprem", "plan_slug": "c2.medium.x86" },
                    "instance": {
                        "allow_pxe": true,
                        "always_pxe": true,
                        "hostname": "eksa-wk01",
                        "id": "cc:48:3a:00:00:02",
                        "ips": [{
                            "address": "10.10.50.3",
                            "family": 4,
                            "gateway": "10.10.50.1",
                            "netmask": "255.255.254.0",
                            "public": true,
                        }],
                        "operating_system": {},
                    },
                },
            },
        })
    );

    // vlan_id set; empty labels leave metadata.labels out.
    let wk02 = find(&import.objects, Kind::Hardware, "eksa-wk02").to_json();
    assert_eq!(
        wk02["metadata"],
        json!({ "name": "eksa-wk02", "namespace": "eksa-system" })
    );
    assert_eq!(
        wk02["spec"]["interfaces"][0]["dhcp"]["vlan_id"],
        json!("100")
    );
    assert_eq!(
        wk02["spec"]["bmcRef"],
        json!({ "kind": "Machine", "name": "bmc-eksa-wk02" })
    );
    assert!(
        cp01["spec"]["interfaces"][0]["dhcp"]
            .get("vlan_id")
            .is_none()
    );

    let machine = find(&import.objects, Kind::Machine, "bmc-eksa-cp01").to_json();
    assert_eq!(
        machine,
        json!({
            "apiVersion": "bmc.tinkerbell.org/v1alpha1",
            "kind": "Machine",
            "metadata": { "name": "bmc-eksa-cp01", "namespace": "eksa-system" },
            "spec": {
                "connection": {
                    "authSecretRef": { "name": "bmc-eksa-cp01-auth", "namespace": "eksa-system" },
                    "host": "10.10.44.1",
                    "insecureTLS": true,
                    "port": 0,
                    "providerOptions": { "preferredOrder": ["gofish"] },
                },
            },
        })
    );

    // Secret data is base64: "root" / "PrZ8W93i".
    let secret = find(&import.objects, Kind::Secret, "bmc-eksa-cp01-auth").to_json();
    assert_eq!(
        secret,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "bmc-eksa-cp01-auth",
                "namespace": "eksa-system",
                "labels": { "clusterctl.cluster.x-k8s.io/move": "true" },
            },
            "type": "kubernetes.io/basic-auth",
            "data": { "username": "cm9vdA==", "password": "UHJaOFc5M2k=" },
        })
    );
    // A password with a space and punctuation is kept exactly ("S3cret pass!").
    let secret = find(&import.objects, Kind::Secret, "bmc-eksa-wk02-auth").to_json();
    assert_eq!(
        secret["data"],
        json!({ "username": "YWRtaW4=", "password": "UzNjcmV0IHBhc3Mh" })
    );
}

#[test]
fn debug_output_hides_secrets() {
    let import = parse_hardware_csv(&fixture("hardware.csv"), NS).expect("valid file");
    let debug = format!("{import:?}");
    assert!(
        debug.contains("Secret eksa-system/bmc-eksa-cp01-auth"),
        "{debug}"
    );
    for secret in ["PrZ8W93i", "UHJaOFc5M2k", "S3cret", "UzNjcmV0"] {
        assert!(!debug.contains(secret), "{debug}");
    }
}

#[test]
fn bad_file_reports_every_error_and_imports_nothing() {
    let input = fixture("hardware_bad.csv");
    let result = parse_hardware_csv(&input, NS);
    let Err(CsvErrors(errors)) = result else {
        panic!("expected errors, got {result:?}");
    };
    assert_eq!(
        triples(&errors),
        [
            (3, Some("mac"), "\"zz\" is not a MAC address"),
            (
                4,
                Some("netmask"),
                "\"255.0.255.0\" is not a netmask: it must be an IPv4 netmask with contiguous \
                 ones, e.g. 255.255.255.0"
            ),
            (
                5,
                None,
                "incomplete BMC details: bmc_username is empty; set all of bmc_ip, bmc_username \
                 and bmc_password, or none of them"
            ),
            // Line 6 is blank; the next record is on line 7.
            (
                7,
                Some("ip_address"),
                "\"10.0.0.1\" is already used on line 2"
            ),
            (
                7,
                Some("mac"),
                "\"aa:bb:cc:dd:ee:01\" is already used on line 2"
            ),
            (7, Some("bmc_ip"), "\"10.0.1.1\" is already used on line 2"),
            (
                8,
                Some("hostname"),
                "\"Bad-Host\" is not a valid hostname: it must be a DNS-1123 subdomain \
                 (lower-case letters, digits, '-' and '.', each dot-separated part starting and \
                 ending with a letter or digit, at most 253 characters)"
            ),
            (
                8,
                Some("nameservers"),
                "\"dns.example\" is not an IP address"
            ),
            (
                8,
                Some("disk"),
                "\"sda\" is not a device path: it must match ^(/dev/[\\w-]+)+$, e.g. /dev/sda or \
                 /dev/nvme0n1"
            ),
            (
                8,
                Some("labels"),
                "\"bad key\" is not a valid label key: the name part must be 1 to 63 letters, \
                 digits, '-', '_' or '.', starting and ending with a letter or digit"
            ),
            (
                8,
                Some("vlan_id"),
                "\"5000\" is not a VLAN ID (an integer from 1 to 4094)"
            ),
        ]
    );

    // Display: one line per error, "line N: column: message".
    let text = CsvErrors(errors.clone()).to_string();
    assert_eq!(text.lines().count(), errors.len());
    assert!(
        text.starts_with("line 3: mac: \"zz\" is not a MAC address\n"),
        "{text}"
    );
    assert!(text.contains("\nline 5: incomplete BMC details:"), "{text}");

    // The password of the partial row ("hunter2") and of the others never appears.
    for password in ["hunter2", "pw1", "pw6"] {
        assert!(!text.contains(password), "{text}");
        assert!(!format!("{errors:?}").contains(password));
    }
}

#[test]
fn every_missing_bmc_field_is_named() {
    let input = "hostname,ip_address,netmask,gateway,nameservers,mac,disk,labels,bmc_ip,bmc_username,bmc_password\n\
                 n1,10.0.0.1,255.255.255.0,10.0.0.254,8.8.8.8,aa:bb:cc:dd:ee:01,/dev/sda,,,,secret\n\
                 n2,10.0.0.2,255.255.255.0,10.0.0.254,8.8.8.8,aa:bb:cc:dd:ee:02,/dev/sda,,not-an-ip,admin,pw\n";
    let errors = errors_of(input);
    assert_eq!(
        triples(&errors),
        [
            (
                2,
                None,
                "incomplete BMC details: bmc_ip, bmc_username are empty; set all of bmc_ip, \
                 bmc_username and bmc_password, or none of them"
            ),
            (3, Some("bmc_ip"), "\"not-an-ip\" is not an IP address"),
        ]
    );
    assert!(!format!("{errors:?}").contains("secret"));
}

#[test]
fn missing_required_columns_are_reported_together() {
    let errors = errors_of(
        "hostname,ip_address,netmask,nameservers,mac,disk\nn1,10.0.0.1,255.255.255.0,8.8.8.8,aa:bb:cc:dd:ee:01,/dev/sda\n",
    );
    assert_eq!(
        triples(&errors),
        [(1, None, "missing required columns: gateway, labels")]
    );
}

#[test]
fn unknown_columns_are_errors() {
    let errors = errors_of(
        "hostname,ip_address,netmask,gateway,nameservers,MAC,disk,labels,rack\n\
         n1,10.0.0.1,255.255.255.0,10.0.0.254,8.8.8.8,aa:bb:cc:dd:ee:01,/dev/sda,,r1\n",
    );
    assert_eq!(
        triples(&errors),
        [
            (
                1,
                None,
                "unknown columns \"MAC\" (did you mean \"mac\"?), \"rack\"; the columns are \
                 hostname, ip_address, netmask, gateway, nameservers, mac, disk, labels, bmc_ip, \
                 bmc_username, bmc_password, vlan_id (and the ignored legacy id, vendor)"
            ),
            (1, None, "missing required column: mac"),
        ]
    );
}

#[test]
fn duplicate_and_unnamed_columns_are_errors() {
    let errors = errors_of(
        "hostname,ip_address,netmask,gateway,nameservers,mac,disk,labels,mac,\n\
         n1,10.0.0.1,255.255.255.0,10.0.0.254,8.8.8.8,aa:bb:cc:dd:ee:01,/dev/sda,,aa:bb:cc:dd:ee:01,\n",
    );
    assert_eq!(
        triples(&errors),
        [
            (1, None, "column \"mac\" appears more than once"),
            (1, None, "header column 10 has no name"),
        ]
    );
}

#[test]
fn legacy_id_and_vendor_columns_are_ignored() {
    let import = parse_hardware_csv(&fixture("hardware_legacy.csv"), NS).expect("valid file");
    assert_eq!(import.rows, 1);
    let hw = find(&import.objects, Kind::Hardware, "worker1").to_json();
    // The instance id is the MAC, not the legacy id column.
    assert_eq!(
        hw["spec"]["metadata"]["instance"]["id"],
        json!("00:00:00:00:00:01")
    );
    let machine = find(&import.objects, Kind::Machine, "bmc-worker1").to_json();
    assert!(!machine.to_string().contains("supermicro"));
}

#[test]
fn empty_file_is_an_error() {
    for input in ["", "\n\n", "  \n", "\u{feff}"] {
        let errors = errors_of(input);
        assert_eq!(errors.len(), 1, "{input:?}");
        assert_eq!(errors[0].line, 1);
        assert!(
            errors[0].message.starts_with("the file is empty"),
            "{errors:?}"
        );
    }
}

#[test]
fn header_only_file_imports_nothing() {
    // As with EKS Anywhere: a header without rows is a valid, empty inventory.
    let input = "hostname,ip_address,netmask,gateway,nameservers,mac,disk,labels\n";
    let import = parse_hardware_csv(input, NS).expect("valid file");
    assert_eq!(import.rows, 0);
    assert!(import.objects.is_empty());
}

#[test]
fn short_rows_and_cell_details() {
    let input = "\u{feff}hostname , ip_address,netmask,gateway,nameservers,mac,disk,labels,vlan_id\n\
                 n1,10.0.0.1,255.255.255.0\n\
                 ,,,,,,,,\n\
                 n2, 10.0.0.2 ,255.255.255.0,10.0.0.254,8.8.8.8 | 2001:db8::1,AA-BB-CC-DD-EE-02,/dev/sda, type = cp | zone=a ,0\n\
                 n3,::1,255.255.255.0,10.0.0.256,8.8.8.8||1.1.1.1,aa:bb:cc:dd:ee:03,/dev/sda,type,\n";
    let errors = errors_of(input);
    assert_eq!(
        triples(&errors),
        [
            (
                2,
                None,
                "expected 9 fields (one per header column), found 3"
            ),
            // Line 3 (all cells empty) is skipped.
            (
                4,
                Some("vlan_id"),
                "\"0\" is not a VLAN ID (an integer from 1 to 4094)"
            ),
            (
                5,
                Some("ip_address"),
                "\"::1\" is an IPv6 address; only IPv4 is supported here"
            ),
            (5, Some("gateway"), "\"10.0.0.256\" is not an IPv4 address"),
            (
                5,
                Some("nameservers"),
                "\"8.8.8.8||1.1.1.1\" contains an empty entry (separate servers with '|')"
            ),
            (
                5,
                Some("labels"),
                "\"type\" is not a key=value pair (separate labels with '|')"
            ),
        ]
    );

    // The same row 4 with a valid VLAN: cells are trimmed, the MAC normalised, IPv6
    // nameservers accepted, labels trimmed.
    let fixed = input
        .lines()
        .take(1)
        .chain(std::iter::once(
            "n2, 10.0.0.2 ,255.255.255.0,10.0.0.254,8.8.8.8 | 2001:db8::1,AA-BB-CC-DD-EE-02,/dev/sda, type = cp | zone=a ,4094",
        ))
        .collect::<Vec<_>>()
        .join("\n");
    let import = parse_hardware_csv(&fixed, "tink").expect("valid file");
    let hw = find(&import.objects, Kind::Hardware, "n2").to_json();
    assert_eq!(hw["metadata"]["namespace"], json!("tink"));
    assert_eq!(
        hw["metadata"]["labels"],
        json!({ "type": "cp", "zone": "a" })
    );
    let dhcp = &hw["spec"]["interfaces"][0]["dhcp"];
    assert_eq!(dhcp["mac"], json!("aa:bb:cc:dd:ee:02"));
    assert_eq!(dhcp["ip"]["address"], json!("10.0.0.2"));
    assert_eq!(dhcp["name_servers"], json!(["8.8.8.8", "2001:db8::1"]));
    assert_eq!(dhcp["vlan_id"], json!("4094"));
}

#[tokio::test]
async fn imported_objects_apply_to_the_embedded_store() {
    let import = parse_hardware_csv(&fixture("hardware.csv"), NS).expect("valid file");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open store");

    let applied = store
        .apply_all(import.objects.clone())
        .await
        .expect("apply");
    assert_eq!(applied.len(), import.objects.len());

    for (mac, name) in [
        ("cc:48:3a:00:00:01", "eksa-cp01"),
        ("CC-48-3A-00-00-02", "eksa-wk01"),
        ("cc:48:3a:00:00:03", "eksa-wk02"),
    ] {
        let hw = store
            .hardware_by_mac(mac)
            .await
            .expect("lookup")
            .unwrap_or_else(|| panic!("no hardware for {mac}"));
        assert_eq!(hw.metadata.name.as_deref(), Some(name));
    }
    assert_eq!(
        store
            .list(Kind::Machine, Some(NS))
            .await
            .expect("list")
            .items
            .len(),
        2
    );
    assert_eq!(
        store
            .list(Kind::Secret, Some(NS))
            .await
            .expect("list")
            .items
            .len(),
        2
    );

    // Importing the same file again changes nothing.
    let again = store.apply_all(import.objects).await.expect("re-apply");
    let changed: Vec<String> = again
        .iter()
        .filter(|(_, a)| *a != tinkerbell_core::store::Applied::Unchanged)
        .map(|(o, a)| format!("{}: {a}", o.key()))
        .collect();
    assert!(changed.is_empty(), "{changed:?}");
}

#[test]
fn line_numbers_count_blank_lines_and_quoted_newlines() {
    // Header on line 3; the first row's labels cell spans lines 4-5; the bad row is on line 7.
    let input = "\n\nhostname,ip_address,netmask,gateway,nameservers,mac,disk,labels\n\
                 n1,10.0.0.1,255.255.255.0,10.0.0.254,8.8.8.8,aa:bb:cc:dd:ee:01,/dev/sda,\"type=cp|\n\
                 zone=a\"\n\
                 \n\
                 n2,10.0.0.2,255.255.255.0,10.0.0.254,8.8.8.8,zz,/dev/sda,\n";
    let errors = errors_of(input);
    assert_eq!(
        triples(&errors),
        [(7, Some("mac"), "\"zz\" is not a MAC address")]
    );

    let errors = errors_of("\n\nhostname\n");
    assert_eq!(errors[0].line, 3);
    assert!(
        errors[0]
            .message
            .starts_with("missing required columns: ip_address")
    );
}
