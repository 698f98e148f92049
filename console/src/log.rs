//! `lr log`: the tenant's audit log as a table or JSON, followed as it grows, a finished command's
//! output, and the verification of the log's hash chain.
//!
//! A table shows each entry as seq, at, kind, user, device, session and a one-line summary of its
//! `details`; JSON is the entries as the broker sent them. Followed, the log is printed as it
//! comes: JSON one entry per line, a table as aligned lines under one header. Following asks
//! every second from the last cursor the broker gave; the broker gives none past the last page,
//! so each poll reads that page again and only entries past the last one shown are printed. A
//! broker that stops answering is asked again with backoff, said once on stderr, until it
//! answers or Ctrl+C ends `lr`.

use std::io::Write;
use std::time::Duration;

use api_model::{AuditEntry, AuditFilter, AuditVerification, ErrorCode};
use backon::{BackoffBuilder, ExponentialBuilder};

use crate::api::{ApiError, AuditPage, Client, MAX_LIST_ITEMS, Typed};
use crate::app::{install_signals, output_error, print_doc, print_rows};
use crate::cli::{LogArgs, LogCommand};
use crate::doc::Doc;
use crate::exit::{Exit, Failure};
use crate::render::{self, Column, Format};

/// How often a followed log is asked for new entries.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// Entries a page holds while following: each poll reads the last page again, so it is kept
/// small.
const FOLLOW_PAGE: usize = api_model::DEFAULT_LIMIT;
/// Polls of a followed log while the broker does not answer: from 0.5 s apart doubling up to
/// 4 s (backon's jitter adds up to the delay again), for as long as it takes.
const FOLLOW_RETRIES: ExponentialBuilder = ExponentialBuilder::new()
    .with_jitter()
    .with_min_delay(Duration::from_millis(500))
    .with_max_delay(Duration::from_secs(4))
    .without_max_times();

/// Fields of `details` a summary shows, in this order; the command line goes bare, the others
/// as `key=value` (a refused `request` as `request=<method> <path>`).
const SUMMARY_FIELDS: &[&str] = &[
    "command_line",
    "action",
    "direction",
    "request",
    "state",
    "exit_code",
    "reason",
    "error",
    "path",
    "name",
    "size",
];
/// Longest value in a summary, and the longest summary.
const SUMMARY_VALUE_CHARS: usize = 80;
const SUMMARY_CHARS: usize = 200;
/// Who acted, for an entry the platform wrote (a lease that ran out, a node that stopped).
const PLATFORM: &str = "(platform)";

/// The columns of the table, and of the lines of a followed log.
const COLUMNS: [(&str, Column); 7] = [
    (
        "seq",
        Column {
            width: 5,
            right: true,
        },
    ),
    (
        "at",
        Column {
            width: 20,
            right: false,
        },
    ),
    (
        "kind",
        Column {
            width: 17,
            right: false,
        },
    ),
    (
        "user",
        Column {
            width: 12,
            right: false,
        },
    ),
    (
        "device",
        Column {
            width: 12,
            right: false,
        },
    ),
    (
        "session",
        Column {
            width: 12,
            right: false,
        },
    ),
    (
        "summary",
        Column {
            width: 0,
            right: false,
        },
    ),
];

/// The fields of a verification its table shows, in this order.
const VERIFY_FIELDS: [&str; 9] = [
    "ok",
    "entries",
    "first_seq",
    "cut_at",
    "head_seq",
    "checkpoint_seq",
    "checkpoint_at",
    "first_broken",
    "problem",
];

