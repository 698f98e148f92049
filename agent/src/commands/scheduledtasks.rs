//! `scheduledtasks`: cron entries, cron script directories and systemd timers, with their next run.
//!
//! Sources: `/etc/crontab` and `/etc/cron.d/*` (with a user field), user crontabs
//! `/var/spool/cron/crontabs/<user>` (Debian) and `/var/spool/cron/<user>` (RHEL), the scripts of
//! `/etc/cron.{hourly,daily,weekly,monthly}`, and `*.timer` units. Comments, blank lines and
//! assignments (`MAILTO=`) are skipped; a malformed cron line is reported in `errors` as
//! `"line N: why"` and the rest of its file is still read.
//!
//! `next_run` of a cron entry is computed from its schedule in the system time zone (from
//! `/etc/localtime`; UTC when there is none), or in `CRON_TZ` when the crontab sets one (see
//! [`super::linux::cronexpr`]); `@reboot` has none. Scripts of the cron directories run when the
//! `/etc/crontab` line or anacron job that calls `run-parts` on them runs, so theirs is null. A
//! timer's next run comes from systemd when it runs this system, else null: computing systemd's
//! calendar and monotonic rules is not attempted.
//!
//! Output:
//! ```json
//! {"timezone": "Europe/Berlin", "now": "2024-01-01T10:00:00Z",
//!  "systemd": "running" | "not running (PID 1 is init); live state unavailable" | "...",
//!  "tasks": [{"kind": "cron|cron_script|systemd_timer", "source": "/etc/cron.d/backup",
//!             "line": 2 | null, "user": "root" | null, "owner": "root" | null,
//!             "modified": "2024-01-01T00:00:00Z" | null, "schedule": "30 2 * * *",
//!             "command": "/usr/local/bin/backup.sh", "unit": "x.service" | null,
//!             "enabled": "enabled|disabled|static|masked|alias" | null,
//!             "next_run": "2024-01-02T01:30:00Z" | null, "note": "..." | null}],
//!  "truncated": false, "errors": [{"path": "/etc/cron.d/x", "reason": "line 3: ..."}]}
//! ```
//! `user` is the account the task runs as (cron's user field, the crontab's name, a timer's
//! service `User=`; null for root by default in units); `owner` is the owner of `source`. For a
//! timer, `schedule` lists its triggers (`OnCalendar=daily; OnBootSec=5min`), `unit` the unit it
//! starts and `command` that unit's ExecStart.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use ::commands::Invocation;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use super::linux::cron::{self, CronLine};
use super::linux::cronexpr::Schedule;
use super::linux::systemd::{self, Enablement, Unit, Wants};
use super::linux::{Capped, FileFacts, Scan, show};
use super::{CommandContext, CommandResult, blocking};

/// Time zone files are small; anything bigger is not one.
const TZIF_LIMIT: u64 = 1024 * 1024;

pub const CRON_DIRS: [(&str, &str); 4] = [
    ("/etc/cron.hourly", "hourly"),
    ("/etc/cron.daily", "daily"),
    ("/etc/cron.weekly", "weekly"),
    ("/etc/cron.monthly", "monthly"),
];

const TIMER_TRIGGERS: [&str; 6] = [
    "OnCalendar",
    "OnActiveSec",
    "OnBootSec",
    "OnStartupSec",
    "OnUnitActiveSec",
    "OnUnitInactiveSec",
];

pub async fn run(ctx: CommandContext, _args: Invocation) -> CommandResult {
    blocking(move || {
        let mut scan = Scan::new(&ctx);
        let wants = Wants::load(&mut scan);
        let services = systemd::discover(&mut scan, &wants, ".service");
        let report = collect(&mut scan, &wants, &services, Timestamp::now());
        let value = json!({
            "timezone": report.timezone,
            "now": report.now.to_string(),
            "systemd": report.systemd,
            "tasks": report.tasks.items.iter().map(Task::to_json).collect::<Vec<_>>(),
            "truncated": report.tasks.truncated,
            "errors": scan.errors(),
        });
        scan.finish(value).map(Into::into)
    })
    .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Cron,
    CronScript,
    Timer,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Cron => "cron",
            Self::CronScript => "cron_script",
            Self::Timer => "systemd_timer",
        }
    }
}

/// One scheduled task.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub kind: Kind,
    pub source: PathBuf,
    pub line: Option<usize>,
    pub user: Option<String>,
    pub owner: Option<String>,
    pub modified: Option<String>,
    pub schedule: String,
    pub command: String,
    pub unit: Option<String>,
    pub enabled: Option<Enablement>,
    pub next_run: Option<Timestamp>,
    pub note: Option<String>,
}

