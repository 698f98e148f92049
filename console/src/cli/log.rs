//! `lr log ...` (clap derive): the tenant's audit log, its command outputs and its verification.
//! What each does is in [`crate::log`]; filters are checked here, before anything is sent, so a
//! mistake is a usage error (exit 2). Times are RFC 3339 or how long ago (`15m`, `2h`, `7d`).

use std::time::Duration;

use api_model::{AuditKind, Timestamp};
use clap::{Args, Subcommand};

/// The kinds of entries `--kind` takes, as the API spells them.
pub const KINDS: [AuditKind; 10] = [
    AuditKind::SessionOpened,
    AuditKind::SessionEnded,
    AuditKind::SessionAdopted,
    AuditKind::CommandSubmitted,
    AuditKind::CommandFinished,
    AuditKind::TransferStarted,
    AuditKind::TransferFinished,
    AuditKind::LibraryChanged,
    AuditKind::AdminChanged,
    AuditKind::Refused,
];

/// Most entries `lr log` prints without `--follow`: the cut of every list.
const MAX_ENTRIES: u64 = crate::api::MAX_LIST_ITEMS as u64;

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Print the output of a finished command, as the device sent it
    #[command(
        after_help = "REF is the output_ref of a command_finished entry: lr log --kind command_finished --output json\n\
                      Example: lr log output 4711 > dir-tmp.txt"
    )]
    Output {
        /// The entry's output_ref
        #[arg(value_name = "REF", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        reference: String,
    },
    /// Walk the tenant's hash chain against the cluster's checkpoints; exit 1 when it is broken
    /// (role: tenant-admin)
    Verify,
}

/// What `lr log` lists: the entries matching every filter given, oldest first.
#[derive(Debug, Clone, Default, Args)]
pub struct LogArgs {
    /// Only entries about this device
    #[arg(long, value_name = "ID", value_parser = id_of(ids::Kind::Device))]
    pub device: Option<String>,
    /// Only entries of this user
    #[arg(long, value_name = "NAME", value_parser = id_of(ids::Kind::User))]
    pub user: Option<String>,
    /// Only entries of this session
    #[arg(long, value_name = "ID", value_parser = id_of(ids::Kind::Session))]
    pub session: Option<String>,
    /// Only entries of this kind
    #[arg(long, value_name = "KIND", value_parser = kind_parser())]
    pub kind: Option<AuditKind>,
    /// Entries at or after this time: RFC 3339 (2025-06-01T10:00:00Z) or how long ago (30s,
    /// 15m, 2h, 7d, 2w)
    #[arg(long, value_name = "TIME", value_parser = parse_now)]
    pub since: Option<Timestamp>,
    /// Entries before this time, written as for --since
    #[arg(long, value_name = "TIME", value_parser = parse_now, conflicts_with = "follow")]
    pub until: Option<Timestamp>,
    /// Print at most this many entries, the oldest first (1 to 10000) [default: 10000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_ENTRIES), conflicts_with = "follow")]
    pub limit: Option<u64>,
    /// After the entries there are, print new ones as they are written (asks every second)
    /// until Ctrl+C; JSON output is then one entry per line
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// A clap parser of an id of `kind`, checked by the one validator.
fn id_of(kind: ids::Kind) -> impl Fn(&str) -> Result<String, String> + Clone {
    move |text| {
        ids::check(kind, text)
            .map(|()| text.to_owned())
            .map_err(|e| e.to_string())
    }
}

/// `command_finished`: a kind as the API spells it.
pub fn parse_kind(text: &str) -> Result<AuditKind, String> {
    KINDS
        .into_iter()
        .find(|kind| kind_name(*kind) == text)
        .ok_or_else(|| format!("unknown kind '{text}'"))
}

/// `--kind`: one of [`KINDS`], which `--help` lists and a near miss is pointed to.
fn kind_parser() -> impl clap::builder::TypedValueParser<Value = AuditKind> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(KINDS.map(kind_name)).try_map(|name| parse_kind(&name))
}

/// The API's name of a kind (`command_finished`); `unknown` for one of a newer broker. The match
/// is exhaustive: a kind added to `api-model` stops the build here, to be added to [`KINDS`] too.
pub fn kind_name(kind: AuditKind) -> &'static str {
    match kind {
        AuditKind::SessionOpened => "session_opened",
        AuditKind::SessionEnded => "session_ended",
        AuditKind::SessionAdopted => "session_adopted",
        AuditKind::CommandSubmitted => "command_submitted",
        AuditKind::CommandFinished => "command_finished",
        AuditKind::TransferStarted => "transfer_started",
        AuditKind::TransferFinished => "transfer_finished",
        AuditKind::LibraryChanged => "library_changed",
        AuditKind::AdminChanged => "admin_changed",
        AuditKind::Refused => "refused",
        AuditKind::Unknown => "unknown",
    }
}

fn parse_now(text: &str) -> Result<Timestamp, String> {
    parse_time(text, Timestamp::now())
}

