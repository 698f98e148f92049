//! `lr exec` and `lr session ...`: output, exit codes, and that sessions are always closed.

use std::time::Duration;

use crate::Lr;
use crate::fake_broker::FakeBroker;

#[tokio::test(flavor = "multi_thread")]
async fn exec_json_prints_one_document_and_closes_the_session() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .run(&["exec", "web-07", "--", "dir", "/tmp", "--output", "json"])
        .await;
    run.assert_code(0);
    let doc = run.json();
    assert_eq!(doc["state"], "completed");
    assert_eq!(doc["output"]["path"], "/tmp");
    assert_eq!(doc["command_id"], "c-2");
    assert_eq!(
        broker.command_lines(),
        ["dir -path /tmp"],
        "the broker sees the canonical line, without -output"
    );
    assert!(
        broker.saw("DELETE /api/v1/sessions/s-1"),
        "{:?}",
        broker.requests()
    );
    assert_eq!(broker.open_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_table_renders_the_output() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .run(&["exec", "web-07", "--", "dir", "/srv/my files"])
        .await;
    run.assert_code(0);
    assert!(run.stdout.starts_with("path: "), "{run:?}");
    assert!(run.stdout.contains("a.txt"), "{run:?}");
    assert_eq!(broker.command_lines(), [r#"dir -path "/srv/my files""#]);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_command_exits_1_and_still_closes_the_session() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .run(&[
            "--output", "json", "exec", "web-07", "--", "fileinfo", "/nope",
        ])
        .await;
    run.assert_code(1);
    assert_eq!(run.json()["state"], "failed");
    assert!(
        run.stderr
            .contains("lr: command failed: no such file or directory: /nope"),
        "{run:?}"
    );
    assert!(
        broker.saw("DELETE /api/v1/sessions/s-1"),
        "{:?}",
        broker.requests()
    );
}

/// A mistake in the command line is named, with a suggestion, before anything is sent.
#[tokio::test(flavor = "multi_thread")]
async fn mistakes_exit_2_and_send_nothing() {
    let broker = FakeBroker::http().await;
    for (line, said) in [
        (
            &["proceses"][..],
            "unknown command 'proceses' (did you mean processes?)",
        ),
        (
            &["dir", "-pth", "/tmp"],
            "dir has no parameter -pth (did you mean path?)",
        ),
        (
            &["findfile"],
            "findfile needs <name>; usage: findfile <name>",
        ),
        (&["findfile", "x", "-max"], "-max needs a value"),
        (
            &["findfile", "x", "-max", "none"],
            "-max must be a whole number",
        ),
        (
            &["dir", "/a", "/b"],
            "dir takes no more values, but got '/b'",
        ),
        (&["dir", "-output", "yaml"], "-output must be json or table"),
        (&["cls"], "cls runs in the interactive console"),
        (
            &["getfile", "/x", "&"],
            "& runs a transfer in the background of lr connect",
        ),
    ] {
        let mut args = vec!["exec", "web-07", "--"];
        args.extend_from_slice(line);
        let run = Lr::at(&broker).run(&args).await;
        run.assert_code(2);
        assert!(run.stderr.starts_with("lr: "), "{line:?}: {run:?}");
        assert!(run.stderr.contains(said), "{line:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{line:?}: {run:?}");
    }
    let run = Lr::at(&broker)
        .run(&["session", "run", "s-1", "--", "bogus"])
        .await;
    run.assert_code(2);
    assert!(run.stderr.contains("unknown command 'bogus'"), "{run:?}");
    assert!(broker.requests().is_empty(), "{:?}", broker.requests());
}

/// A line the table accepts but the broker refuses (here: not on this device's platform).
#[tokio::test(flavor = "multi_thread")]
async fn refused_command_line_is_usage_and_closes_the_session() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .run(&["exec", "web-07", "--", "registry"])
        .await;
    run.assert_code(2);
    assert!(run.stderr.contains("not supported on linux"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        broker.saw("DELETE /api/v1/sessions/s-1"),
        "{:?}",
        broker.requests()
    );
}

/// Ctrl+C (SIGINT) or SIGTERM while the command is being submitted or runs: cancel it, show the
/// final state, close the session.
#[tokio::test(flavor = "multi_thread")]
async fn signals_cancel_the_command_and_close_the_session() {
    for (signal, moment) in [
        // While the submission is in flight (the fake answers it slowly).
        ("-INT", "POST /api/v1/sessions/s-1/commands"),
        // While waiting for the command.
        ("-TERM", "GET /api/v1/sessions/s-1/commands/c-2"),
    ] {
        let broker = FakeBroker::http().await;
        let mut lr = Lr::at(&broker);
        let child = lr.spawn(&["exec", "web-07", "--", "findfile", "*.log"]);
        let reached =
            testkit::wait_until(Duration::from_secs(20), || async { broker.saw(moment) }).await;
        assert!(reached, "{:?}", broker.requests());
        let pid = child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let run = crate::Run::from(
            tokio::time::timeout(crate::RUN_LIMIT, child.wait_with_output())
                .await
                .expect("lr did not end after the signal")
                .unwrap(),
        );
        run.assert_code(1);
        assert!(
            run.stderr.contains("command cancelled"),
            "{signal}: {run:?}"
        );
        assert!(
            broker.saw("POST /api/v1/sessions/s-1/commands/c-2/cancel"),
            "{signal}: {:?}",
            broker.requests()
        );
        assert!(
            broker.saw("DELETE /api/v1/sessions/s-1"),
            "{signal}: {:?}",
            broker.requests()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_is_bounded_then_the_command_is_cancelled() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .run(&["exec", "web-07", "--wait", "1", "--", "findfile", "x"])
        .await;
    run.assert_code(1);
    assert!(run.stderr.contains("did not finish within 1s"), "{run:?}");
    assert!(broker.saw("POST /api/v1/sessions/s-1/commands/c-2/cancel"));
    assert!(broker.saw("DELETE /api/v1/sessions/s-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn session_open_run_close() {
    let broker = FakeBroker::http().await;
    let open = Lr::at(&broker)
        .run(&["session", "open", "web-07", "--output", "json"])
        .await;
    open.assert_code(0);
    let id = open.json()["session_id"].as_str().unwrap().to_owned();

    let plain = Lr::at(&broker).run(&["session", "open", "db-01"]).await;
    plain.assert_code(0);
    assert_eq!(plain.stdout, "s-2\n");

    let cd = Lr::at(&broker)
        .run(&["-o", "json", "session", "run", &id, "--", "cd", "/var/log"])
        .await;
    cd.assert_code(0);
    assert_eq!(cd.json()["cwd"], "/var/log");

    let show = Lr::at(&broker)
        .run(&["session", "show", &id, "--output", "json"])
        .await;
    assert_eq!(show.assert_code(0).json()["cwd"], "/var/log");

    let sessions = Lr::at(&broker).run(&["sessions"]).await;
    assert!(
        sessions.assert_code(0).stdout.contains("web-07"),
        "{sessions:?}"
    );

    let close = Lr::at(&broker)
        .run(&["session", "close", &id, "--output", "json"])
        .await;
    assert_eq!(close.assert_code(0).json()["closed"], true);

    let gone = Lr::at(&broker)
        .run(&["session", "run", &id, "--", "dir"])
        .await;
    gone.assert_code(2);
    assert!(
        gone.stderr.contains(&format!("session {id} not found")),
        "{gone:?}"
    );
}
