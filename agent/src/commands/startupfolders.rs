//! `startupfolders`: XDG autostart entries and shell startup files, system-wide and of every user.
//!
//! Autostart entries are `/etc/xdg/autostart/*.desktop` and `~/.config/autostart/*.desktop` of
//! every home in `/etc/passwd`. A desktop session starts an entry unless `Hidden=true` or
//! `X-GNOME-Autostart-enabled=false`; `enabled` says which. Shell startup files are the users'
//! `.bashrc`, `.bash_profile`, `.bash_login`, `.bash_logout`, `.profile`, `.zshrc`, `.zprofile`,
//! `.zshenv`, `.zlogin`, `.zlogout`, and `/etc/profile`, `/etc/profile.d/*`, `/etc/bash.bashrc`,
//! `/etc/bashrc`, `/etc/zsh/*`, `/etc/zshrc`, `/etc/zprofile`, `/etc/zshenv`, `/etc/zlogin`,
//! `/etc/zlogout`. Homes shared by several accounts are read once; "/" is not read as a home.
//!
//! Output:
//! ```json
//! {"autostart": [{"path": "/home/alice/.config/autostart/x.desktop", "scope": "user|system",
//!                 "user": "alice" | null, "owner": "alice", "modified": "...Z" | null,
//!                 "name": "X" | null, "exec": "/usr/bin/x --bg" | null, "hidden": false,
//!                 "gnome_autostart_enabled": true | null, "enabled": true}],
//!  "shell_startup": [{"path": "/home/alice/.bashrc", "scope": "user|system",
//!                     "user": "alice" | null, "owner": "alice", "size": 3771,
//!                     "modified": "...Z" | null, "sha256": "hex" | null}],
//!  "truncated": false, "errors": [{"path": "...", "reason": "..."}]}
//! ```
//! `user` is the account whose home holds the file (null for system files); `owner` is the
//! file's owner (they differ when someone else planted it); `sha256` is null when the file
//! cannot be read.

use std::path::{Path, PathBuf};

use ::commands::Invocation;
use serde_json::{Value, json};

use super::linux::systemd::UnitFile;
use super::linux::{Capped, FileFacts, Scan, show};
use super::{CommandContext, CommandResult, blocking};

pub const USER_SHELL_FILES: [&str; 10] = [
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".zshenv",
    ".zlogin",
    ".zlogout",
];

const SYSTEM_SHELL_FILES: [&str; 8] = [
    "/etc/profile",
    "/etc/bash.bashrc",
    "/etc/bashrc",
    "/etc/zshrc",
    "/etc/zprofile",
    "/etc/zshenv",
    "/etc/zlogin",
    "/etc/zlogout",
];

const SYSTEM_SHELL_DIRS: [&str; 2] = ["/etc/profile.d", "/etc/zsh"];

pub async fn run(ctx: CommandContext, _args: Invocation) -> CommandResult {
    blocking(move || {
        let mut scan = Scan::new(&ctx);
        let r = collect(&mut scan);
        let value = json!({
            "autostart": r.autostart.items.iter().map(Autostart::to_json).collect::<Vec<_>>(),
            "shell_startup": r.shell.items.iter().map(StartupFile::to_json).collect::<Vec<_>>(),
            "truncated": r.autostart.truncated || r.shell.truncated,
            "errors": scan.errors(),
        });
        scan.finish(value).map(Into::into)
    })
    .await
}

/// One `.desktop` autostart entry.
#[derive(Debug, Clone)]
pub(crate) struct Autostart {
    pub path: PathBuf,
    /// The account whose home holds it.
    pub user: Option<String>,
    pub facts: Option<FileFacts>,
    pub name: Option<String>,
    pub exec: Option<String>,
    pub hidden: bool,
    pub gnome_enabled: Option<bool>,
}

impl Autostart {
    /// Whether a desktop session starts it.
    pub fn enabled(&self) -> bool {
        !self.hidden && self.gnome_enabled != Some(false)
    }

