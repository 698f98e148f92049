//! `lr log`: the audit log read page after page as a table or JSON, its filters as query
//! parameters, following it as it grows (and while the broker is away), a command's output, the
//! chain's verification and its exit codes, refusals.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::fake_audit::{AUDIT_PAGE, OUTPUT, OUTPUT_REF};
use crate::fake_broker::{FakeBroker, VIEWER_TOKEN};
use crate::{Lr, RUN_LIMIT, Run};

/// The query pairs of every `GET /api/v1/audit`, in order.
fn audit_queries(broker: &FakeBroker) -> Vec<Vec<(String, String)>> {
    broker
        .uris()
        .into_iter()
        .filter_map(|uri| {
            let query = uri.strip_prefix("/api/v1/audit")?;
            let query = query.strip_prefix('?').unwrap_or(query);
            if query.starts_with('/') {
                return None;
            }
            let url = reqwest::Url::parse(&format!("http://x/?{query}")).unwrap();
            Some(url.query_pairs().into_owned().collect())
        })
        .collect()
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn seqs(entries: &serde_json::Value) -> Vec<u64> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_is_read_page_after_page_into_one_table() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker).run(&["log"]).await;
    run.assert_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    // Borders, the header and its separator, five rows.
    assert_eq!(lines.len(), 9, "{}", run.stdout);
    for name in ["seq", "at", "kind", "user", "device", "session", "summary"] {
        assert!(lines[1].contains(name), "{}", lines[1]);
    }
    let rows = &lines[3..8];
    for (row, (seq, kind)) in rows.iter().zip([
        ("1", "session_opened"),
        ("2", "command_submitted"),
        ("3", "command_finished"),
        ("4", "refused"),
        ("5", "session_ended"),
    ]) {
        let cells: Vec<&str> = row
            .split(['│', '┆'])
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(cells[0], seq, "{row}");
        assert_eq!(cells[2], kind, "{row}");
    }
    assert!(rows[0].contains("2025-06-01T10:00:00Z"), "{}", rows[0]);
    assert!(
        rows[2].contains("dir -path /tmp · state=completed"),
        "{}",
        rows[2]
    );
    assert!(
        rows[3]
            .contains("request=POST /api/v1/sessions · reason=this needs the role responder-basic"),
        "{}",
        rows[3]
    );
    assert!(rows[4].contains("(platform)"), "{}", rows[4]);
    assert!(run.stderr.is_empty(), "{run:?}");

    // Every page, each after the `next` of the one before.
    let asked = audit_queries(&broker);
    assert_eq!(asked.len(), 5_usize.div_ceil(AUDIT_PAGE), "{asked:?}");
    let afters: Vec<Option<&str>> = asked.iter().map(|q| value(q, "after")).collect();
    assert_eq!(afters, [None, Some("cur-2"), Some("cur-4")]);
    assert!(asked.iter().all(|q| value(q, "limit") == Some("1000")));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_is_the_entries_as_the_broker_sent_them() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker).run(&["log", "--output", "json"]).await;
    let entries = run.assert_code(0).json();
    assert_eq!(seqs(&entries), [1, 2, 3, 4, 5]);
    let third = &entries[2];
    assert_eq!(third["kind"], "command_finished");
    assert_eq!(third["output_ref"], OUTPUT_REF);
    assert_eq!(third["details"]["duration_ms"], 12);
    assert_eq!(entries[4]["user"], serde_json::Value::Null);
    assert_eq!(entries[1]["prev_hash"], entries[0]["hash"]);

    // --limit: the oldest N, and no word of a cut the user asked for.
    let run = Lr::at(&broker)
        .run(&["log", "--limit", "3", "-o", "json"])
        .await;
    assert_eq!(seqs(&run.assert_code(0).json()), [1, 2, 3]);
    assert!(run.stderr.is_empty(), "{run:?}");
    let last = audit_queries(&broker);
    assert_eq!(value(last.last().unwrap(), "limit"), Some("3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_are_sent_as_query_parameters() {
    let broker = FakeBroker::http().await;
    let before = api_model::Timestamp::now();
    let run = Lr::at(&broker)
        .run(&[
            "log",
            "--device",
            "web-07",
            "--user",
            "analyst-b",
            "--session",
            "s-1",
            "--kind",
            "command_finished",
            "--since",
            "2025-06-01T12:00:05+02:00",
            "--until",
            "2h",
            "-o",
            "json",
        ])
        .await;
    let entries = run.assert_code(0).json();
    assert_eq!(seqs(&entries), [3], "{run:?}");
    let asked = audit_queries(&broker);
    assert_eq!(asked.len(), 1, "{asked:?}");
    let query = &asked[0];
    for (key, expected) in [
        ("device", "web-07"),
        ("user", "analyst-b"),
        ("session", "s-1"),
        ("kind", "command_finished"),
        ("since", "2025-06-01T10:00:05Z"),
    ] {
        assert_eq!(value(query, key), Some(expected), "{key}: {query:?}");
    }
    // Two hours before the run, as RFC 3339.
    let until: api_model::Timestamp = value(query, "until").unwrap().parse().unwrap();
    let ago = before.as_second() - until.as_second();
    assert!((7195..=7200).contains(&ago), "{ago} s before");

    // Another tenant, for a platform admin: its own log, here empty.
    let run = Lr::at(&broker).run(&["--tenant", "acme", "log"]).await;
    assert_eq!(run.assert_code(0).stdout, "(none)\n");
    assert_eq!(
        broker.tenant_headers().last(),
        Some(&Some("acme".to_owned()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mistakes_are_usage_errors_and_nothing_is_sent() {
    let broker = FakeBroker::http().await;
    for (args, said) in [
        (
            &["log", "--since", "yesterday"][..],
            "'yesterday' is not a time: give an RFC 3339 time",
        ),
        (
            &["log", "--kind", "comand_finished"],
            "a similar value exists: 'command_finished'",
        ),
        (
            &["log", "--device", "web 07"],
            "invalid device id \"web 07\"",
        ),
        (
            &["log", "--follow", "--limit", "5"],
            "'--follow' cannot be used with",
        ),
        (
            &["log", "--since", "1h", "--until", "2h"],
            "is not before --until",
        ),
        (&["log", "output", ""], "a value is required"),
    ] {
        let run = Lr::at(&broker).run(args).await;
        run.assert_code(2);
        assert!(run.stderr.contains(said), "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
    assert!(broker.requests().is_empty(), "{:?}", broker.requests());
}

/// Runs `lr` until its stdout satisfies `done`, then presses Ctrl+C.
async fn follow_until(lr: &mut Lr, args: &[&str], done: impl Fn(&str) -> bool) -> Run {
    let mut child = lr.spawn(args);
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf).await
                && n > 0
            {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let reached = testkit::wait_until(Duration::from_secs(30), || {
        let now = done(&String::from_utf8_lossy(&seen.lock().unwrap()));
        async move { now }
    })
    .await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let status = tokio::time::timeout(RUN_LIMIT, child.wait())
        .await
        .expect("lr did not end after Ctrl+C")
        .unwrap();
    reader.await.unwrap();
    let stderr = errors.await.unwrap();
    let stdout = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    };
    assert!(reached && killed.success(), "never done: {run:?}");
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_prints_entries_as_they_are_written() {
    let broker = FakeBroker::http().await;
    // The first read and the first poll find five entries; the second poll finds a sixth.
    broker.audit().grow_after_ends(2);
    let run = follow_until(
        &mut Lr::at(&broker),
        &["log", "--follow", "--output", "json"],
        |out| out.contains(r#""seq":6"#),
    )
    .await;
    run.assert_code(0);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON entry per line"))
        .collect();
    let seqs: Vec<u64> = lines.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "each entry once, in order");
    assert_eq!(lines[5]["kind"], "admin_changed");
    assert!(run.stderr.is_empty(), "{run:?}");

    // Polls start from the last cursor the broker gave.
    let asked = audit_queries(&broker);
    assert!(asked.len() >= 5, "{asked:?}");
    let afters: Vec<Option<&str>> = asked.iter().map(|q| value(q, "after")).collect();
    assert_eq!(afters[..3], [None, Some("cur-2"), Some("cur-4")]);
    assert!(
        afters[3..].iter().all(|a| *a == Some("cur-4")),
        "{afters:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_waits_out_a_broker_that_does_not_answer() {
    let broker = FakeBroker::http().await;
    // After the first read, four lists answer 503: more than one poll's attempts, which
    // `lr_console::api::ATTEMPTS_PER_NODE` bounds; the poll after finds a sixth entry.
    broker
        .audit()
        .unavailable_after_ends(1, lr_console::api::ATTEMPTS_PER_NODE + 1);
    broker.audit().grow_after_ends(1);
    let run = follow_until(&mut Lr::at(&broker), &["log", "-f"], |out| {
        out.contains("admin_changed")
    })
    .await;
    run.assert_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "a header and six entries: {}", run.stdout);
    assert!(lines[0].starts_with("  seq  at "), "{}", lines[0]);
    assert!(
        lines[6].starts_with("    6  2025-06-01T11:30:00Z  admin_changed "),
        "{}",
        lines[6]
    );
    assert!(lines[6].contains("action=create_token"), "{}", lines[6]);
    let said: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        said,
        [
            "lr: no quorum: the cluster is electing a leader; asking again until it answers \
             (Ctrl+C to stop)",
            "lr: the broker answers again; following the log",
        ],
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_printed_as_is() {
    let broker = FakeBroker::http().await;
    for format in ["table", "json"] {
        let run = Lr::at(&broker)
            .run(&["log", "output", OUTPUT_REF, "--output", format])
            .await;
        assert_eq!(run.assert_code(0).stdout, OUTPUT, "{format}");
        assert!(run.stderr.is_empty(), "{run:?}");
    }
    assert!(broker.saw(&format!("GET /api/v1/audit/output/{OUTPUT_REF}")));

    let run = Lr::at(&broker).run(&["log", "output", "out-9"]).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("lr: no command output out-9"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("lr: hint: REF is the output_ref of a command_finished entry"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_say_why_and_exit_3() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .env("LR_TOKEN", VIEWER_TOKEN)
        .run(&["log", "output", OUTPUT_REF])
        .await;
    run.assert_code(3);
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            "lr: the output of command c-2 on web-07 needs a role that can run dir there; \
             analyst-v holds: viewer",
            "lr: hint: a command's output is shown only to users whose roles could have run that \
             command on that device; `lr whoami` lists yours",
        ]
    );

    let run = Lr::at(&broker)
        .env("LR_TOKEN", VIEWER_TOKEN)
        .run(&["log", "verify"])
        .await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("this needs the role tenant-admin"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_exits_0_when_the_chain_holds_and_1_when_it_is_broken() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker).run(&["log", "verify"]).await;
    run.assert_code(0);
    let rows: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .map(|line| {
            line.split(['│', '┆'])
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .filter(|cells: &Vec<&str>| cells.len() == 2)
        .collect();
    assert_eq!(
        rows,
        [
            vec!["key", "value"],
            vec!["ok", "true"],
            vec!["entries", "5"],
            vec!["first_seq", "1"],
            vec!["head_seq", "5"],
            vec!["checkpoint_seq", "5"],
            vec!["checkpoint_at", "2025-06-01T11:00:01Z"],
        ],
        "{}",
        run.stdout
    );
    assert!(run.stderr.is_empty(), "{run:?}");
    let run = Lr::at(&broker).run(&["log", "verify", "-o", "json"]).await;
    let verification = run.assert_code(0).json();
    assert_eq!(verification["ok"], true);
    assert_eq!(verification["tenant"], "demo");

    broker.audit().tamper(3);
    let broken_line = "lr: the audit log of tenant demo is broken at entry 3: its hash does \
                       not match its contents";
    let run = Lr::at(&broker).run(&["log", "verify"]).await;
    run.assert_code(1);
    assert!(run.stdout.contains("first_broken"), "{run:?}");
    assert!(
        run.stdout.contains("its hash does not match its contents"),
        "{run:?}"
    );
    assert_eq!(run.stderr.trim_end(), broken_line);
    let run = Lr::at(&broker).run(&["log", "verify", "-o", "json"]).await;
    let verification = run.assert_code(1).json();
    assert_eq!(verification["ok"], false);
    assert_eq!(verification["first_broken"], 3);
    assert_eq!(run.stderr.trim_end(), broken_line);
}
