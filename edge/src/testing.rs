//! Test support: throwaway certificates made with the `openssl` command
//! (`scripts/install-deps.sh` installs it). Keys are P-256, certificates valid for a day.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and a server certificate it signed, as PEM files in one directory.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (`ca.crt`): what a client trusts.
    pub ca: PathBuf,
    /// The server certificate (`tls.crt`), signed by the CA.
    pub cert: PathBuf,
    /// The server certificate's private key (`tls.key`).
    pub key: PathBuf,
}

impl TestPki {
    /// Make a CA and a server certificate for `names` (IP addresses and DNS names, e.g.
    /// `["127.0.0.1", "localhost"]`) in `dir`. Panics when openssl fails: this is for tests.
    pub fn create(dir: &Path, names: &[&str]) -> TestPki {
        let p = |f: &str| dir.join(f).display().to_string();
        std::fs::write(
            dir.join("ext.cnf"),
            format!(
                "subjectAltName={}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
                subject_alt_names(names)
            ),
        )
        .expect("writing ext.cnf");
        new_key(
            &["-x509", "-days", "1"],
            "tinkerbell test CA",
            &p("ca.key"),
            &p("ca.crt"),
        );
        new_key(&[], "tinkerbell test server", &p("tls.key"), &p("tls.csr"));
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("tls.csr"),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &p("ext.cnf"),
            "-out",
            &p("tls.crt"),
        ]);
        TestPki {
            ca: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }

    /// A self-signed server certificate for `names` (no CA): `ca` is the certificate itself,
    /// which a client can only pin.
    pub fn self_signed(dir: &Path, names: &[&str]) -> TestPki {
        let p = |f: &str| dir.join(f).display().to_string();
        let san = format!("subjectAltName={}", subject_alt_names(names));
        let ext = [
            "-x509",
            "-days",
            "1",
            "-addext",
            &san,
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ];
        new_key(
            &ext,
            "tinkerbell self-signed",
            &p("self.key"),
            &p("self.crt"),
        );
        TestPki {
            ca: dir.join("self.crt"),
            cert: dir.join("self.crt"),
            key: dir.join("self.key"),
        }
    }
}

/// `openssl req` with a new P-256 key written to `key`: a request (or with `-x509` among
/// `extra`, a certificate) for `/CN=cn` written to `out`.
fn new_key(extra: &[&str], cn: &str, key: &str, out: &str) {
    let subj = format!("/CN={cn}");
    let mut args = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        &subj,
        "-keyout",
        key,
        "-out",
        out,
    ];
    args.extend_from_slice(extra);
    openssl(&args);
}

fn subject_alt_names(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            if n.parse::<std::net::IpAddr>().is_ok() {
                format!("IP:{n}")
            } else {
                format!("DNS:{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("running openssl (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
