//! The HookOS artifacts the appliance serves under `/hookos/`: their names, the `SHA256SUMS`
//! file that travels with them (hookos/build.sh writes it, `tinkerbell hookos fetch` checks
//! downloads against it), and the check `serve` runs at start and on every `/healthz`.
//!
//! A directory is *ready* when the kernel and initramfs are there and, when it has a
//! `SHA256SUMS`, every file it lists matches. Without a `SHA256SUMS` (a directory filled by
//! hand) the files are taken as they are. The check reads each file once per change: its
//! verdict is kept until a file's size or modification time changes.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// The kernel iPXE loads (upstream HookOS's name).
pub const KERNEL: &str = "vmlinuz-x86_64";
/// The initramfs iPXE loads (upstream HookOS's name).
pub const INITRD: &str = "initramfs-x86_64";
/// What a netboot needs.
pub const REQUIRED: [&str; 2] = [KERNEL, INITRD];
/// The checksums file, in `sha256sum` format.
pub const SUMS: &str = "SHA256SUMS";
/// The most a `SHA256SUMS` may hold: it lists a handful of files.
const MAX_SUMS_BYTES: u64 = 64 * 1024;

/// What is wrong with a HookOS directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Files a netboot needs are not there.
    #[error(
        "HookOS is missing in {dir}: no {files} (machines that netboot would find no OS); put it there with `tinkerbell hookos fetch --url URL` or `tinkerbell hookos build`, or name another directory with --hookos-dir",
        dir = .dir.display(), files = .files.join(", ")
    )]
    Missing { dir: PathBuf, files: Vec<String> },
    /// A file does not match its line in `SHA256SUMS`.
    #[error(
        "HookOS in {dir} is corrupt: {file} has sha256 {actual}, SHA256SUMS says {expected}; fetch or build it again",
        dir = .dir.display()
    )]
    Corrupt {
        dir: PathBuf,
        file: String,
        expected: String,
        actual: String,
    },
    /// `SHA256SUMS` cannot be used.
    #[error("HookOS in {dir}: {why}", dir = .dir.display())]
    Unusable { dir: PathBuf, why: String },
}

/// One line of a `SHA256SUMS`: a file name (no directories) and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sum {
    pub file: String,
    pub sha256: [u8; 32],
}

/// Parse `sha256sum` output: `<64 hex> <space><space or *><name>` per line. Names are plain
/// file names (no `/`, not `.` or `..`): the list says what goes into one directory. Errors
/// name the line.
pub fn parse_sums(text: &str) -> Result<Vec<Sum>, String> {
    let mut sums: Vec<Sum> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let bad = |why: &str| format!("{SUMS} line {line_no}: {why}");
        let (hex_part, rest) = line
            .split_once(' ')
            .ok_or_else(|| bad("expected `<sha256> <file>`"))?;
        let file = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('*'))
            .ok_or_else(|| bad("expected two spaces (or ` *`) between digest and file"))?;
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut sha256)
            .map_err(|_| bad("the digest is not 64 hex digits"))?;
        if file.is_empty() || file.contains(['/', '\\', '\0']) || file == "." || file == ".." {
            return Err(bad(&format!("{file:?} is not a plain file name")));
        }
        if sums.iter().any(|s| s.file == file) {
            return Err(bad(&format!("{file} is listed twice")));
        }
        sums.push(Sum {
            file: file.to_string(),
            sha256,
        });
    }
    if sums.is_empty() {
        return Err(format!("{SUMS} lists no files"));
    }
    Ok(sums)
}

/// The sha256 of the file at `path`, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

/// Read `dir/SHA256SUMS`, `None` when there is none.
pub fn read_sums(dir: &Path) -> Result<Option<Vec<Sum>>, Problem> {
    let unusable = |why: String| Problem::Unusable {
        dir: dir.to_path_buf(),
        why,
    };
    let path = dir.join(SUMS);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unusable(format!("cannot read {SUMS}: {e}"))),
    };
    let mut text = String::new();
    f.take(MAX_SUMS_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| unusable(format!("cannot read {SUMS}: {e}")))?;
    if text.len() as u64 > MAX_SUMS_BYTES {
        return Err(unusable(format!(
            "{SUMS} is larger than {MAX_SUMS_BYTES} bytes"
        )));
    }
    parse_sums(&text).map(Some).map_err(unusable)
}

/// A ready directory: how many files `SHA256SUMS` vouched for (0 without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub verified: usize,
}

