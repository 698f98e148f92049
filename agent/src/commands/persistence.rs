//! `persistence`: one list of everything on the system that makes code run again by itself or
//! lets someone back in.
//!
//! It reuses the collectors of `services` (enabled services), `scheduledtasks` (cron entries,
//! cron scripts, enabled timers) and `startupfolders` (enabled autostart entries, shell startup
//! files), and adds `/etc/rc.local`, `/etc/init.d/*`, every user's `~/.ssh/authorized_keys` and
//! `authorized_keys2` (plus an `AuthorizedKeysFile` set in `/etc/ssh/sshd_config` outside `Match`
//! blocks; one entry per key), `/etc/ld.so.preload` (one entry per library), udev rules that run
//! programs (`RUN`, `PROGRAM`, `IMPORT{program}` in `/etc/udev/rules.d`, `/run/udev/rules.d`,
//! `/lib/udev/rules.d`, `/usr/lib/udev/rules.d`; the first file of a name wins) and at jobs
//! (`/var/spool/cron/atjobs/*`, `/var/spool/at/*`).
//!
//! Output:
//! ```json
//! {"entries": [{"mechanism": "cron|systemd_service|systemd_timer|xdg_autostart|shell_startup|rc_local|init_d|authorized_keys|ld_so_preload|udev|at_job",
//!               "location": "/etc/cron.d/backup", "owner": "root" | null,
//!               "command": "/usr/local/bin/backup.sh", "modified": "2024-01-01T00:00:00Z" | null,
//!               "details": {...}}],
//!  "truncated": false, "errors": [{"path": "...", "reason": "..."}]}
//! ```
//! `owner` is the account the entry belongs to: a cron line's user, a user crontab's, an at job's
//! or a home's account, a unit's `User=` (root when unset); for other system files, the file's
//! owner. `details.file_owner` is always the owner of `location`. `command` is what runs: a cron
//! or unit command line, an autostart `Exec`, a script's path (shell startup files, init.d), the
//! commands of rc.local or an at job (lines joined by "; "), a preloaded library, a udev rule
//! line; for a key, its type, `SHA256:` fingerprint, comment and `[options: ...]`. `modified` is
//! the modification time of `location`. Other `details` by mechanism:
//! - cron: `line`, `schedule`, `next_run`, `kind` (`cron` or `cron_script`);
//! - systemd_service: `unit`, `description`, `drop_ins`, `link_target`;
//! - systemd_timer: `unit` (started), `schedule`;
//! - xdg_autostart: `name`, `scope`;
//! - shell_startup: `scope`, `size`, `sha256`;
//! - rc_local, init_d: `executable` (neither runs otherwise);
//! - authorized_keys: `line`, `key_type`, `fingerprint`, `comment`, `options`;
//! - ld_so_preload: `exists` (the library file is there);
//! - udev: `line`;
//! - at_job: `queue`, `job`, `run_at`.

mod atjob;
mod authkeys;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use ::commands::Invocation;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::linux::systemd::{self, Enablement, Wants};
use super::linux::{Capped, FileFacts, Scan, show};
use super::scheduledtasks::{self, Kind};
use super::{CommandContext, CommandResult, blocking, services, startupfolders};

/// A command shown in one entry is cut at this many characters (an rc.local can be long).
const MAX_COMMAND_CHARS: usize = 2_000;

const UDEV_DIRS: [&str; 4] = [
    "/etc/udev/rules.d",
    "/run/udev/rules.d",
    "/lib/udev/rules.d",
    "/usr/lib/udev/rules.d",
];

const AT_DIRS: [&str; 2] = ["/var/spool/cron/atjobs", "/var/spool/at"];

const DEFAULT_KEY_FILES: [&str; 2] = [".ssh/authorized_keys", ".ssh/authorized_keys2"];

pub async fn run(ctx: CommandContext, _args: Invocation) -> CommandResult {
    blocking(move || {
        let mut scan = Scan::new(&ctx);
        let entries = collect(&mut scan, Timestamp::now());
        let value = json!({
            "entries": entries.items.iter().map(Entry::to_json).collect::<Vec<_>>(),
            "truncated": entries.truncated,
            "errors": scan.errors(),
        });
        scan.finish(value).map(Into::into)
    })
    .await
}

