//! boots' HookOS file server (`http::hookos::serve`, what `GET/HEAD /hookos/<file>` runs) on
//! fuzzed request paths, `Range`, `If-Range` and `If-Modified-Since` headers, against a real
//! directory. Nothing may panic, and every answer must be consistent: a 200 carries exactly one
//! of the served files, a 206 exactly the bytes its `Content-Range` names (within the file, and
//! `Content-Length` agreeing), a 416 names the file's length. A file outside the directory is
//! never served (its contents would match none of the served files).
//!
//! Input: a flags byte (bit 0 HEAD, bit 1 `If-Range` equal to the files' `Last-Modified`, bit 2
//! `If-Modified-Since` equal to it, bit 3 an `If-None-Match`), then lines: the path (default
//! `/vmlinuz-x86_64`), the `Range` value, a raw `If-Range` value, a raw `If-Modified-Since`
//! value; missing or empty lines send no header.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use libfuzzer_sys::fuzz_target;
use tinkerbell_boots::http::hookos::{self, CHUNK, HookosDir};

struct Fixture {
    rt: tokio::runtime::Runtime,
    dir: Arc<HookosDir>,
    /// Every regular file under the served directory.
    files: Vec<Vec<u8>>,
    last_modified: HeaderValue,
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let base =
            std::env::temp_dir().join(format!("tinkerbell-fuzz-http-range-{}", std::process::id()));
        let root: PathBuf = base.join("hookos");
        std::fs::create_dir_all(root.join("dir")).expect("fixture dir");
        std::fs::write(
            base.join("secret"),
            b"TOP SECRET, outside the HookOS directory",
        )
        .expect("fixture");
        let files = vec![
            ("vmlinuz-x86_64", pattern(1000, 1)),
            // Over one read chunk: pooled full chunks plus a short tail.
            ("initramfs-x86_64", pattern(CHUNK + 1000, 2)),
            ("empty", Vec::new()),
            ("a b", pattern(3, 3)),
            ("dir/f", pattern(10, 4)),
        ];
        for (name, data) in &files {
            std::fs::write(root.join(name), data).expect("fixture file");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = Arc::new(HookosDir::new(root));
        let probe = Request::head("/vmlinuz-x86_64")
            .body(Body::empty())
            .expect("request");
        let r = rt.block_on(hookos::serve(dir.clone(), probe));
        let last_modified = r
            .headers()
            .get(header::LAST_MODIFIED)
            .expect("Last-Modified")
            .clone();
        Fixture {
            rt,
            dir,
            files: files.into_iter().map(|(_, d)| d).collect(),
            last_modified,
        }
    })
}

fn num(s: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| panic!("not a number in a header we sent: {s:?}"))
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut lines = rest.split(|&b| b == b'\n');
    let path = lines
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or(b"/vmlinuz-x86_64");
    let Ok(uri) = Uri::try_from(path) else {
        return;
    };
    let head = flags & 1 != 0;
    let mut req = Request::new(Body::empty());
    *req.method_mut() = if head { Method::HEAD } else { Method::GET };
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    let raw = |v: Option<&[u8]>| {
        v.filter(|v| !v.is_empty())
            .and_then(|v| HeaderValue::from_bytes(v).ok())
    };
    if let Some(v) = raw(lines.next()) {
        h.insert(header::RANGE, v);
    }
    match raw(lines.next()) {
        _ if flags & 2 != 0 => {
            h.insert(header::IF_RANGE, f.last_modified.clone());
        }
        Some(v) => {
            h.insert(header::IF_RANGE, v);
        }
        None => {}
    }
    match raw(lines.next()) {
        _ if flags & 4 != 0 => {
            h.insert(header::IF_MODIFIED_SINCE, f.last_modified.clone());
        }
        Some(v) => {
            h.insert(header::IF_MODIFIED_SINCE, v);
        }
        None => {}
    }
    if flags & 8 != 0 {
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
    }

    let (parts, body) =
        f.rt.block_on(async {
            let r = hookos::serve(f.dir.clone(), req).await;
            let (parts, body) = r.into_parts();
            axum::body::to_bytes(body, usize::MAX)
                .await
                .map(|b| (parts, b))
        })
        .expect("the body of a file that does not change reads to its end");
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    };
    let length = header(header::CONTENT_LENGTH).map(num);
    match parts.status {
        StatusCode::OK => {
            let len = length.expect("200 has Content-Length");
            if head {
                assert!(body.is_empty());
                assert!(
                    f.files.iter().any(|d| d.len() as u64 == len),
                    "HEAD length {len} is no served file's"
                );
            } else {
                assert_eq!(body.len() as u64, len);
                assert!(
                    f.files.iter().any(|d| d[..] == body[..]),
                    "200 body is none of the served files"
                );
            }
        }
        StatusCode::PARTIAL_CONTENT => {
            let cr = header(header::CONTENT_RANGE).expect("206 has Content-Range");
            let (range, total) = cr
                .strip_prefix("bytes ")
                .and_then(|r| r.split_once('/'))
                .expect("Content-Range form");
            let (a, b) = range.split_once('-').expect("Content-Range a-b");
            let (a, b, total) = (num(a), num(b), num(total));
            assert!(a <= b && b < total, "Content-Range {cr} outside the file");
            assert_eq!(
                length,
                Some(b - a + 1),
                "Content-Length disagrees with {cr}"
            );
            if head {
                assert!(body.is_empty());
            } else {
                assert_eq!(body.len() as u64, b - a + 1);
                let (a, b) = (a as usize, b as usize);
                assert!(
                    f.files
                        .iter()
                        .any(|d| d.len() as u64 == total && d[a..=b] == body[..]),
                    "206 body is not bytes {cr} of a served file"
                );
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let cr = header(header::CONTENT_RANGE).expect("416 has Content-Range");
            let total = num(cr.strip_prefix("bytes */").expect("416 Content-Range form"));
            assert!(f.files.iter().any(|d| d.len() as u64 == total));
            assert!(body.is_empty());
        }
        StatusCode::NOT_MODIFIED | StatusCode::NOT_FOUND => assert!(body.is_empty()),
        // An open error the directory produced (a name too long for the file system): no body.
        StatusCode::INTERNAL_SERVER_ERROR => assert!(body.is_empty()),
        other => panic!("unexpected status {other}"),
    }
});