impl Task {
    fn new(kind: Kind, source: &Path, facts: Option<&FileFacts>) -> Self {
        Self {
            kind,
            source: source.to_owned(),
            line: None,
            user: None,
            owner: facts.map(|f| f.owner.clone()),
            modified: facts.and_then(|f| f.modified.clone()),
            schedule: String::new(),
            command: String::new(),
            unit: None,
            enabled: None,
            next_run: None,
            note: None,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "source": show(&self.source),
            "line": self.line,
            "user": self.user,
            "owner": self.owner,
            "modified": self.modified,
            "schedule": self.schedule,
            "command": self.command,
            "unit": self.unit,
            "enabled": self.enabled.map(Enablement::as_str),
            "next_run": self.next_run.map(|t| t.to_string()),
            "note": self.note,
        })
    }
}

pub(crate) struct Report {
    pub timezone: String,
    pub now: Timestamp,
    pub systemd: String,
    pub tasks: Capped<Task>,
}

/// Reads every cron source and timer; `services` are the service units the timers may start.
pub(crate) fn collect(scan: &mut Scan, wants: &Wants, services: &[Unit], now: Timestamp) -> Report {
    let (timezone, tz) = system_zone(scan);
    let mut tasks = Capped::default();
    let zones = Zones { default: tz, now };

    crontab(scan, &zones, Path::new("/etc/crontab"), None, &mut tasks);
    for file in scan.list_files(Path::new("/etc/cron.d")) {
        if scan.stopped() {
            break;
        }
        if !is_placeholder(&file) {
            crontab(scan, &zones, &file, None, &mut tasks);
        }
    }
    for dir in ["/var/spool/cron/crontabs", "/var/spool/cron"] {
        for file in scan.list_files(Path::new(dir)) {
            if scan.stopped() {
                break;
            }
            let user = file.file_name().map(|n| n.to_string_lossy().into_owned());
            if !is_placeholder(&file) {
                crontab(scan, &zones, &file, user, &mut tasks);
            }
        }
    }
    for (dir, period) in CRON_DIRS {
        for file in scan.list_files(Path::new(dir)) {
            if scan.stopped() || is_placeholder(&file) {
                continue;
            }
            let facts = scan.facts(&file);
            let mut t = Task::new(Kind::CronScript, &file, facts.as_ref());
            t.user = Some("root".into());
            t.schedule = period.to_owned();
            t.command = show(&file);
            t.note = Some(if facts.as_ref().is_some_and(|f| !f.executable()) {
                "not executable: run-parts skips it".to_owned()
            } else {
                format!(
                    "run {period} by run-parts from /etc/crontab or anacron; see that entry's next run"
                )
            });
            tasks.push(t);
        }
    }

    let systemd = timers(scan, wants, services, &mut tasks);
    Report {
        timezone,
        now,
        systemd,
        tasks,
    }
}

struct Zones {
    default: TimeZone,
    now: Timestamp,
}

fn crontab(
    scan: &mut Scan,
    zones: &Zones,
    path: &Path,
    user: Option<String>,
    tasks: &mut Capped<Task>,
) {
    let Some(text) = scan.read_text(path) else {
        return;
    };
    let facts = scan.facts(path);
    let parsed = cron::parse(&text, user.is_none());
    for bad in &parsed.malformed {
        scan.error(path, &format!("line {}: {}", bad.line, bad.reason));
    }
    for e in parsed.entries {
        let mut t = Task::new(Kind::Cron, path, facts.as_ref());
        t.line = Some(e.line);
        t.user = e.user.clone().or_else(|| user.clone());
        (t.next_run, t.note) = next_run(scan, zones, &e);
        t.schedule = e.schedule;
        t.command = e.command;
        tasks.push(t);
    }
}

fn next_run(scan: &Scan, zones: &Zones, e: &CronLine) -> (Option<Timestamp>, Option<String>) {
    if e.parsed == Schedule::Reboot {
        return (None, Some("runs when cron starts (at boot)".into()));
    }
    match &e.cron_tz {
        None => (e.parsed.next_after(zones.now, &zones.default), None),
        Some(name) => match zone_named(scan, name) {
            Ok(tz) => (
                e.parsed.next_after(zones.now, &tz),
                Some(format!("scheduled in CRON_TZ={name}")),
            ),
            Err(why) => (
                None,
                Some(format!(
                    "CRON_TZ={name} cannot be used ({why}); next run unknown"
                )),
            ),
        },
    }
}

