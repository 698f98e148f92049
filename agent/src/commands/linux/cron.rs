//! Crontab files: system ones (`/etc/crontab`, `/etc/cron.d/*`: schedule, user, command) and user
//! ones (`/var/spool/cron/crontabs/<user>`: schedule, command).
//!
//! Blank lines, comments and environment assignments (`MAILTO=root`, `PATH = /bin`) are not
//! entries; `CRON_TZ=<zone>` is remembered because it changes the zone of the entries after it.
//! A line that is none of these is malformed and reported with its number.

use super::cronexpr::Schedule;

/// One schedule line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronLine {
    /// 1-based line number.
    pub line: usize,
    /// The schedule as written: five fields joined by one space, or the macro.
    pub schedule: String,
    pub parsed: Schedule,
    /// The user field of a system crontab; `None` in a user crontab.
    pub user: Option<String>,
    pub command: String,
    /// The `CRON_TZ` in effect for this line.
    pub cron_tz: Option<String>,
}

/// A line that is neither blank, comment, assignment nor a valid entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Crontab {
    pub entries: Vec<CronLine>,
    pub malformed: Vec<Malformed>,
}

/// Parses a crontab; `system` files carry a user field after the schedule.
pub fn parse(text: &str, system: bool) -> Crontab {
    let mut out = Crontab::default();
    let mut cron_tz: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let n = i + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, value)) = assignment(line) {
            if name == "CRON_TZ" {
                cron_tz = (!value.is_empty()).then(|| value.to_owned());
            }
            continue;
        }
        match entry(line, system) {
            Ok((schedule, parsed, user, command)) => out.entries.push(CronLine {
                line: n,
                schedule,
                parsed,
                user,
                command,
                cron_tz: cron_tz.clone(),
            }),
            Err(reason) => out.malformed.push(Malformed { line: n, reason }),
        }
    }
    out
}

/// `NAME=value` or `NAME = "value"`, as cron's `load_env` reads them. Entries start with a digit,
/// `*` or `@`, so they are never taken for assignments.
fn assignment(line: &str) -> Option<(&str, &str)> {
    let first = line.chars().next()?;
    if first.is_ascii_digit() || first == '*' || first == '@' {
        return None;
    }
    let (name, value) = line.split_once('=')?;
    let name = name.trim_end();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value);
    Some((name, value))
}

type Entry = (String, Schedule, Option<String>, String);

fn entry(line: &str, system: bool) -> Result<Entry, String> {
    let schedule_fields = if line.starts_with('@') { 1 } else { 5 };
    let wanted = schedule_fields + usize::from(system);
    let (fields, command) = split_fields(line, wanted);
    if fields.len() < wanted || command.is_empty() {
        let what = if system {
            "schedule, user and command"
        } else {
            "schedule and command"
        };
        return Err(format!(
            "not a cron entry: expected {what} in '{}'",
            clip(line)
        ));
    }
    let schedule = fields[..schedule_fields].join(" ");
    let parsed = Schedule::parse(&schedule)?;
    let user = system.then(|| fields[schedule_fields].to_owned());
    Ok((schedule, parsed, user, command.to_owned()))
}

/// The first `n` whitespace-separated fields and the rest of the line (internal spacing kept).
fn split_fields(line: &str, n: usize) -> (Vec<&str>, &str) {
    let mut fields = Vec::with_capacity(n);
    let mut rest = line.trim_start();
    while fields.len() < n && !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        fields.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (fields, rest.trim_end())
}

/// A line cut to a length that keeps error messages readable.
fn clip(line: &str) -> String {
    const MAX: usize = 120;
    if line.chars().count() <= MAX {
        line.to_owned()
    } else {
        format!("{}…", line.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_crontab_with_comments_env_and_macros() {
        let text = "# /etc/crontab: system-wide crontab\nSHELL=/bin/sh\nPATH = /usr/local/sbin:/usr/bin\nMAILTO=\"\"\n\n17 *\t* * *\troot    cd / && run-parts --report /etc/cron.hourly\n@reboot root /opt/evil --daemon\n*/5 * * * * FOO=bar /usr/bin/x\nCRON_TZ=Europe/Berlin\n0 9 * * mon-fri backup /usr/local/bin/backup  --all\nnonsense here\n0 0 * * *\n61 * * * * root x\n";
        let t = parse(text, true);
        assert_eq!(t.entries.len(), 4, "{t:?}");
        let e = &t.entries[0];
        assert_eq!(e.line, 6);
        assert_eq!(e.schedule, "17 * * * *");
        assert_eq!(e.user.as_deref(), Some("root"));
        assert_eq!(e.command, "cd / && run-parts --report /etc/cron.hourly");
        assert_eq!(e.cron_tz, None);
        assert_eq!(t.entries[1].schedule, "@reboot");
        assert_eq!(t.entries[1].parsed, Schedule::Reboot);
        assert_eq!(t.entries[1].command, "/opt/evil --daemon");
        // "FOO=bar" after the schedule is the user field of a system crontab.
        assert_eq!(t.entries[2].user.as_deref(), Some("FOO=bar"));
        assert_eq!(t.entries[3].command, "/usr/local/bin/backup  --all");
        assert_eq!(t.entries[3].cron_tz.as_deref(), Some("Europe/Berlin"));
        let bad: Vec<usize> = t.malformed.iter().map(|m| m.line).collect();
        assert_eq!(bad, [11, 12, 13]);
        assert!(
            t.malformed[2].reason.contains("out of range"),
            "{:?}",
            t.malformed
        );
    }

    #[test]
    fn user_crontab_has_no_user_field() {
        let t = parse(
            "MAILTO=alice\n*/10 * * * * /home/alice/bin/sync.sh >/dev/null 2>&1\n@daily    tar czf /tmp/b.tgz ~\n",
            false,
        );
        assert_eq!(t.entries.len(), 2);
        assert_eq!(t.entries[0].user, None);
        assert_eq!(
            t.entries[0].command,
            "/home/alice/bin/sync.sh >/dev/null 2>&1"
        );
        assert_eq!(t.entries[1].schedule, "@daily");
        assert_eq!(t.entries[1].command, "tar czf /tmp/b.tgz ~");
        assert!(t.malformed.is_empty());
    }

    #[test]
    fn weird_content_never_panics() {
        for text in [
            "\u{0}\u{fffd}",
            "@",
            "* * * * * ",
            "=",
            " = x",
            "0 0 * * * \u{fffd}",
        ] {
            let _ = parse(text, true);
            let _ = parse(text, false);
        }
    }
}
