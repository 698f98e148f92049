//! systemd units from their files, as systemd itself finds them, and their live state from
//! `systemctl` when systemd runs this system.
//!
//! Unit files are looked up in [`UNIT_DIRS`] in order; the first file of a name wins (a file in
//! /etc shadows the vendor's in /lib). Drop-ins (`<dir>/<name>.d/*.conf`, the first of a file name
//! wins, applied in file name order) are merged over the unit, since a drop-in is how a
//! legitimate service is hijacked.
//!
//! Enabled state, from the files alone:
//! - `masked`: the first file found is a symlink to /dev/null (or empty);
//! - `alias`: the first file found is a symlink to a unit file of another name;
//! - `enabled`: an entry of that name (or an instance of a template) is in a `*.wants/`,
//!   `*.requires/` or `*.upholds/` directory of /etc/systemd/system;
//! - `static`: no `[Install]` section with WantedBy/RequiredBy/UpheldBy/Alias/Also;
//! - `disabled`: anything else.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{FileFacts, Scan, show};

/// Where system units live, in systemd's order of precedence.
pub const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// The directory whose `*.wants/` links enable units.
const ENABLE_DIR: &str = "/etc/systemd/system";

/// How long one `systemctl show` may take.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(15);
/// Units per `systemctl show` call, to keep the command line short.
const SYSTEMCTL_BATCH: usize = 200;

/// The parsed directives of a unit file and its drop-ins, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFile {
    directives: Vec<(String, String, String)>,
}

impl UnitFile {
    /// Parses unit file text: `[Section]`, `Key=Value`, `#`/`;` comments, `\` line continuation.
    /// Anything else is ignored, as systemd ignores it (with a warning in its log).
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        let mut section = String::new();
        let mut pending = String::new();
        for raw in text.lines() {
            let line = raw.trim();
            if pending.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            if let Some(cont) = line.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            let line = if pending.is_empty() {
                line.to_owned()
            } else if line.starts_with('#') || line.starts_with(';') {
                // A comment inside a continuation is skipped, the continuation goes on.
                continue;
            } else {
                let mut joined = std::mem::take(&mut pending);
                joined.push_str(line);
                joined
            };
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_owned();
                continue;
            }
            if let Some((k, v)) = line.split_once('=')
                && !section.is_empty()
            {
                out.directives
                    .push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        out
    }

    /// Appends a drop-in's directives: later ones override or extend earlier ones.
    pub fn merge(&mut self, other: UnitFile) {
        self.directives.extend(other.directives);
    }

    /// The last value of a single-valued directive; an empty value counts as unset.
    pub fn last(&self, section: &str, key: &str) -> Option<&str> {
        self.directives
            .iter()
            .rev()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The values of a list directive (ExecStart, WantedBy); an empty assignment resets it.
    pub fn list(&self, section: &str, key: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for (s, k, v) in &self.directives {
            if s == section && k == key {
                if v.is_empty() {
                    out.clear();
                } else {
                    out.push(v.as_str());
                }
            }
        }
        out
    }

    /// True when `[Install]` says how to enable the unit.
    pub fn installable(&self) -> bool {
        ["WantedBy", "RequiredBy", "UpheldBy", "Alias", "Also"]
            .iter()
            .any(|k| !self.list("Install", k).is_empty())
    }
}

/// How a unit is enabled, from its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enablement {
    Enabled,
    Disabled,
    Static,
    Masked,
    Alias,
}

impl Enablement {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::Static => "static",
            Self::Masked => "masked",
            Self::Alias => "alias",
        }
    }
}

/// One unit as found on disk.
#[derive(Debug, Clone)]
pub struct Unit {
    /// "evil.service".
    pub name: String,
    /// The file that won, as a system path.
    pub path: PathBuf,
    /// Where `path` points when it is a symlink (`systemctl link`, aliases, masks).
    pub link_target: Option<PathBuf>,
    pub state: Enablement,
    /// The unit this name is an alias of.
    pub alias_of: Option<String>,
    /// The unit's directives with its drop-ins merged; empty when masked or unreadable.
    pub config: UnitFile,
    pub drop_ins: Vec<PathBuf>,
    /// Of the file `path` leads to.
    pub facts: Option<FileFacts>,
}