/// Runs `lr log` or one of its subcommands and prints its answer.
pub async fn run(
    api: &Client,
    command: Option<LogCommand>,
    args: LogArgs,
    format: Format,
    width: Option<u16>,
) -> Result<Exit, Failure> {
    match command {
        Some(LogCommand::Output { reference }) => output(api, &reference).await,
        Some(LogCommand::Verify) => verify(api, format, width).await,
        None if args.follow => follow(api, &filter_of(&args), format, width).await,
        None => {
            if let (Some(since), Some(until)) = (args.since, args.until)
                && since >= until
            {
                return Err(Failure::usage(format!(
                    "--since ({since}) is not before --until ({until}): no entry can match"
                )));
            }
            let max = args.limit.map_or(MAX_LIST_ITEMS, |n| {
                usize::try_from(n).unwrap_or(MAX_LIST_ITEMS)
            });
            let list = api.audit(&filter_of(&args), max).await?;
            let doc = match format {
                Format::Json => list.doc(),
                Format::Table => Doc::Array(list.items.iter().map(row).collect()),
            };
            // A list cut at the --limit asked for is what was asked; only the console's own cut
            // is said.
            let cut = list.cut && args.limit.is_none();
            print_rows(&doc, cut, "audit entries", format, width)
        }
    }
}

/// The query of `GET /api/v1/audit` for the filters given.
pub fn filter_of(args: &LogArgs) -> AuditFilter {
    AuditFilter {
        device: args.device.clone(),
        user: args.user.clone(),
        session: args.session.clone(),
        kind: args.kind,
        since: args.since,
        until: args.until,
    }
}

/// An entry as a row of the table: seq, at (to the second, UTC), kind (as the broker names it,
/// so a kind of a newer broker shows), user, device, session, summary.
pub fn row(entry: &Typed<AuditEntry>) -> Doc {
    let text = |key: &str| entry.doc.get(key).cloned().unwrap_or_default();
    let user = match text("user") {
        Doc::Null => Doc::String(PLATFORM.to_owned()),
        user => user,
    };
    Doc::Object(vec![
        ("seq".to_owned(), text("seq")),
        ("at".to_owned(), Doc::String(at(entry))),
        ("kind".to_owned(), text("kind")),
        ("user".to_owned(), user),
        ("device".to_owned(), text("device")),
        ("session".to_owned(), text("session")),
        (
            "summary".to_owned(),
            Doc::String(summary(entry.doc.get("details").unwrap_or(&Doc::Null))),
        ),
    ])
}

/// `2025-06-01T10:42:07Z`: when an entry was written, to the second.
fn at(entry: &AuditEntry) -> String {
    entry.at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What an entry's `details` say, on one line: the command line, then the other fields of
/// [`SUMMARY_FIELDS`] that are there as `key=value`, each value and the whole cut with `…`.
/// Details without any of those fields are shown as compact JSON.
pub fn summary(details: &Doc) -> String {
    let value = |doc: &Doc| render::cut_line(&render::plain(doc), SUMMARY_VALUE_CHARS);
    let parts: Vec<String> = SUMMARY_FIELDS
        .iter()
        .filter_map(|key| {
            let doc = details.get(key).filter(|d| !d.is_null())?;
            let method_path = (doc.get("method"), doc.get("path"));
            Some(match (*key, method_path) {
                ("command_line", _) => value(doc),
                ("request", (Some(method), Some(path))) => {
                    format!("request={} {}", value(method), value(path))
                }
                _ => format!("{key}={}", value(doc)),
            })
        })
        .collect();
    let text = match details {
        _ if !parts.is_empty() => parts.join(" · "),
        Doc::Null => String::new(),
        Doc::Object(fields) if fields.is_empty() => String::new(),
        other => other.to_compact(),
    };
    render::cut_line(&text, SUMMARY_CHARS)
}

/// `lr log output REF`: the bytes of the output as the broker keeps them, nothing added.
async fn output(api: &Client, reference: &str) -> Result<Exit, Failure> {
    let body = api.audit_output(reference).await.map_err(|e| {
        let code = e.code();
        let mut failure = Failure::from(e);
        let hint = match code {
            Some(ErrorCode::Forbidden) => {
                "a command's output is shown only to users whose roles could have run that \
                 command on that device; `lr whoami` lists yours"
            }
            Some(ErrorCode::NotFound) => {
                "REF is the output_ref of a command_finished entry: lr log --kind \
                 command_finished --output json"
            }
            _ => return failure,
        };
        failure.hints = vec![hint.to_owned()];
        failure
    })?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&body)
        .and_then(|()| stdout.flush())
        .map(|()| Exit::Success)
        .or_else(output_error)
}