/// One persistence entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub mechanism: &'static str,
    pub location: PathBuf,
    pub owner: Option<String>,
    pub command: String,
    pub modified: Option<String>,
    pub details: Value,
}

impl Entry {
    fn new(mechanism: &'static str, location: &Path, facts: Option<&FileFacts>) -> Self {
        Self::with_file(
            mechanism,
            location,
            facts.map(|f| f.owner.clone()),
            facts.and_then(|f| f.modified.clone()),
        )
    }

    fn with_file(
        mechanism: &'static str,
        location: &Path,
        file_owner: Option<String>,
        modified: Option<String>,
    ) -> Self {
        Self {
            mechanism,
            location: location.to_owned(),
            owner: file_owner.clone(),
            command: String::new(),
            modified,
            details: json!({ "file_owner": file_owner }),
        }
    }

    fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details[key] = value.into();
        self
    }

    fn command(mut self, command: impl Into<String>) -> Self {
        self.command = clip(command.into());
        self
    }

    fn owner(mut self, owner: Option<String>) -> Self {
        if owner.is_some() {
            self.owner = owner;
        }
        self
    }

    fn to_json(&self) -> Value {
        json!({
            "mechanism": self.mechanism,
            "location": show(&self.location),
            "owner": self.owner,
            "command": self.command,
            "modified": self.modified,
            "details": self.details,
        })
    }
}

/// Every mechanism, in the order of the module doc.
pub(crate) fn collect(scan: &mut Scan, now: Timestamp) -> Capped<Entry> {
    let mut out = Capped::default();
    let wants = Wants::load(scan);
    let services = systemd::discover(scan, &wants, ".service");
    let tasks = scheduledtasks::collect(scan, &wants, &services, now);

    for t in tasks.tasks.items.iter().filter(|t| t.kind != Kind::Timer) {
        out.push(
            Entry::with_file("cron", &t.source, t.owner.clone(), t.modified.clone())
                .owner(t.user.clone())
                .command(t.command.clone())
                .detail("line", t.line)
                .detail("schedule", t.schedule.clone())
                .detail("next_run", t.next_run.map(|n| n.to_string()))
                .detail(
                    "kind",
                    if t.kind == Kind::Cron {
                        "cron"
                    } else {
                        "cron_script"
                    },
                ),
        );
    }
    for u in services.iter().filter(|u| services::persists(u)) {
        out.push(
            Entry::new("systemd_service", &u.path, u.facts.as_ref())
                .owner(Some(run_as(u.config.last("Service", "User"))))
                .command(u.config.list("Service", "ExecStart").join("; "))
                .detail("unit", u.name.clone())
                .detail("description", u.description())
                .detail(
                    "drop_ins",
                    u.drop_ins.iter().map(|p| show(p)).collect::<Vec<_>>(),
                )
                .detail("link_target", u.link_target.as_deref().map(show)),
        );
    }
    for t in tasks
        .tasks
        .items
        .iter()
        .filter(|t| t.kind == Kind::Timer && t.enabled == Some(Enablement::Enabled))
    {
        let command = if t.command.is_empty() {
            format!("starts {}", t.unit.as_deref().unwrap_or("?"))
        } else {
            t.command.clone()
        };
        out.push(
            Entry::with_file(
                "systemd_timer",
                &t.source,
                t.owner.clone(),
                t.modified.clone(),
            )
            .owner(Some(run_as(t.user.as_deref())))
            .command(command)
            .detail("unit", t.unit.clone())
            .detail("schedule", t.schedule.clone()),
        );
    }
    if scan.stopped() {
        return out;
    }

    let startup = startupfolders::collect(scan);
    for a in startup.autostart.items.iter().filter(|a| a.enabled()) {
        out.push(
            Entry::new("xdg_autostart", &a.path, a.facts.as_ref())
                .owner(a.user.clone())
                .command(a.exec.clone().unwrap_or_default())
                .detail("name", a.name.clone())
                .detail("scope", if a.user.is_some() { "user" } else { "system" }),
        );
    }
    for f in &startup.shell.items {
        out.push(
            Entry::new("shell_startup", &f.path, Some(&f.facts))
                .owner(f.user.clone())
                .command(show(&f.path))
                .detail("scope", if f.user.is_some() { "user" } else { "system" })
                .detail("size", f.facts.size)
                .detail("sha256", f.sha256.clone()),
        );
    }

    rc_local(scan, &mut out);
    init_d(scan, &mut out);
    authorized_keys(scan, &mut out);
    ld_so_preload(scan, &mut out);
    udev(scan, &mut out);
    at_jobs(scan, &mut out);
    out
}

