//! `lr connect` fed from a pipe: each line is read against the command table, runs here or on the
//! device, and the session is closed at the end.

use crate::Lr;
use crate::fake_broker::FakeBroker;

#[tokio::test(flavor = "multi_thread")]
async fn lines_run_in_order_and_the_session_is_closed() {
    let broker = FakeBroker::http().await;
    let mut lr = Lr::at(&broker);
    let out = lr.home().join("procs.json");
    let script = format!(
        "cd /var/log\n\ndir\nfileinfo /nope\nbogus\nprocesses -output json > {}\ncls\nexit\ndir\n",
        out.display()
    );
    let run = lr.stdin(&script).run(&["connect", "web-07"]).await;
    run.assert_code(0);
    assert_eq!(
        broker.command_lines(),
        [
            "cd -path /var/log",
            "dir",
            "fileinfo -path /nope",
            "processes"
        ],
        "canonical lines, without what the console handles; nothing after exit runs"
    );
    assert!(run.stdout.contains("path: /var/log"), "{run:?}");
    assert!(
        run.stderr
            .contains("lr: command failed: no such file or directory: /nope"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("lr: unknown command 'bogus'"),
        "{run:?}"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(written[1]["name"], "sshd");
    assert!(
        broker.saw("DELETE /api/v1/sessions/s-1"),
        "{:?}",
        broker.requests()
    );
}

/// Mistakes are named with a suggestion and never reach the broker; the console goes on.
#[tokio::test(flavor = "multi_thread")]
async fn mistakes_are_reported_here_and_nothing_is_sent() {
    let broker = FakeBroker::http().await;
    let script =
        "proceses\ndir -pth /tmp\nfindfile\nfindfile x -max 0\ndir \"/tmp\nfindfile x &\ndir\n";
    let run = Lr::at(&broker)
        .stdin(script)
        .run(&["connect", "web-07"])
        .await;
    run.assert_code(0);
    for said in [
        "lr: unknown command 'proceses' (did you mean processes?); type help for the list of commands",
        "lr: dir has no parameter -pth (did you mean path?); usage: dir [path]",
        "lr: findfile needs <name>; usage: findfile <name>",
        "lr: -max must be a whole number of at least 1, not '0'",
        "lr: unbalanced double quote",
        "lr: findfile cannot run in the background; only transfers (getfile, download, putfile) can, remove &",
    ] {
        assert!(run.stderr.contains(said), "{said}: {run:?}");
    }
    assert_eq!(
        broker.command_lines(),
        ["dir"],
        "only the good line was sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_writes_then_appends_and_says_so() {
    let broker = FakeBroker::http().await;
    let mut lr = Lr::at(&broker);
    let out = lr.home().join("dir.txt");
    let shown = out.display();
    let script = format!("dir /tmp > {shown}\ndir /srv >> {shown}\nhelp dir >>{shown}\n");
    let run = lr.stdin(&script).run(&["connect", "web-07"]).await;
    run.assert_code(0);
    let written = std::fs::read_to_string(&out).unwrap();
    let first = written.find("path: /tmp").expect("first dir written");
    let second = written.find("path: /srv").expect("second dir appended");
    assert!(first < second, "{written}");
    assert!(written.contains("Usage: dir [path]"), "{written}");
    assert!(
        !run.stdout.contains("a.txt"),
        "nothing on the screen: {run:?}"
    );
    // Sizes in the messages add up to the file.
    let sizes: Vec<usize> = run
        .stderr
        .lines()
        .filter_map(|l| {
            let rest = l
                .strip_prefix(&format!("lr: output written to {shown} ("))
                .or_else(|| l.strip_prefix(&format!("lr: output appended to {shown} (")))?;
            rest.strip_suffix(" bytes)")?.parse().ok()
        })
        .collect();
    assert_eq!(sizes.len(), 3, "{run:?}");
    assert_eq!(sizes.iter().sum::<usize>(), written.len(), "{run:?}");
    assert_eq!(broker.command_lines(), ["dir -path /tmp", "dir -path /srv"]);
}

/// `help` is answered from the table without a round trip.
#[tokio::test(flavor = "multi_thread")]
async fn help_is_answered_here() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .stdin("help\nhelp findfile\nhelp nosuch\nhelp fileinf\nhelp -output json\n")
        .run(&["connect", "web-07"])
        .await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("Basic commands (role: responder-basic)"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("Usage: findfile <name> [-path <path>]"),
        "{run:?}"
    );
    assert!(run.stdout.contains("\"commands\": ["), "{run:?}");
    assert!(
        run.stderr
            .contains("lr: unknown command 'nosuch'; type help"),
        "{run:?}"
    );
    assert!(run.stderr.contains("(did you mean fileinfo?)"), "{run:?}");
    assert!(broker.command_lines().is_empty());
}

/// `jobs` lists this console's transfers (none here, though a command runs in the session);
/// `status` shows a command; `trace` shows the requests.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_status_and_trace() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .stdin("jobs\nstatus c-2\nstatus c-9\ntrace\ndir\ntrace\nprocesses\njobs -output json\n")
        .run(&["connect", "jobs-07"])
        .await;
    run.assert_code(0);
    // jobs: no transfer was started here.
    assert!(run.stdout.starts_with("no jobs in this console"), "{run:?}");
    // status: the command submitted elsewhere, its fields as key and value.
    assert!(
        run.stdout.contains("findfile -name *.log -path /var"),
        "{run:?}"
    );
    assert!(run.stdout.contains("running"), "{run:?}");
    assert!(run.stdout.contains("command_line"), "{run:?}");
    assert!(
        run.stderr
            .contains("lr: command c-9 not found; lr session commands s-1 lists"),
        "{run:?}"
    );
    // trace: the requests of `dir` and none of `processes`.
    assert!(
        run.stderr.contains("lr: trace: POST ")
            && run
                .stderr
                .contains(r#"/api/v1/sessions/s-1/commands {"command_line":"dir"}"#),
        "{run:?}"
    );
    assert!(run.stderr.contains("-> HTTP 202"), "{run:?}");
    assert!(run.stderr.contains("lr: trace off"), "{run:?}");
    assert!(
        !run.stderr.contains(r#"{"command_line":"processes"}"#),
        "{run:?}"
    );
    assert!(!run.stderr.contains(crate::fake_broker::TOKEN), "{run:?}");
    // jobs -output json: an empty array.
    assert!(run.stdout.trim_end().ends_with("[]"), "{run:?}");
    assert_eq!(broker.command_lines()[1..], ["dir", "processes"]);
    assert!(broker.saw("GET /api/v1/sessions/s-1/commands/c-2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn end_of_input_closes_the_session() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .stdin("dir\n")
        .run(&["connect", "web-07"])
        .await;
    run.assert_code(0);
    assert!(broker.saw("DELETE /api/v1/sessions/s-1"));
    assert_eq!(broker.open_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connect_exits_3() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .stdin("dir\n")
        .run(&["connect", "busy"])
        .await;
    run.assert_code(3);
    assert!(broker.command_lines().is_empty());
}
