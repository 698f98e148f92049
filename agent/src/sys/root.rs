//! The system root a collector reads: "/" on a live device, or any directory holding a system's
//! tree (a mounted disk image, a test fixture). Paths go in and come out as the system sees them
//! ("/etc/crontab"); only this module knows where they live on the host.
//!
//! Under a root other than "/", symlinks are followed as a chroot would: an absolute target such as
//! `/lib/systemd/system/x.service` or `/dev/null` is taken inside the root, and `..` never climbs
//! out of it. Under "/" the kernel resolves paths itself.
//!
//! Accounts (name, uid, home) come from the root's own `/etc/passwd`, never the host's.

use std::ffi::OsString;
use std::fs::Metadata;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::hash::{self, OpenRefused};
use super::users::Names;

/// How many symlinks one lookup may follow before it is called a loop (Linux's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// Where a system's files are; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemRoot {
    base: PathBuf,
}

impl Default for SystemRoot {
    fn default() -> Self {
        Self::live()
    }
}

/// One account of the root's `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The home directory as the system sees it (may be "/" or "/nonexistent").
    pub home: PathBuf,
    pub shell: String,
}

impl SystemRoot {
    /// The running system.
    pub fn live() -> Self {
        Self {
            base: PathBuf::from("/"),
        }
    }

    /// A system tree under `base` (an absolute directory; a relative one is taken as is).
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// True when this is the running system ("/"): only then may live state (systemctl, /proc of
    /// this host) be mixed with what the files say.
    pub fn is_live(&self) -> bool {
        self.base == Path::new("/")
    }

    /// The host path of a system path, joined lexically (no symlink is followed).
    pub fn host(&self, sys: &Path) -> PathBuf {
        let mut out = self.base.clone();
        for c in sys.components() {
            match c {
                Component::Normal(p) => out.push(p),
                Component::ParentDir => {
                    if out != self.base {
                        out.pop();
                    }
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        out
    }

    /// The host path of a system path with every symlink followed inside the root. A component
    /// that does not exist ends resolution there (later reads then fail with "not found").
    pub fn resolve(&self, sys: &Path) -> io::Result<PathBuf> {
        if self.is_live() {
            return Ok(self.host(sys));
        }
        self.resolve_in_root(sys, true)
    }

    /// Like [`Self::resolve`] but the last component is not followed: what `lstat` and
    /// `readlink` need.
    pub fn resolve_parent(&self, sys: &Path) -> io::Result<PathBuf> {
        if self.is_live() {
            return Ok(self.host(sys));
        }
        self.resolve_in_root(sys, false)
    }

    fn resolve_in_root(&self, sys: &Path, follow_last: bool) -> io::Result<PathBuf> {
        // `done` is the resolved part below the base; `todo` what is left, first component last.
        let mut done: Vec<OsString> = Vec::new();
        let mut todo: Vec<OsString> = normal_components(sys).into_iter().rev().collect();
        let mut links = 0;
        // Once a component is missing nothing below it exists: the rest is joined lexically.
        let mut missing = false;
        while let Some(part) = todo.pop() {
            if part == ".." {
                done.pop();
                continue;
            }
            if missing || (todo.is_empty() && !follow_last) {
                done.push(part);
                continue;
            }
            let candidate = self.join_parts(&done).join(&part);
            match std::fs::symlink_metadata(&candidate) {
                Ok(md) if md.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::other(
                            "too many levels of symbolic links inside the system root",
                        ));
                    }
                    let target = std::fs::read_link(&candidate)?;
                    if target.is_absolute() {
                        done.clear();
                    }
                    todo.extend(normal_components(&target).into_iter().rev());
                }
                Ok(_) => done.push(part),
                Err(e) if is_missing(&e) => {
                    missing = true;
                    done.push(part);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.join_parts(&done))
    }

    fn join_parts(&self, parts: &[OsString]) -> PathBuf {
        let mut p = self.base.clone();
        p.extend(parts);
        p
    }

    /// `stat`: follows symlinks inside the root.
    pub fn metadata(&self, sys: &Path) -> io::Result<Metadata> {
        std::fs::metadata(self.resolve(sys)?)
    }

    /// `lstat`: the entry itself, even when it is a symlink.
    pub fn symlink_metadata(&self, sys: &Path) -> io::Result<Metadata> {
        std::fs::symlink_metadata(self.resolve_parent(sys)?)
    }

    /// The text of a symlink, as stored (an absolute target is a system path).
    pub fn read_link(&self, sys: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(self.resolve_parent(sys)?)
    }

    /// The names in a directory, sorted; at most `max` (the rest are counted in the second value).
    pub fn read_dir(&self, sys: &Path, max: usize) -> io::Result<(Vec<OsString>, usize)> {
        let mut names = Vec::new();
        let mut more = 0;
        for entry in std::fs::read_dir(self.resolve(sys)?)? {
            let entry = entry?;
            if names.len() < max {
                names.push(entry.file_name());
            } else {
                more += 1;
            }
        }
        names.sort();
        Ok((names, more))
    }

    /// The bytes of a regular file of at most `limit` bytes, opened so that a FIFO or device
    /// planted in its place cannot block or be triggered.
    pub fn read(&self, sys: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let host = self.resolve(sys)?;
        let md = std::fs::metadata(&host)?;
        if md.len() > limit {
            return Err(io::Error::other(format!(
                "{} bytes, more than the {limit} bytes read from a configuration file",
                md.len()
            )));
        }
        let file = hash::open_regular(&host, &md).map_err(|e| match e {
            OpenRefused::NotRegular(kind) => {
                io::Error::other(format!("it is a {kind}, not a regular file"))
            }
            OpenRefused::Changed => io::Error::other("it changed while being opened"),
            OpenRefused::Io(e) => e,
        })?;
        let mut bytes = Vec::new();
        file.take(limit + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(io::Error::other(format!(
                "it grew past the {limit} bytes read from a configuration file"
            )));
        }
        Ok(bytes)
    }

    /// [`Self::read`] as text; bytes that are not UTF-8 become replacement characters.
    pub fn read_text(&self, sys: &Path, limit: u64) -> io::Result<String> {
        self.read(sys, limit)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The accounts of the root's `/etc/passwd`; a missing file is an empty list.
    pub fn accounts(&self) -> io::Result<Vec<Account>> {
        match self.read_text(Path::new("/etc/passwd"), PASSWD_LIMIT) {
            Ok(text) => Ok(parse_passwd(&text)),
            Err(e) if is_missing(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// uid and gid names from the root's `/etc/passwd` and `/etc/group`.
    pub fn names(&self) -> Names {
        let read = |p: &str| {
            self.read_text(Path::new(p), PASSWD_LIMIT)
                .unwrap_or_default()
        };
        Names::parse(&read("/etc/passwd"), &read("/etc/group"))
    }
}

/// Large enough for any real passwd or group file.
const PASSWD_LIMIT: u64 = 64 * 1024 * 1024;

/// True for the errors that mean "there is nothing there", which collectors skip silently.
pub fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn normal_components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Parses passwd text (`name:x:uid:gid:gecos:home:shell`); malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<Account> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() {
                return None;
            }
            Some(Account {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: PathBuf::from(f[5]),
                shell: f[6].to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