/// `lr log verify`: the verification, then exit 1 with the broken entry named when the chain
/// does not hold.
async fn verify(api: &Client, format: Format, width: Option<u16>) -> Result<Exit, Failure> {
    let verification = api.audit_verify().await?;
    let doc = match format {
        Format::Json => verification.doc.clone(),
        Format::Table => Doc::Object(
            VERIFY_FIELDS
                .iter()
                .map(|key| {
                    let value = verification.doc.get(key).cloned().unwrap_or_default();
                    ((*key).to_owned(), value)
                })
                .collect(),
        ),
    };
    print_doc(&doc, format, width)?;
    match broken(&verification) {
        None => Ok(Exit::Success),
        Some(message) => Err(Failure::new(Exit::CommandFailed, message)),
    }
}

/// What is wrong with a chain that does not hold, naming its first broken entry; `None` when it
/// holds.
pub fn broken(verification: &AuditVerification) -> Option<String> {
    if verification.ok {
        return None;
    }
    let problem = verification
        .problem
        .as_deref()
        .unwrap_or("the broker gave no reason");
    let tenant = &verification.tenant;
    Some(match verification.first_broken {
        Some(seq) => {
            // The broker may name the entry in its problem too: once is enough.
            let problem = problem
                .strip_prefix(&format!("entry {seq}: "))
                .unwrap_or(problem);
            format!("the audit log of tenant {tenant} is broken at entry {seq}: {problem}")
        }
        None => format!("the audit log of tenant {tenant} does not verify: {problem}"),
    })
}

/// Where a followed log stands: the last cursor the broker gave and the last entry printed.
#[derive(Debug, Default)]
struct Tail {
    cursor: Option<String>,
    shown: Option<u64>,
}

impl Tail {
    /// The entries of `page` past the last one printed, in order, and whether a page follows it.
    /// Remembers the page's cursor, so the next request starts there.
    fn take(&mut self, page: AuditPage) -> (Vec<Typed<AuditEntry>>, bool) {
        let more = page.next.is_some();
        if page.next.is_some() {
            self.cursor = page.next;
        }
        let shown = self.shown;
        let fresh: Vec<Typed<AuditEntry>> = page
            .entries
            .into_iter()
            .filter(|entry| shown.is_none_or(|seq| entry.seq > seq))
            .collect();
        if let Some(last) = fresh.last() {
            self.shown = Some(last.seq);
        }
        (fresh, more)
    }
}

/// Why reading a followed log stopped.
enum Stop {
    Api(ApiError),
    /// Stdout could not be written (a reader that went away).
    Output(std::io::Error),
}

/// Entries printed as they come: JSON lines, or aligned lines under a header printed with the
/// first page.
struct Stream {
    format: Format,
    width: Option<u16>,
    header_done: bool,
}

impl Stream {
    fn print(&mut self, entries: &[Typed<AuditEntry>]) -> std::io::Result<()> {
        let mut lines: Vec<String> = Vec::with_capacity(entries.len() + 1);
        if self.format == Format::Table && !self.header_done {
            let names: Vec<String> = COLUMNS.iter().map(|(name, _)| (*name).to_owned()).collect();
            lines.push(self.line(&names));
            self.header_done = true;
        }
        lines.extend(entries.iter().map(|entry| match self.format {
            Format::Json => entry.doc.to_compact(),
            Format::Table => {
                let Doc::Object(cells) = row(entry) else {
                    unreachable!("a row is an object")
                };
                let cells: Vec<String> =
                    cells.iter().map(|(_, cell)| render::plain(cell)).collect();
                self.line(&cells)
            }
        }));
        self.write(&lines)
    }

    fn line(&self, cells: &[String]) -> String {
        let columns = COLUMNS.map(|(_, column)| column);
        render::aligned(cells, &columns, self.width)
    }

    fn write(&self, lines: &[String]) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        for line in lines {
            writeln!(stdout, "{line}")?;
        }
        stdout.flush()
    }
}