/// Who a unit runs as: its `User=`, root when unset.
fn run_as(user: Option<&str>) -> String {
    user.unwrap_or("root").to_owned()
}

fn rc_local(scan: &mut Scan, out: &mut Capped<Entry>) {
    let path = Path::new("/etc/rc.local");
    let Some(text) = scan.read_text(path) else {
        return;
    };
    let facts = scan.facts(path);
    let commands: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && *l != "exit 0")
        .collect();
    out.push(
        Entry::new("rc_local", path, facts.as_ref())
            .command(commands.join("; "))
            .detail("executable", facts.as_ref().map(FileFacts::executable)),
    );
}

fn init_d(scan: &mut Scan, out: &mut Capped<Entry>) {
    for path in scan.list_files(Path::new("/etc/init.d")) {
        if scan.stopped() {
            return;
        }
        let name = path.file_name().and_then(OsStr::to_str).unwrap_or("");
        // Debian's documentation and template, never run.
        if matches!(name, "README" | "skeleton") || name.starts_with('.') {
            continue;
        }
        let facts = scan.facts(&path);
        out.push(
            Entry::new("init_d", &path, facts.as_ref())
                .command(show(&path))
                .detail("executable", facts.as_ref().map(FileFacts::executable)),
        );
    }
}

fn authorized_keys(scan: &mut Scan, out: &mut Capped<Entry>) {
    let configured = configured_key_files(scan);
    // `homes()` leaves "/" out; a key file in "/.ssh" still lets the first account with that
    // home in.
    let accounts: Vec<(String, PathBuf)> = scan
        .homes()
        .into_iter()
        .chain(
            scan.accounts
                .iter()
                .filter(|a| a.home == Path::new("/"))
                .map(|a| (a.name.clone(), a.home.clone()))
                .take(1),
        )
        .collect();
    let mut seen = std::collections::HashSet::new();
    for (user, home) in accounts {
        let files = DEFAULT_KEY_FILES.iter().map(|f| home.join(f)).chain(
            configured
                .iter()
                .filter_map(|pattern| expand_key_file(pattern, &user, &home)),
        );
        for path in files.collect::<Vec<_>>() {
            if scan.stopped() {
                return;
            }
            if !seen.insert(path.clone()) {
                continue;
            }
            let Some(text) = scan.read_text(&path) else {
                continue;
            };
            let facts = scan.facts(&path);
            let (keys, bad) = authkeys::parse(&text);
            for line in bad {
                scan.error(
                    &path,
                    &format!("line {line}: not a key (options, key type, base64 key, comment)"),
                );
            }
            for k in keys {
                out.push(
                    Entry::new("authorized_keys", &path, facts.as_ref())
                        .owner(Some(user.clone()))
                        .command(k.summary())
                        .detail("line", k.line)
                        .detail("key_type", k.key_type)
                        .detail("fingerprint", k.fingerprint)
                        .detail("comment", k.comment)
                        .detail("options", k.options),
                );
            }
        }
    }
}

/// `AuthorizedKeysFile` patterns of sshd_config before any `Match` block (later ones apply only
/// to some connections; a first value wins in sshd, but every pattern is worth reading here).
fn configured_key_files(scan: &mut Scan) -> Vec<String> {
    let Some(text) = scan.read_text(Path::new("/etc/ssh/sshd_config")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        let Some(key) = words.next() else {
            continue;
        };
        if key.eq_ignore_ascii_case("Match") {
            break;
        }
        if key.eq_ignore_ascii_case("AuthorizedKeysFile") {
            out.extend(words.filter(|w| *w != "none").map(str::to_owned));
        }
    }
    out
}