/// A time given as RFC 3339, or as how long before `now`: a whole number and one of `s`, `m`,
/// `h`, `d`, `w`.
pub fn parse_time(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Some(ago) = parse_ago(text)? {
        return now
            .checked_sub(ago)
            .map_err(|_| format!("'{text}' ago is before the earliest time there is"));
    }
    text.parse::<Timestamp>().map_err(|_| {
        format!(
            "'{text}' is not a time: give an RFC 3339 time such as 2025-06-01T10:00:00Z (the \
             offset is needed), or how long ago such as 30s, 15m, 2h, 7d, 2w"
        )
    })
}

/// `15m` as 15 minutes; `None` for what is not a number followed by a unit.
fn parse_ago(text: &str) -> Result<Option<Duration>, String> {
    let Some(unit) = text.chars().last() else {
        return Ok(None);
    };
    let digits = &text[..text.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let seconds: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Ok(None),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(seconds))
        .map(|secs| Some(Duration::from_secs(secs)))
        .ok_or_else(|| format!("'{text}' is too long ago"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use proptest::prelude::*;

    use super::*;
    use crate::cli::{Cli, Command};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn times_are_rfc3339_or_how_long_ago() {
        let now = at("2025-06-08T12:00:00Z");
        for (text, expected) in [
            ("2025-06-01T10:00:00Z", "2025-06-01T10:00:00Z"),
            ("2025-06-01T12:00:00+02:00", "2025-06-01T10:00:00Z"),
            ("2025-06-01T10:00:00.5Z", "2025-06-01T10:00:00.5Z"),
            ("30s", "2025-06-08T11:59:30Z"),
            ("15m", "2025-06-08T11:45:00Z"),
            ("2h", "2025-06-08T10:00:00Z"),
            ("7d", "2025-06-01T12:00:00Z"),
            ("2w", "2025-05-25T12:00:00Z"),
            ("0m", "2025-06-08T12:00:00Z"),
        ] {
            assert_eq!(parse_time(text, now), Ok(at(expected)), "{text}");
        }
    }

    #[test]
    fn bad_times_say_what_is_accepted() {
        let now = at("2025-06-08T12:00:00Z");
        for text in [
            "",
            "yesterday",
            "15",
            "m",
            "15y",
            "-2h",
            "2025-06-01",
            "2025-06-01T10:00:00",
        ] {
            let err = parse_time(text, now).unwrap_err();
            assert!(
                err.contains("RFC 3339") && err.contains("15m"),
                "{text}: {err}"
            );
        }
        let err = parse_time("99999999999999999999d", now).unwrap_err();
        assert!(err.contains("too long ago"), "{err}");
        let err = parse_time("999999999w", now).unwrap_err();
        assert!(err.contains("earliest"), "{err}");
    }

    #[test]
    fn kinds_are_the_api_names() {
        for kind in KINDS {
            let name = kind_name(kind);
            assert_eq!(parse_kind(name), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
        }
        assert!(parse_kind("unknown").is_err());
        let err = Cli::try_parse_from(["lr", "log", "--kind", "comand_finished"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("possible values: session_opened,"), "{err}");
        assert!(err.contains("'command_finished'"), "a suggestion: {err}");
    }

    #[test]
    fn log_command_lines() {
        let cli = Cli::try_parse_from([
            "lr",
            "log",
            "--device",
            "web-07",
            "--user",
            "alice@acme.example",
            "--kind",
            "refused",
            "--since",
            "2025-06-01T10:00:00Z",
            "--limit",
            "20",
        ])
        .unwrap();
        let Command::Log {
            command: None,
            args,
        } = cli.command
        else {
            panic!("not log")
        };
        assert_eq!(args.device.as_deref(), Some("web-07"));
        assert_eq!(args.user.as_deref(), Some("alice@acme.example"));
        assert_eq!(args.kind, Some(AuditKind::Refused));
        assert_eq!(args.since, Some(at("2025-06-01T10:00:00Z")));
        assert_eq!(args.limit, Some(20));
        assert!(!args.follow);

        let cli = Cli::try_parse_from(["lr", "log", "output", "abc", "-o", "json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Log { command: Some(LogCommand::Output { reference }), .. } if reference == "abc"
        ));
        let cli = Cli::try_parse_from(["lr", "log", "-f", "--since", "15m"]).unwrap();
        assert!(matches!(cli.command, Command::Log { command: None, args } if args.follow));
    }

    #[test]
    fn log_usage_errors() {
        for args in [
            &["lr", "log", "--device", "web 07"][..],
            &["lr", "log", "--session", "a.b"],
            &["lr", "log", "--user", "a b"],
            &["lr", "log", "--kind", "nope"],
            &["lr", "log", "--since", "yesterday"],
            &["lr", "log", "--limit", "0"],
            &["lr", "log", "--limit", "10001"],
            &["lr", "log", "--follow", "--limit", "5"],
            &["lr", "log", "--follow", "--until", "1h"],
            &["lr", "log", "output"],
            &["lr", "log", "--device", "web-07", "verify"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    proptest! {
        /// Whatever is typed, a time is accepted as one of the two forms or refused with a
        /// message; never a panic.
        #[test]
        fn times_parse_or_are_refused(text in "[0-9a-zA-Z:+.-]{0,30}") {
            let now = at("2025-06-08T12:00:00Z");
            match parse_time(&text, now) {
                Ok(t) => prop_assert!(t <= now || text.parse::<Timestamp>().is_ok()),
                Err(message) => prop_assert!(!message.is_empty()),
            }
        }
    }
}
