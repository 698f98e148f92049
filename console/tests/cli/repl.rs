//! `lr connect` fed from a pipe: each line runs as a command, and the session is closed at the end.

use crate::Lr;
use crate::fake_broker::FakeBroker;

#[tokio::test(flavor = "multi_thread")]
async fn lines_run_in_order_and_the_session_is_closed() {
    let broker = FakeBroker::http().await;
    let mut lr = Lr::at(&broker);
    let out = lr.home().join("procs.json");
    let script = format!(
        "cd /var/log\n\ndir\nfail /nope\nbogus\nprocesses -output json > {}\ncls\nexit\ndir\n",
        out.display()
    );
    let run = lr.stdin(&script).run(&["connect", "web-07"]).await;
    run.assert_code(0);
    assert_eq!(
        broker.command_lines(),
        ["cd /var/log", "dir", "fail /nope", "processes"],
        "nothing after exit runs"
    );
    assert!(run.stdout.contains("path: /var/log"), "{run:?}");
    assert!(
        run.stderr.contains("lr: command failed: no such file"),
        "{run:?}"
    );
    assert!(run.stderr.contains("unknown command"), "{run:?}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(written[1]["name"], "sshd");
    assert!(
        broker.saw("DELETE /api/v1/sessions/s-1"),
        "{:?}",
        broker.requests()
    );
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
