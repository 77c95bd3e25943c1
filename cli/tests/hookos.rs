//! HookOS travels with the appliance: `tinkerbell hookos fetch` installs a release (served by
//! a real HTTP server, Python's http.server) into `<data dir>/hookos`, checked file by file
//! against its SHA256SUMS, all or nothing; `serve` then finds it there without flags, and says
//! at start, on `/healthz` and in the machines' iPXE scripts when it is missing or corrupt.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{BIN, run as tb};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A release directory: kernel, initramfs and manifest of pseudo-random bytes, and the
/// SHA256SUMS `sha256sum` writes for them.
fn release(dir: &Path, seed: u8) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, (name, len)) in [
        ("vmlinuz-x86_64", 3 << 20),
        ("initramfs-x86_64", (5 << 20) + 7),
        ("manifest.txt", 100),
    ]
    .into_iter()
    .enumerate()
    {
        let bytes: Vec<u8> = (0..len as u32)
            .map(|j| (j.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed ^ i as u8)
            .collect();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    write_sums(dir);
}

fn write_sums(dir: &Path) {
    let out = Command::new("sha256sum")
        .args(["vmlinuz-x86_64", "initramfs-x86_64", "manifest.txt"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(dir.join("SHA256SUMS"), out.stdout).unwrap();
}

/// `python3 -m http.server` on loopback over `root`.
struct FileServer {
    child: Child,
    url: String,
}

impl FileServer {
    fn start(root: &Path) -> FileServer {
        Self::spawn(
            root,
            Command::new("python3").args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"]),
            "http",
        )
    }

    /// The same server over TLS with `cert` and `key` (Python's ssl module around it).
    fn start_tls(root: &Path, cert: &Path, key: &Path) -> FileServer {
        let script = "import http.server, ssl, sys\n\
            s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\n\
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[1], sys.argv[2])\n\
            s.socket = c.wrap_socket(s.socket, server_side=True)\n\
            print(f'Serving HTTPS on 127.0.0.1 port {s.server_address[1]}', flush=True)\n\
            s.serve_forever()\n";
        Self::spawn(
            root,
            Command::new("python3")
                .args(["-u", "-c", script])
                .arg(cert)
                .arg(key),
            "https",
        )
    }

    fn spawn(root: &Path, cmd: &mut Command, scheme: &str) -> FileServer {
        let mut child = cmd
            .current_dir(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 40405 (http://127.0.0.1:40405/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .unwrap_or_else(|| panic!("http.server said {line:?}"));
        FileServer {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn fetch_installs_a_checked_release_all_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    release(&www.join("v1"), 1);
    let server = FileServer::start(&www);

    // A good release lands in <data dir>/hookos, byte for byte.
    let data = tmp.path().join("data");
    let out = tb(
        &data,
        &["hookos", "fetch", "--url", &format!("{}/v1/", server.url)],
    );
    assert!(out.status.success(), "fetch: {}", text(&out.stderr));
    let installed = data.join("hookos");
    for f in [
        "vmlinuz-x86_64",
        "initramfs-x86_64",
        "manifest.txt",
        "SHA256SUMS",
    ] {
        assert_eq!(
            std::fs::read(installed.join(f)).unwrap(),
            std::fs::read(www.join("v1").join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(
        files_in(&installed),
        [
            "SHA256SUMS",
            "initramfs-x86_64",
            "manifest.txt",
            "vmlinuz-x86_64"
        ],
        "only the release's files, no staging left"
    );
    let status = tb(&data, &["hookos", "status"]);
    assert!(status.status.success());
    assert!(text(&status.stdout).contains("3 files match SHA256SUMS"));

    // A release whose initramfs does not match its sums: refused naming the file, and the
    // installed HookOS is untouched.
    release(&www.join("v2"), 2);
    std::fs::write(www.join("v2/initramfs-x86_64"), b"truncated").unwrap();
    let out = tb(
        &data,
        &["hookos", "fetch", "--url", &format!("{}/v2", server.url)],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("initramfs-x86_64") && err.contains("does not match SHA256SUMS"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(installed.join("initramfs-x86_64")).unwrap(),
        std::fs::read(www.join("v1/initramfs-x86_64")).unwrap(),
        "a failed fetch changes nothing"
    );
    assert_eq!(files_in(&installed).len(), 4, "no staging left behind");

    // Sums that lack the kernel, a missing file, a URL that is not HTTP: each named.
    release(&www.join("v3"), 3);
    let sums = std::fs::read_to_string(www.join("v3/SHA256SUMS")).unwrap();
    let no_kernel: String = sums
        .lines()
        .filter(|l| !l.ends_with("vmlinuz-x86_64"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(www.join("v3/SHA256SUMS"), no_kernel).unwrap();
    let err = text(
        &tb(
            &data,
            &["hookos", "fetch", "--url", &format!("{}/v3", server.url)],
        )
        .stderr,
    );
    assert!(err.contains("lists no vmlinuz-x86_64"), "{err}");
    let err = text(
        &tb(
            &data,
            &["hookos", "fetch", "--url", &format!("{}/none", server.url)],
        )
        .stderr,
    );
    assert!(err.contains("/none/SHA256SUMS: 404"), "{err}");
    let err = text(&tb(&data, &["hookos", "fetch", "--url", "ftp://x/"]).stderr);
    assert!(err.contains("not an http:// or https:// URL"), "{err}");

    // Over HTTPS: a server whose CA is given with --url-ca-file is trusted; without it, not.
    std::fs::create_dir(tmp.path().join("pki")).unwrap();
    let pki = tinkerbell_edge::testing::TestPki::create(&tmp.path().join("pki"), &["127.0.0.1"]);
    let tls = FileServer::start_tls(&www, &pki.cert, &pki.key);
    let https = tmp.path().join("https");
    let out = tb(
        &https,
        &["hookos", "fetch", "--url", &format!("{}/v1", tls.url)],
    );
    assert_eq!(out.status.code(), Some(1), "an unknown CA was trusted");
    assert!(!https.join("hookos/vmlinuz-x86_64").exists());
    let out = tb(
        &https,
        &[
            "hookos",
            "fetch",
            "--url",
            &format!("{}/v1", tls.url),
            "--url-ca-file",
            &pki.ca.display().to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "fetch over https: {}",
        text(&out.stderr)
    );
    assert_eq!(files_in(&https.join("hookos")).len(), 4);

    // --from a local directory (a build's output) installs the same way.
    let other = tmp.path().join("other");
    let out = tb(
        &other,
        &[
            "hookos",
            "fetch",
            "--from",
            &www.join("v1").display().to_string(),
        ],
    );
    assert!(out.status.success(), "fetch --from: {}", text(&out.stderr));
    assert_eq!(files_in(&other.join("hookos")).len(), 4);
}

/// `serve` on `data` with the controllers off and its stderr in `log`, until its URLs are
/// written.
struct Serve {
    child: Child,
    data: PathBuf,
}

impl Serve {
    fn start(data: &Path, log: &Path, extra: &[&str]) -> Serve {
        std::fs::create_dir_all(data).unwrap();
        for f in ["api-url", "http-url"] {
            let _ = std::fs::remove_file(data.join(f));
        }
        let child = common::serve_on_loopback(data)
            .args([
                "--enable-tink-controller=false",
                "--enable-rufio-controller=false",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(data.join("api-url").exists() && data.join("http-url").exists()) {
            assert!(Instant::now() < deadline, "serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Serve {
            child,
            data: data.to_path_buf(),
        }
    }

    fn url(&self, file: &str) -> String {
        std::fs::read_to_string(self.data.join(file))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl -s`: the status code and the body.
fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let all = text(&out.stdout);
    let (body, code) = all.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

#[test]
fn serve_finds_hookos_in_the_data_dir_and_says_when_it_is_missing_or_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hardware.csv");
    let script = "/ipxe/script/52:54:00:00:00:20/auto.ipxe";

    // No HookOS yet: serve says so and what to do; a machine's script waits instead of a
    // kernel URL that 404s; /healthz stays ok (this appliance does not netboot: no DHCP/TFTP).
    let log = tmp.path().join("serve1.log");
    let s = Serve::start(&data, &log, &[]);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("HookOS is missing in")
            && said.contains(&data.join("hookos").display().to_string())
            && said.contains("tinkerbell hookos fetch"),
        "{said}"
    );
    let out = tb(
        &data,
        &["hardware", "import", "--csv", &csv.display().to_string()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, body) = get(&format!("{}{script}", s.url("http-url")));
    assert_eq!(code, 200);
    assert!(
        body.starts_with("#!ipxe\n")
            && body.contains("HookOS is missing on the provisioning appliance")
            && body.contains("chain --autofree auto.ipxe")
            && !body.contains("kernel "),
        "{body}"
    );
    assert_eq!(
        get(&format!("{}/healthz", s.url("api-url"))),
        (200, "ok\n".into())
    );
    drop(s);

    // Installed (as `hookos fetch --from` does): the script boots it from our own /hookos.
    let rel = tmp.path().join("release");
    release(&rel, 7);
    let out = tb(
        &data,
        &["hookos", "fetch", "--from", &rel.display().to_string()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = tmp.path().join("serve2.log");
    let s = Serve::start(&data, &log, &[]);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("3 files match its SHA256SUMS"), "{said}");
    let http = s.url("http-url");
    let (code, body) = get(&format!("{http}{script}"));
    assert_eq!(code, 200);
    assert!(
        body.contains(&format!("set download-url {http}/hookos\n"))
            && body.contains("set kernel vmlinuz-x86_64"),
        "{body}"
    );
    assert_eq!(get(&format!("{http}/hookos/vmlinuz-x86_64")).0, 200);
    assert_eq!(
        get(&format!("{}/healthz", s.url("api-url"))),
        (200, "ok\n".into())
    );

    // Corrupted while serving: /healthz fails naming the file, scripts wait again.
    std::fs::write(data.join("hookos/initramfs-x86_64"), b"bit rot").unwrap();
    let (code, body) = get(&format!("{}/healthz", s.url("api-url")));
    assert_eq!(code, 503);
    assert!(
        body.contains("is corrupt: initramfs-x86_64 has sha256"),
        "{body}"
    );
    let (_, body) = get(&format!("{http}{script}"));
    assert!(body.contains("HookOS is corrupt"), "{body}");
    drop(s);

    // At start, too.
    let log = tmp.path().join("serve3.log");
    let _s = Serve::start(&data, &log, &[]);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("is corrupt: initramfs-x86_64"), "{said}");
}

#[test]
fn build_from_a_directory_without_a_checkout_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["hookos", "build"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("not inside a tinkerbell-rs checkout") && err.contains("--source"),
        "{err}"
    );
}