/// Check `dir` now (reads every listed file).
pub fn check(dir: &Path) -> Result<Ready, Problem> {
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|f| !dir.join(f).is_file())
        .map(|f| f.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Problem::Missing {
            dir: dir.to_path_buf(),
            files: missing,
        });
    }
    let Some(sums) = read_sums(dir)? else {
        return Ok(Ready { verified: 0 });
    };
    for sum in &sums {
        let actual = match sha256_file(&dir.join(&sum.file)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Problem::Missing {
                    dir: dir.to_path_buf(),
                    files: vec![sum.file.clone()],
                });
            }
            Err(e) => {
                return Err(Problem::Unusable {
                    dir: dir.to_path_buf(),
                    why: format!("cannot read {}: {e}", sum.file),
                });
            }
        };
        if actual != sum.sha256 {
            return Err(Problem::Corrupt {
                dir: dir.to_path_buf(),
                file: sum.file.clone(),
                expected: hex::encode(sum.sha256),
                actual: hex::encode(actual),
            });
        }
    }
    Ok(Ready {
        verified: sums.len(),
    })
}

/// What a file looked like when it was checked.
type Stamp = Option<(u64, SystemTime)>;
/// The files as they were at the last check, and its verdict.
type Checked = (Vec<Stamp>, Result<Ready, Problem>);

/// [`check`] with its verdict kept until a file in the directory changes (size or mtime of
/// the required files, `SHA256SUMS` and what it lists): `/healthz` asks on every probe.
pub struct Watch {
    dir: PathBuf,
    last: Mutex<Option<Checked>>,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").field("dir", &self.dir).finish()
    }
}

impl Watch {
    pub fn new(dir: PathBuf) -> Self {
        Watch {
            dir,
            last: Mutex::new(None),
        }
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn stamps(&self) -> Vec<Stamp> {
        let mut names: Vec<String> = REQUIRED.iter().map(|s| s.to_string()).collect();
        names.push(SUMS.into());
        if let Ok(Some(sums)) = read_sums(&self.dir) {
            names.extend(sums.into_iter().map(|s| s.file));
        }
        names
            .iter()
            .map(|n| {
                let m = std::fs::metadata(self.dir.join(n)).ok()?;
                Some((m.len(), m.modified().ok()?))
            })
            .collect()
    }

    /// The directory's state, checked again when a file changed since the last call.
    pub fn status(&self) -> Result<Ready, Problem> {
        let stamps = self.stamps();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, verdict)) = last.as_ref()
            && *seen == stamps
        {
            return verdict.clone();
        }
        let verdict = check(&self.dir);
        *last = Some((stamps, verdict.clone()));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn sums_parse_as_sha256sum_writes_them() {
        let sums = parse_sums(&format!("{D}  vmlinuz-x86_64\n{D} *initramfs-x86_64\n\n")).unwrap();
        assert_eq!(sums.len(), 2);
        assert_eq!(sums[1].file, "initramfs-x86_64");
        assert_eq!(hex::encode(sums[0].sha256), D);
    }

    #[test]
    fn bad_sums_name_the_line() {
        for (text, want) in [
            (
                format!("{D}  a\nxyz  b\n"),
                "line 2: the digest is not 64 hex digits",
            ),
            (
                format!("{D}  ../etc/passwd\n"),
                "line 1: \"../etc/passwd\" is not a plain file name",
            ),
            (format!("{D}  a\n{D}  a\n"), "line 2: a is listed twice"),
            (format!("{D}\n"), "line 1: expected `<sha256> <file>`"),
            (format!("{D} a\n"), "line 1: expected two spaces"),
            ("\n".to_string(), "lists no files"),
        ] {
            let err = parse_sums(&text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn check_finds_missing_and_corrupt_files_and_sees_them_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let w = Watch::new(dir.path().to_path_buf());
        match w.status() {
            Err(Problem::Missing { files, .. }) => assert_eq!(files, REQUIRED),
            other => panic!("{other:?}"),
        }
        std::fs::write(dir.path().join(KERNEL), b"k").unwrap();
        std::fs::write(dir.path().join(INITRD), b"i").unwrap();
        assert_eq!(w.status(), Ok(Ready { verified: 0 }));
        let sum = |b: &[u8]| hex::encode(Sha256::digest(b));
        std::fs::write(
            dir.path().join(SUMS),
            format!("{}  {KERNEL}\n{}  {INITRD}\n", sum(b"k"), sum(b"j")),
        )
        .unwrap();
        match w.status() {
            Err(Problem::Corrupt { file, actual, .. }) => {
                assert_eq!((file.as_str(), actual), (INITRD, sum(b"i")));
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(dir.path().join(INITRD), b"j").unwrap();
        assert_eq!(w.status(), Ok(Ready { verified: 2 }));
    }
}