    fn to_json(&self) -> Value {
        json!({
            "path": show(&self.path),
            "scope": scope(&self.user),
            "user": self.user,
            "owner": self.facts.as_ref().map(|f| f.owner.clone()),
            "modified": self.facts.as_ref().and_then(|f| f.modified.clone()),
            "name": self.name,
            "exec": self.exec,
            "hidden": self.hidden,
            "gnome_autostart_enabled": self.gnome_enabled,
            "enabled": self.enabled(),
        })
    }
}

/// One shell startup file.
#[derive(Debug, Clone)]
pub(crate) struct StartupFile {
    pub path: PathBuf,
    pub user: Option<String>,
    pub facts: FileFacts,
    pub sha256: Option<String>,
}

impl StartupFile {
    fn to_json(&self) -> Value {
        json!({
            "path": show(&self.path),
            "scope": scope(&self.user),
            "user": self.user,
            "owner": self.facts.owner,
            "size": self.facts.size,
            "modified": self.facts.modified,
            "sha256": self.sha256,
        })
    }
}

fn scope(user: &Option<String>) -> &'static str {
    if user.is_some() { "user" } else { "system" }
}

pub(crate) struct Report {
    pub autostart: Capped<Autostart>,
    pub shell: Capped<StartupFile>,
}

pub(crate) fn collect(scan: &mut Scan) -> Report {
    let mut report = Report {
        autostart: Capped::default(),
        shell: Capped::default(),
    };
    let homes = scan.homes();

    let mut autostart_dirs = vec![(None, PathBuf::from("/etc/xdg/autostart"))];
    autostart_dirs.extend(
        homes
            .iter()
            .map(|(user, home)| (Some(user.clone()), home.join(".config/autostart"))),
    );
    for (user, dir) in autostart_dirs {
        for path in scan.list_files(&dir) {
            if scan.stopped() {
                return report;
            }
            if path.extension().is_some_and(|e| e == "desktop")
                && let Some(entry) = desktop_entry(scan, &path, user.clone())
            {
                report.autostart.push(entry);
            }
        }
    }

    let mut files: Vec<(Option<String>, PathBuf)> = SYSTEM_SHELL_FILES
        .iter()
        .map(|p| (None, PathBuf::from(p)))
        .collect();
    for dir in SYSTEM_SHELL_DIRS {
        files.extend(
            scan.list_files(Path::new(dir))
                .into_iter()
                .map(|p| (None, p)),
        );
    }
    for (user, home) in &homes {
        files.extend(
            USER_SHELL_FILES
                .iter()
                .map(|f| (Some(user.clone()), home.join(f))),
        );
    }
    for (user, path) in files {
        if scan.stopped() {
            break;
        }
        // Missing files are the common case: stat first, and only then hash.
        let md = match scan.root.metadata(&path) {
            Ok(md) => md,
            Err(e) => {
                scan.io_error(&path, &e);
                continue;
            }
        };
        if !md.is_file() {
            continue;
        }
        let Some(facts) = scan.facts(&path) else {
            continue;
        };
        let sha256 = scan.sha256(&path);
        report.shell.push(StartupFile {
            path,
            user,
            facts,
            sha256,
        });
    }
    report
}

fn desktop_entry(scan: &mut Scan, path: &Path, user: Option<String>) -> Option<Autostart> {
    let text = scan.read_text(path)?;
    // Desktop entries share the unit file syntax closely enough: [Group] and Key=Value lines.
    let f = UnitFile::parse(&text);
    let get = |k: &str| f.last("Desktop Entry", k).map(str::to_owned);
    let boolean = |k: &str| get(k).map(|v| v.eq_ignore_ascii_case("true"));
    Some(Autostart {
        path: path.to_owned(),
        user,
        facts: scan.facts(path),
        name: get("Name"),
        exec: get("Exec"),
        hidden: boolean("Hidden").unwrap_or(false),
        gnome_enabled: boolean("X-GNOME-Autostart-enabled"),
    })
}

#[cfg(test)]
mod tests;
