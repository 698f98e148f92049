//! `services`: systemd services from their unit files, with live state when systemd runs here.
//!
//! Units come from /etc/systemd/system, /run/systemd/system, /lib/systemd/system and
//! /usr/lib/systemd/system, the first file of a name winning, drop-ins merged (see
//! [`super::linux::systemd`] for how the enabled state is decided). Live state is asked of
//! `systemctl show` only when systemd is PID 1 (`/run/systemd/system` exists) and the agent reads
//! the live system; otherwise `live_state` is null and `systemd` says why. Nothing is guessed.
//!
//! Output:
//! ```json
//! {"systemd": "running" | "not running (PID 1 is init); live state unavailable" | "...",
//!  "services": [{"name": "ssh.service", "description": "OpenBSD Secure Shell server" | null,
//!                "exec_start": ["/usr/sbin/sshd -D"], "user": "root" | null,
//!                "unit_path": "/lib/systemd/system/ssh.service",
//!                "link_target": "/opt/x/ssh.service" | null, "alias_of": "ssh.service" | null,
//!                "drop_ins": ["/etc/systemd/system/ssh.service.d/override.conf"],
//!                "enabled": "enabled|disabled|static|masked|alias",
//!                "owner": "root" | null, "modified": "2024-01-01T00:00:00Z" | null,
//!                "live_state": {"active_state": "active", "sub_state": "running",
//!                               "main_pid": 812 | null} | null}],
//!  "truncated": false,
//!  "errors": [{"path": "/etc/systemd/system/x.service", "reason": "permission denied ..."}]}
//! ```
//! `exec_start` lists ExecStart= values after drop-ins (prefixes such as `-` or `+` kept); `user`
//! is `User=` (null means root); `owner`/`modified` are those of the file the unit path leads to.
//! Paths are as the system sees them, also under a configured `system_root`.

use ::commands::Invocation;
use serde_json::{Value, json};

use super::linux::systemd::{self, Enablement, Unit, Wants};
use super::linux::{Capped, Scan, show};
use super::{CommandContext, CommandResult, blocking};

pub async fn run(ctx: CommandContext, _args: Invocation) -> CommandResult {
    blocking(move || {
        let mut scan = Scan::new(&ctx);
        let report = collect(&mut scan);
        scan.finish(render(&scan, &report)).map(Into::into)
    })
    .await
}

/// What `services` found; `persistence` reads its units too.
pub(crate) struct Report {
    pub systemd: String,
    pub units: Capped<(Unit, Option<Value>)>,
}

/// Reads every service unit and, when systemd runs here, its live state.
pub(crate) fn collect(scan: &mut Scan) -> Report {
    let wants = Wants::load(scan);
    let found = systemd::discover(scan, &wants, ".service");
    let (systemd, live) = match systemd::live_status(scan) {
        Ok(()) => live_states(scan, &found),
        Err(why) => (why, vec![None; found.len()]),
    };
    let mut units = Capped::default();
    for pair in found.into_iter().zip(live) {
        units.push(pair);
    }
    Report { systemd, units }
}

fn live_states(scan: &Scan, units: &[Unit]) -> (String, Vec<Option<Value>>) {
    let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
    match systemd::systemctl_show(scan, &names, &["ActiveState", "SubState", "MainPID"], &[]) {
        Ok(blocks) => {
            let live = blocks
                .into_iter()
                .map(|b| {
                    let pid = b
                        .get("MainPID")
                        .and_then(|p| p.parse::<u32>().ok())
                        .filter(|p| *p != 0);
                    Some(json!({
                        "active_state": b.get("ActiveState"),
                        "sub_state": b.get("SubState"),
                        "main_pid": pid,
                    }))
                })
                .collect();
            ("running".to_owned(), live)
        }
        Err(e) => (
            format!("running, but {e}; live state unavailable"),
            vec![None; units.len()],
        ),
    }
}

fn render(scan: &Scan, report: &Report) -> Value {
    let services: Vec<Value> = report
        .units
        .items
        .iter()
        .map(|(u, live)| unit_json(u, live.clone()))
        .collect();
    json!({
        "systemd": report.systemd,
        "services": services,
        "truncated": report.units.truncated,
        "errors": scan.errors(),
    })
}

fn unit_json(u: &Unit, live: Option<Value>) -> Value {
    json!({
        "name": u.name,
        "description": u.description(),
        "exec_start": u.config.list("Service", "ExecStart"),
        "user": u.config.last("Service", "User"),
        "unit_path": show(&u.path),
        "link_target": u.link_target.as_deref().map(show),
        "alias_of": u.alias_of,
        "drop_ins": u.drop_ins.iter().map(|p| show(p)).collect::<Vec<_>>(),
        "enabled": u.state.as_str(),
        "owner": u.facts.as_ref().map(|f| f.owner.clone()),
        "modified": u.facts.as_ref().and_then(|f| f.modified.clone()),
        "live_state": live,
    })
}

/// Whether a unit runs at boot without anyone asking.
pub(crate) fn persists(u: &Unit) -> bool {
    u.state == Enablement::Enabled
}

#[cfg(test)]
mod tests;