/// `lr log --follow`: what there is, then what comes, until Ctrl+C (exit 0). The first read
/// fails as any command does (a wrong URL or token is not waited out); after it, a broker that
/// does not answer is asked again until it does.
async fn follow(
    api: &Client,
    filter: &AuditFilter,
    format: Format,
    width: Option<u16>,
) -> Result<Exit, Failure> {
    let signals = install_signals()?;
    let mark = signals.now();
    let mut tail = Tail::default();
    let mut stream = Stream {
        format,
        width,
        header_done: false,
    };
    let mut retries: Option<backon::ExponentialBackoff> = None;
    let mut first = true;
    loop {
        if !first {
            let pause = match retries.as_mut() {
                Some(delays) => delays.next().unwrap_or(FOLLOW_EVERY),
                None => FOLLOW_EVERY,
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = signals.after(mark) => return Ok(Exit::Success),
            }
        }
        let read = tokio::select! {
            read = catch_up(api, filter, &mut tail, &mut stream) => read,
            () = signals.after(mark) => return Ok(Exit::Success),
        };
        match read {
            Ok(()) => {
                if retries.take().is_some() {
                    crate::say!("lr: the broker answers again; following the log");
                }
            }
            Err(Stop::Api(e)) if e.is_transient() && !first => {
                if retries.is_none() {
                    crate::say!("lr: {e}; asking again until it answers (Ctrl+C to stop)");
                    retries = Some(FOLLOW_RETRIES.build());
                }
            }
            Err(Stop::Api(e)) => return Err(e.into()),
            Err(Stop::Output(e)) => return output_error(e),
        }
        first = false;
    }
}

