//! What a file name means: an iPXE binary (optionally behind a MAC directory, as upstream's
//! DHCP hands out `tftp://<ip>/<mac>/<binary>`), or a file under the asset directory.
//!
//! The iPXE binaries are read into memory once at start ([`IpxeBinaries`]), so the hot path
//! of a PXE storm never touches the disk; TFTP and HTTP share the same catalogue type. Asset
//! files are opened per request with `openat2(RESOLVE_BENEATH)`, so the kernel itself refuses
//! every path that would leave the directory — `..`, absolute symlinks, symlinks pointing
//! outside — with no check-then-open race. (Their bytes are then shared by concurrent
//! transfers of the same file version: `cache`.)

use std::collections::BTreeMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;
use tinkerbell_model::MacAddr;

/// Debian's `ipxe` package puts its binaries here.
pub const DEBIAN_IPXE_DIR: &str = "/usr/lib/ipxe";

/// File name endings that are iPXE binaries (everything else in the directory is ignored,
/// e.g. Debian's NIC `.rom`s).
const BINARY_SUFFIXES: &[&str] = &[
    ".kpxe", ".kkpxe", ".pxe", ".efi", ".iso", ".img", ".lkrn", ".usb",
];

/// Upstream names that Debian's package does not ship, served from the closest Debian file.
/// Upstream's `snp-x86_64.efi` is an SNP build; Debian's `snponly.efi` is its SNP-only sibling
/// (drives the boot NIC through UEFI SNP), the right stand-in.
const ALIASES: &[(&str, &str)] = &[("snp-x86_64.efi", "snponly.efi")];

/// The largest binary loaded (iPXE images are well under 2 MiB).
const MAX_BINARY: u64 = 32 << 20;

/// The iPXE binaries, by file name, in memory.
#[derive(Debug, Clone, Default)]
pub struct IpxeBinaries {
    files: BTreeMap<String, Bytes>,
}

/// A binaries directory that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    /// The directory could not be listed.
    #[error("cannot read iPXE binaries directory {dir}")]
    ReadDir {
        /// Directory.
        dir: PathBuf,
        /// Error.
        #[source]
        source: io::Error,
    },
    /// A binary could not be read.
    #[error("cannot read iPXE binary {path}")]
    Read {
        /// File.
        path: PathBuf,
        /// Error.
        #[source]
        source: io::Error,
    },
    /// The directory holds no iPXE binary at all.
    #[error(
        "no iPXE binaries (*.kpxe, *.efi, ...) in {0} (install Debian's ipxe package or configure another directory)"
    )]
    Empty(PathBuf),
}

impl IpxeBinaries {
    /// Load every iPXE binary directly in `dir` (symlinks followed, as Debian's `ipxe.efi` is
    /// one), plus the upstream aliases.
    pub fn load(dir: &Path) -> Result<IpxeBinaries, BinariesError> {
        let rd = std::fs::read_dir(dir).map_err(|source| BinariesError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let mut files = BTreeMap::new();
        for entry in rd {
            let entry = entry.map_err(|source| BinariesError::ReadDir {
                dir: dir.to_path_buf(),
                source,
            })?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !BINARY_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                continue;
            }
            let path = entry.path();
            // Follows symlinks; a dangling one is skipped.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() || meta.len() > MAX_BINARY {
                continue;
            }
            let data = std::fs::read(&path).map_err(|source| BinariesError::Read {
                path: path.clone(),
                source,
            })?;
            files.insert(name, Bytes::from(data));
        }
        if files.is_empty() {
            return Err(BinariesError::Empty(dir.to_path_buf()));
        }
        for (alias, target) in ALIASES {
            if !files.contains_key(*alias)
                && let Some(d) = files.get(*target).cloned()
            {
                files.insert((*alias).to_string(), d);
            }
        }
        Ok(IpxeBinaries { files })
    }

    /// Binaries given directly (tests).
    pub fn from_files(files: impl IntoIterator<Item = (String, Bytes)>) -> IpxeBinaries {
        IpxeBinaries {
            files: files.into_iter().collect(),
        }
    }

    /// The binary called `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.files.get(name)
    }

    /// Every name served.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }
}

/// A request path after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// An iPXE binary (by name), with the MAC directory it was asked under, if any.
    Binary {
        /// Binary name.
        name: String,
        /// The MAC of `<mac>/<binary>`.
        mac: Option<String>,
    },
    /// A path relative to the asset directory (no `..`, no leading `/`).
    Asset(String),
}

/// Why a file name is refused before any file is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `..` component: never followed, whatever it would resolve to.
    #[error("path leaves the root")]
    Traversal,
    /// Nothing left after normalisation.
    #[error("empty path")]
    Empty,
}