impl Unit {
    pub fn description(&self) -> Option<&str> {
        self.config.last("Unit", "Description")
    }
}

/// The names pulled in by `*.wants/`, `*.requires/` and `*.upholds/` directories of /etc.
#[derive(Debug, Default)]
pub struct Wants(HashSet<String>);

impl Wants {
    pub fn load(scan: &mut Scan) -> Self {
        let mut names = HashSet::new();
        for dir in scan.list(Path::new(ENABLE_DIR)) {
            let is_link_dir = dir
                .extension()
                .and_then(OsStr::to_str)
                .is_some_and(|e| matches!(e, "wants" | "requires" | "upholds"));
            if !is_link_dir || scan.stopped() {
                continue;
            }
            for link in scan.list(&dir) {
                if let Some(n) = link.file_name().and_then(OsStr::to_str) {
                    names.insert(n.to_owned());
                }
            }
        }
        Self(names)
    }

    /// Whether `unit` (or, for a template `x@.service`, any instance `x@i.service`) is pulled in.
    pub fn contains(&self, unit: &str) -> bool {
        if self.0.contains(unit) {
            return true;
        }
        match unit.split_once("@.") {
            Some((prefix, suffix)) => self.0.iter().any(|n| {
                n.strip_prefix(prefix)
                    .and_then(|r| r.strip_prefix('@'))
                    .is_some_and(|r| r.ends_with(&format!(".{suffix}")))
            }),
            None => false,
        }
    }
}

/// Every unit whose name ends in `suffix` (".service", ".timer"), sorted by name.
pub fn discover(scan: &mut Scan, wants: &Wants, suffix: &str) -> Vec<Unit> {
    // The winning file of each name, and each directory's names for the drop-in lookup.
    let mut winners: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut listings: Vec<(PathBuf, HashSet<String>)> = Vec::new();
    let mut seen_dirs = HashSet::new();
    for dir in UNIT_DIRS {
        let dir = Path::new(dir);
        // With merged /usr, /lib and /usr/lib are one directory: read it once.
        if let Ok(real) = scan.root.resolve(dir)
            && !seen_dirs.insert(real)
        {
            continue;
        }
        let mut names = HashSet::new();
        for path in scan.list(dir) {
            let Some(name) = path.file_name().and_then(OsStr::to_str) else {
                continue;
            };
            names.insert(name.to_owned());
            if name.ends_with(suffix) && name.len() > suffix.len() {
                winners.entry(name.to_owned()).or_insert(path);
            }
        }
        listings.push((dir.to_owned(), names));
    }
    let mut units = Vec::with_capacity(winners.len());
    for (name, path) in winners {
        if scan.stopped() {
            break;
        }
        units.push(load_unit(scan, wants, &listings, name, path));
    }
    units
}

fn load_unit(
    scan: &mut Scan,
    wants: &Wants,
    listings: &[(PathBuf, HashSet<String>)],
    name: String,
    path: PathBuf,
) -> Unit {
    let link_target = scan
        .root
        .symlink_metadata(&path)
        .ok()
        .filter(|m| m.file_type().is_symlink())
        .and_then(|_| scan.root.read_link(&path).ok());
    let resolved_to_null = link_target.as_deref() == Some(Path::new("/dev/null"))
        || scan
            .root
            .resolve(&path)
            .is_ok_and(|p| p == scan.root.host(Path::new("/dev/null")));
    let alias_of = link_target
        .as_ref()
        .and_then(|t| t.file_name())
        .and_then(OsStr::to_str)
        .filter(|t| *t != name && !resolved_to_null)
        .map(str::to_owned);
    let mut unit = Unit {
        name,
        path,
        link_target,
        state: Enablement::Disabled,
        alias_of,
        config: UnitFile::default(),
        drop_ins: Vec::new(),
        facts: None,
    };
    if resolved_to_null {
        unit.state = Enablement::Masked;
        return unit;
    }
    unit.facts = scan.facts(&unit.path);
    let Some(text) = scan.read_text(&unit.path) else {
        // Unreadable (recorded) or a dangling link: the name still says something is there.
        unit.state = if wants.contains(&unit.name) {
            Enablement::Enabled
        } else {
            Enablement::Disabled
        };
        return unit;
    };
    if text.trim().is_empty() {
        unit.state = Enablement::Masked;
        return unit;
    }
    unit.config = UnitFile::parse(&text);
    unit.state = if unit.alias_of.is_some() {
        Enablement::Alias
    } else if wants.contains(&unit.name) {
        Enablement::Enabled
    } else if !unit.config.installable() {
        Enablement::Static
    } else {
        Enablement::Disabled
    };
    // Drop-ins: the first file of a name wins; all apply in file name order.
    let dropin_dir = format!("{}.d", unit.name);
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (dir, names) in listings {
        if !names.contains(&dropin_dir) {
            continue;
        }
        for conf in scan.list_files(&dir.join(&dropin_dir)) {
            if let Some(n) = conf.file_name().and_then(OsStr::to_str)
                && n.ends_with(".conf")
            {
                by_name.entry(n.to_owned()).or_insert(conf);
            }
        }
    }
    for conf in by_name.into_values() {
        if let Some(text) = scan.read_text(&conf) {
            unit.config.merge(UnitFile::parse(&text));
        }
        unit.drop_ins.push(conf);
    }
    unit
}

