use super::*;

#[test]
fn images() {
    for ok in [
        "alpine",
        "alpine:3.20",
        "quay.io/tinkerbell/actions/image2disk:latest",
        "127.0.0.1/embedded/image2disk",
        "localhost:5000/a/b:V1.2_x",
        "ghcr.io/x/y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "[::1]:5000/x",
    ] {
        assert_eq!(check_image(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "Alpine",
        "a b",
        "x:",
        "x/-y",
        "quay.io//x",
        "x@sha256:zz",
        "x:-tag",
    ] {
        assert!(check_image(bad).is_err(), "{bad}");
    }
}

#[test]
fn go_field_names() {
    for (json, go) in [
        ("dhcp", "DHCP"),
        ("ip", "IP"),
        ("mac", "MAC"),
        ("name_servers", "NameServers"),
        ("allowPXE", "AllowPXE"),
        ("allowWorkflow", "AllowWorkflow"),
        ("vlan_id", "VLANID"),
        ("operating_system", "OperatingSystem"),
        ("uefi", "UEFI"),
        ("disableDhcp", "DisableDHCP"),
        ("ipxe", "IPXE"),
    ] {
        assert_eq!(go_name(json), go, "{json}");
    }
}

#[test]
fn scalars_become_strings() {
    let doc = parse(
        "s",
        "name: 1\ntasks:\n  - name: t\n    worker: w\n    environment: {A: true, B: 3, C: ~, D: x}\n    actions: []\n",
    )
    .unwrap();
    assert_eq!(doc.name, "1");
    let env = &doc.tasks[0].environment;
    assert_eq!(
        (
            env["A"].as_str(),
            env["B"].as_str(),
            env["C"].as_str(),
            env["D"].as_str()
        ),
        ("true", "3", "", "x")
    );
}