/// Reads from the tail's cursor to the end of the log, printing the entries not printed yet.
async fn catch_up(
    api: &Client,
    filter: &AuditFilter,
    tail: &mut Tail,
    stream: &mut Stream,
) -> Result<(), Stop> {
    loop {
        let page = api
            .audit_page(filter, FOLLOW_PAGE, tail.cursor.clone())
            .await
            .map_err(Stop::Api)?;
        let (fresh, more) = tail.take(page);
        stream.print(&fresh).map_err(Stop::Output)?;
        if !more {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Doc {
        Doc::parse(json.as_bytes()).unwrap()
    }

    fn entry(seq: u64, kind: &str, user: &str, details: &str) -> Typed<AuditEntry> {
        let user = if user.is_empty() {
            "null".to_owned()
        } else {
            format!("\"{user}\"")
        };
        Typed::from_doc(doc(&format!(
            r#"{{"tenant":"demo","seq":{seq},"at":"2025-06-01T10:0{seq}:00.123456Z","kind":"{kind}","user":{user},"node":1,"device":"web-07","session":"s-1","command_id":null,"transfer_id":null,"details":{details},"output_ref":null,"prev_hash":"00","hash":"11"}}"#
        )))
        .unwrap()
    }

    fn page(entries: Vec<Typed<AuditEntry>>, next: Option<&str>) -> AuditPage {
        AuditPage {
            entries,
            next: next.map(str::to_owned),
        }
    }

    #[test]
    fn summaries_are_one_short_line() {
        let cases = [
            (
                r#"{"command_line":"dir -path /tmp","state":"completed","exit_code":0,"duration_ms":12}"#,
                "dir -path /tmp · state=completed · exit_code=0",
            ),
            (
                r#"{"request":{"method":"POST","path":"/api/v1/sessions"},"reason":"this needs the role responder-basic"}"#,
                "request=POST /api/v1/sessions · reason=this needs the role responder-basic",
            ),
            (
                r#"{"direction":"getfile","path":"/var/log/a.log","name":"a.log","size":42,"sha256":"ab","bytes_moved":42,"state":"completed","error":null}"#,
                "direction=getfile · state=completed · path=/var/log/a.log · name=a.log · size=42",
            ),
            (
                r#"{"action":"token created","token":"0123"}"#,
                "action=token created",
            ),
            (r#"{"quota":3}"#, r#"{"quota":3}"#),
            ("{}", ""),
            ("null", ""),
        ];
        for (details, expected) in cases {
            assert_eq!(summary(&doc(details)), expected, "{details}");
        }
        let long = format!(
            r#"{{"command_line":"findfile -name {}\nx","error":"{}"}}"#,
            "a".repeat(100),
            "e".repeat(300)
        );
        let text = summary(&doc(&long));
        assert!(!text.contains('\n'), "{text}");
        assert!(text.starts_with("findfile -name aaa"), "{text}");
        assert!(text.chars().count() <= SUMMARY_CHARS + 1, "{text}");
        assert_eq!(text.matches('…').count(), 2, "{text}");
    }

    #[test]
    fn rows_show_the_platform_and_the_second() {
        let rows = Doc::Array(vec![
            row(&entry(
                1,
                "command_submitted",
                "analyst-b",
                r#"{"command_line":"dir -path /tmp"}"#,
            )),
            row(&entry(
                2,
                "session_ended",
                "",
                r#"{"reason":"lease expired"}"#,
            )),
            row(&entry(3, "quarantined", "admin-a", r#"{"x":1}"#)),
        ]);
        insta::assert_snapshot!(render::text(&rows, Some(120)));
    }

    #[test]
    fn a_tail_prints_each_entry_once_and_keeps_the_last_cursor() {
        let mut tail = Tail::default();
        let seqs = |entries: Vec<Typed<AuditEntry>>| -> Vec<u64> {
            entries.iter().map(|e| e.seq).collect()
        };
        let e = |seq| entry(seq, "refused", "a", "{}");
        let (fresh, more) = tail.take(page(vec![e(1), e(2)], Some("c2")));
        assert_eq!((seqs(fresh), more), (vec![1, 2], true));
        let (fresh, more) = tail.take(page(vec![e(3)], None));
        assert_eq!((seqs(fresh), more), (vec![3], false));
        assert_eq!(tail.cursor.as_deref(), Some("c2"), "the last cursor given");
        // The next poll reads the last page again: only what is past it is new.
        let (fresh, _) = tail.take(page(vec![e(3)], None));
        assert!(fresh.is_empty());
        let (fresh, more) = tail.take(page(vec![e(3), e(4)], Some("c4")));
        assert_eq!((seqs(fresh), more), (vec![4], true));
        assert_eq!(tail.cursor.as_deref(), Some("c4"));
        let (fresh, more) = tail.take(page(vec![e(5)], None));
        assert_eq!((seqs(fresh), more), (vec![5], false));
        assert_eq!(tail.shown, Some(5));
    }

    fn verification(json: &str) -> AuditVerification {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_broken_chain_names_its_first_broken_entry() {
        let ok = verification(
            r#"{"tenant":"demo","ok":true,"entries":5,"head_seq":5,"head_hash":"ab","checkpoint_seq":5,"checkpoint_at":"2025-06-01T11:00:00Z","first_broken":null,"problem":null}"#,
        );
        assert_eq!(broken(&ok), None);
        let at_3 = verification(
            r#"{"tenant":"demo","ok":false,"entries":5,"head_seq":5,"head_hash":"ab","checkpoint_seq":5,"checkpoint_at":null,"first_broken":3,"problem":"its hash does not match its contents"}"#,
        );
        assert_eq!(
            broken(&at_3).as_deref(),
            Some(
                "the audit log of tenant demo is broken at entry 3: its hash does not match its \
                 contents"
            )
        );
        let named = verification(
            r#"{"tenant":"demo","ok":false,"entries":5,"head_seq":5,"head_hash":"ab","checkpoint_seq":5,"checkpoint_at":null,"first_broken":3,"problem":"entry 3: its prev_hash is not the hash of entry 2"}"#,
        );
        assert_eq!(
            broken(&named).as_deref(),
            Some(
                "the audit log of tenant demo is broken at entry 3: its prev_hash is not the \
                 hash of entry 2"
            )
        );
        let short = verification(
            r#"{"tenant":"demo","ok":false,"entries":4,"head_seq":4,"head_hash":"ab","checkpoint_seq":5,"checkpoint_at":null,"first_broken":null,"problem":null}"#,
        );
        assert_eq!(
            broken(&short).as_deref(),
            Some("the audit log of tenant demo does not verify: the broker gave no reason")
        );
    }
}