/// Timers with their triggers and, when systemd runs this system, its next elapse.
fn timers(scan: &mut Scan, wants: &Wants, services: &[Unit], tasks: &mut Capped<Task>) -> String {
    let units = systemd::discover(scan, wants, ".timer");
    let (status, next) = match systemd::live_status(scan) {
        Ok(()) => {
            let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
            match systemd::systemctl_show(
                scan,
                &names,
                &["NextElapseUSecRealtime"],
                &["--timestamp=unix"],
            ) {
                Ok(blocks) => (
                    "running".to_owned(),
                    blocks
                        .iter()
                        .map(|b| b.get("NextElapseUSecRealtime").and_then(|v| unix_stamp(v)))
                        .collect(),
                ),
                Err(e) => (
                    format!("running, but {e}; live state unavailable"),
                    vec![None; units.len()],
                ),
            }
        }
        Err(why) => (why, vec![None; units.len()]),
    };
    let live = status == "running";
    for (u, next_run) in units.into_iter().zip(next) {
        let mut t = Task::new(Kind::Timer, &u.path, u.facts.as_ref());
        t.schedule = TIMER_TRIGGERS
            .iter()
            .flat_map(|k| {
                u.config
                    .list("Timer", k)
                    .into_iter()
                    .map(move |v| format!("{k}={v}"))
            })
            .collect::<Vec<_>>()
            .join("; ");
        let target = u.config.last("Timer", "Unit").map_or_else(
            || format!("{}.service", u.name.trim_end_matches(".timer")),
            str::to_owned,
        );
        if let Some(s) = services.iter().find(|s| s.name == target) {
            t.command = s.config.list("Service", "ExecStart").join("; ");
            t.user = s.config.last("Service", "User").map(str::to_owned);
        }
        t.unit = Some(target);
        t.enabled = Some(u.state);
        t.next_run = next_run;
        if !live {
            t.note = Some("next run needs systemd, which is not queried here".into());
        }
        tasks.push(t);
    }
    status
}

/// `@1704067200` (systemctl `--timestamp=unix`) as a timestamp; anything else (`n/a`, empty) none.
pub(crate) fn unix_stamp(v: &str) -> Option<Timestamp> {
    v.strip_prefix('@')?
        .parse::<i64>()
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
}

/// The system's zone from `/etc/localtime` (its name from the link or `/etc/timezone`); UTC, said
/// so in the name, when there is none.
fn system_zone(scan: &mut Scan) -> (String, TimeZone) {
    let localtime = Path::new("/etc/localtime");
    let name = scan
        .root
        .read_link(localtime)
        .ok()
        .and_then(|t| {
            let t = t.to_string_lossy().into_owned();
            t.split_once("zoneinfo/").map(|(_, n)| n.to_owned())
        })
        .or_else(|| {
            scan.root
                .read_text(Path::new("/etc/timezone"), 4096)
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        });
    match scan.root.read(localtime, TZIF_LIMIT) {
        Ok(bytes) => {
            let name = name.unwrap_or_else(|| "localtime".into());
            match TimeZone::tzif(&name, &bytes) {
                Ok(tz) => (name, tz),
                Err(e) => {
                    scan.error(localtime, &format!("not a time zone file ({e}); using UTC"));
                    ("UTC".into(), TimeZone::UTC)
                }
            }
        }
        Err(e) => {
            scan.io_error(localtime, &e);
            match name.as_deref().map(|n| (n, zone_named(scan, n))) {
                Some((n, Ok(tz))) => (n.to_owned(), tz),
                _ => ("UTC (no /etc/localtime)".into(), TimeZone::UTC),
            }
        }
    }
}

/// A zone by IANA name from the root's zoneinfo.
fn zone_named(scan: &Scan, name: &str) -> Result<TimeZone, String> {
    if name.is_empty() || name.starts_with('/') || name.split('/').any(|p| p == "..") {
        return Err("not a zone name".into());
    }
    let path = Path::new("/usr/share/zoneinfo").join(name);
    let bytes = scan
        .root
        .read(&path, TZIF_LIMIT)
        .map_err(|e| format!("{}: {}", show(&path), super::linux::io_reason(&e)))?;
    TimeZone::tzif(name, &bytes).map_err(|e| e.to_string())
}

/// Package managers keep `.placeholder` files in cron directories; they are never run.
fn is_placeholder(path: &Path) -> bool {
    path.file_name() == Some(OsStr::new(".placeholder"))
}

#[cfg(test)]
mod tests;