/// Normalise a requested name: backslashes (Windows PXE clients) become slashes, a leading
/// `/` is relative to the root, empty and `.` components vanish, `..` is refused.
pub fn resolve(requested: &str, binaries: &IpxeBinaries) -> Result<Resolved, PathError> {
    let mut parts = Vec::new();
    for part in requested.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(PathError::Traversal),
            p => parts.push(p),
        }
    }
    match parts.as_slice() {
        [] => Err(PathError::Empty),
        [name] if binaries.get(name).is_some() => Ok(Resolved::Binary {
            name: (*name).to_string(),
            mac: None,
        }),
        [mac, name] if binaries.get(name).is_some() && MacAddr::parse_any(mac).is_some() => {
            Ok(Resolved::Binary {
                name: (*name).to_string(),
                mac: MacAddr::parse_any(mac).map(|m| m.to_string()),
            })
        }
        _ => Ok(Resolved::Asset(parts.join("/"))),
    }
}

/// Why an asset could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No such file (or not a regular file).
    #[error("file not found")]
    NotFound,
    /// The path resolves outside the root (a symlink escape) or is not readable.
    #[error("access violation")]
    Denied,
    /// Anything else.
    #[error("cannot open file")]
    Io(#[source] io::Error),
}

/// A directory that files are served from, confined by the kernel.
#[derive(Debug)]
pub struct AssetRoot {
    dir: OwnedFd,
    path: PathBuf,
}

impl AssetRoot {
    /// Open `path` (must be a directory).
    pub fn open(path: &Path) -> io::Result<AssetRoot> {
        let dir = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)?;
        Ok(AssetRoot {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open `rel` beneath the root: symlinks may be followed only while they stay inside.
    /// Returns the file and its `fstat`. Blocking (one `openat2` and one `fstat`).
    pub fn open_file(&self, rel: &str) -> Result<(File, Metadata), OpenError> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = openat2(&self.dir, rel, how).map_err(|e| match e {
            Errno::ENOENT | Errno::ENOTDIR => OpenError::NotFound,
            Errno::EXDEV | Errno::ELOOP | Errno::EACCES | Errno::EPERM => OpenError::Denied,
            e => OpenError::Io(e.into()),
        })?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(OpenError::Io)?;
        if !meta.is_file() {
            return Err(OpenError::NotFound);
        }
        Ok((file, meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths() {
        let b = IpxeBinaries::from_files([
            ("undionly.kpxe".to_string(), Bytes::from_static(b"x")),
            ("ipxe.efi".to_string(), Bytes::from_static(b"y")),
        ]);
        let bin = |n: &str, m: Option<&str>| Resolved::Binary {
            name: n.into(),
            mac: m.map(Into::into),
        };
        let cases: &[(&str, Result<Resolved, PathError>)] = &[
            ("undionly.kpxe", Ok(bin("undionly.kpxe", None))),
            ("/undionly.kpxe", Ok(bin("undionly.kpxe", None))),
            (
                "52:54:00:12:34:56/ipxe.efi",
                Ok(bin("ipxe.efi", Some("52:54:00:12:34:56"))),
            ),
            (
                "/52-54-00-12-34-56/ipxe.efi",
                Ok(bin("ipxe.efi", Some("52:54:00:12:34:56"))),
            ),
            (
                "notamac/ipxe.efi",
                Ok(Resolved::Asset("notamac/ipxe.efi".into())),
            ),
            (
                "pxelinux.cfg\\default",
                Ok(Resolved::Asset("pxelinux.cfg/default".into())),
            ),
            ("./a//b/", Ok(Resolved::Asset("a/b".into()))),
            ("../etc/passwd", Err(PathError::Traversal)),
            ("a/../../etc/passwd", Err(PathError::Traversal)),
            ("..\\..\\boot.ini", Err(PathError::Traversal)),
            ("/", Err(PathError::Empty)),
        ];
        for (req, want) in cases {
            assert_eq!(&resolve(req, &b), want, "{req}");
        }
    }

    #[test]
    fn asset_root_confines_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/file"), b"hello").unwrap();
        std::os::unix::fs::symlink("sub/file", root.path().join("inside-link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("abs-link"))
            .unwrap();
        std::os::unix::fs::symlink("../../../../../../etc/passwd", root.path().join("rel-link"))
            .unwrap();
        let r = AssetRoot::open(root.path()).unwrap();
        assert_eq!(r.open_file("sub/file").unwrap().1.len(), 5);
        assert_eq!(r.open_file("inside-link").unwrap().1.len(), 5);
        assert!(matches!(r.open_file("abs-link"), Err(OpenError::Denied)));
        assert!(matches!(r.open_file("rel-link"), Err(OpenError::Denied)));
        assert!(matches!(r.open_file("/etc/passwd"), Err(OpenError::Denied)));
        assert!(matches!(r.open_file("missing"), Err(OpenError::NotFound)));
        assert!(matches!(r.open_file("sub"), Err(OpenError::NotFound)));
    }
}