/// `%h`, `%u`, `%%` expanded; a relative pattern is relative to the home.
fn expand_key_file(pattern: &str, user: &str, home: &Path) -> Option<PathBuf> {
    let mut s = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            s.push(c);
            continue;
        }
        match chars.next()? {
            'h' => s.push_str(&home.to_string_lossy()),
            'u' => s.push_str(user),
            '%' => s.push('%'),
            // %U (uid) and others: not worth guessing.
            _ => return None,
        }
    }
    let p = PathBuf::from(s);
    Some(if p.is_absolute() { p } else { home.join(p) })
}

fn ld_so_preload(scan: &mut Scan, out: &mut Capped<Entry>) {
    let path = Path::new("/etc/ld.so.preload");
    let Some(text) = scan.read_text(path) else {
        return;
    };
    let facts = scan.facts(path);
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        for lib in line
            .split(|c: char| c.is_whitespace() || c == ':')
            .filter(|l| !l.is_empty())
        {
            let exists = scan.root.metadata(Path::new(lib)).is_ok();
            out.push(
                Entry::new("ld_so_preload", path, facts.as_ref())
                    .command(lib)
                    .detail("exists", exists),
            );
        }
    }
}

fn udev(scan: &mut Scan, out: &mut Capped<Entry>) {
    let mut by_name = std::collections::BTreeMap::new();
    for dir in UDEV_DIRS {
        for path in scan.list_files(Path::new(dir)) {
            if let Some(n) = path.file_name().and_then(OsStr::to_str)
                && n.ends_with(".rules")
            {
                by_name.entry(n.to_owned()).or_insert(path);
            }
        }
    }
    for path in by_name.into_values() {
        if scan.stopped() {
            return;
        }
        let Some(text) = scan.read_text(&path) else {
            continue;
        };
        let facts = scan.facts(&path);
        for (line, rule) in udev_rules(&text) {
            if runs_program(&rule) {
                out.push(
                    Entry::new("udev", &path, facts.as_ref())
                        .command(rule)
                        .detail("line", line),
                );
            }
        }
    }
}

/// Rule lines with `\` continuations joined, with the number of their first line.
fn udev_rules(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let (first, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if acc.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                acc.push_str(part);
                pending = Some((first, acc));
            }
            None => {
                acc.push_str(line);
                out.push((first, acc));
            }
        }
    }
    out.extend(pending);
    out
}

/// True when a rule has a key that runs a program: RUN (any form), PROGRAM, IMPORT{program}.
fn runs_program(rule: &str) -> bool {
    rule.split(',').any(|part| {
        let key = part.trim().split(['=', '+', ':', '!']).next().unwrap_or("");
        key == "RUN" || key.starts_with("RUN{") || key == "PROGRAM" || key == "IMPORT{program}"
    })
}

fn at_jobs(scan: &mut Scan, out: &mut Capped<Entry>) {
    for dir in AT_DIRS {
        for path in scan.list_files(Path::new(dir)) {
            if scan.stopped() {
                return;
            }
            let name = path.file_name().and_then(OsStr::to_str).unwrap_or("");
            if name.starts_with('.') {
                continue;
            }
            let Some(text) = scan.read_text(&path) else {
                continue;
            };
            let facts = scan.facts(&path);
            let job = atjob::parse(&text);
            let decoded = atjob::parse_name(name);
            out.push(
                Entry::new("at_job", &path, facts.as_ref())
                    .owner(job.uid.map(|u| scan.names.user_or_number(u)))
                    .command(job.command)
                    .detail("queue", decoded.map(|d| d.0.to_string()))
                    .detail("job", decoded.map(|d| d.1))
                    .detail("run_at", decoded.map(|d| d.2.to_string())),
            );
        }
    }
}

fn clip(s: String) -> String {
    if s.chars().count() <= MAX_COMMAND_CHARS {
        s
    } else {
        let mut c: String = s.chars().take(MAX_COMMAND_CHARS).collect();
        c.push('…');
        c
    }
}

#[cfg(test)]
mod tests;