/// Whether live state may be asked of systemd: `Ok` when it runs this system, else why not, in
/// the words the result shows.
pub fn live_status(scan: &Scan) -> Result<(), String> {
    if !scan.root.is_live() {
        return Err(format!(
            "not queried: system_root is {}, not this running system; live state unavailable",
            show(scan.root.base())
        ));
    }
    // systemd's own test (sd_booted): this directory exists only while systemd is PID 1.
    if scan
        .root
        .metadata(Path::new("/run/systemd/system"))
        .is_ok_and(|m| m.is_dir())
    {
        return Ok(());
    }
    let pid1 = match std::fs::read_to_string(scan.root.host(Path::new("/proc/1/comm"))) {
        Ok(comm) => comm.trim().to_owned(),
        Err(e) => format!("unknown: /proc/1/comm unreadable, {}", super::io_reason(&e)),
    };
    Err(format!(
        "not running (PID 1 is {pid1}); live state unavailable"
    ))
}

/// `systemctl show` of `props` for each unit, in the order given; every map holds what
/// systemctl printed for that unit.
pub fn systemctl_show(
    scan: &Scan,
    units: &[&str],
    props: &[&str],
    extra_args: &[&str],
) -> Result<Vec<HashMap<String, String>>, String> {
    let mut out = Vec::with_capacity(units.len());
    for batch in units.chunks(SYSTEMCTL_BATCH) {
        let mut cmd = Command::new("systemctl");
        cmd.arg("show")
            .arg("--no-pager")
            .arg(format!("--property={}", props.join(",")))
            .args(extra_args)
            .arg("--")
            .args(batch)
            .env("LC_ALL", "C")
            .env("SYSTEMD_PAGER", "")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let text = run_bounded(cmd, scan)?;
        let blocks = parse_show(&text);
        if blocks.len() != batch.len() {
            return Err(format!(
                "systemctl show printed {} units for {} asked",
                blocks.len(),
                batch.len()
            ));
        }
        out.extend(blocks);
    }
    Ok(out)
}

/// Runs `cmd` to completion within [`SYSTEMCTL_TIMEOUT`] (killed after), returning its stdout.
fn run_bounded(mut cmd: Command, scan: &Scan) -> Result<String, String> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run systemctl: {}", super::io_reason(&e)))?;
    // Drained on threads so a full pipe can never block the child.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(16 * 1024 * 1024).read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + SYSTEMCTL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline && !scan.stopped() => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "systemctl did not answer within {} s",
                    SYSTEMCTL_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for systemctl: {e}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "systemctl show failed ({status}): {}",
            String::from_utf8_lossy(&stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Splits `systemctl show` output of several units: `Key=Value` lines, units separated by a
/// blank line.
pub fn parse_show(text: &str) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    let mut cur = HashMap::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.is_empty() {
            if in_block {
                out.push(std::mem::take(&mut cur));
                in_block = false;
            }
            continue;
        }
        in_block = true;
        if let Some((k, v)) = line.split_once('=') {
            cur.insert(k.to_owned(), v.to_owned());
        }
    }
    if in_block {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests;
