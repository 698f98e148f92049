//! Several API nodes: the console moves on when the node it uses dies, says so once, stays with
//! the node that answers, and when no node answers says what it tried.

use std::time::Duration;

use crate::Lr;
use crate::fake_broker::{FakeBroker, Node, file_content};

/// Waits up to 20 s for `what` to hold.
async fn until(what: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !what() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the condition did not hold in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `lr` pointed at `first`, then `broker`, then `third`.
fn three_nodes(broker: &FakeBroker, first: &Node, third: &Node) -> Lr {
    let mut lr = Lr::at(broker);
    lr.env(
        "LR_API_URL",
        &format!("{},{},{}", first.url, broker.url, third.url),
    );
    lr
}

fn moved_line(from: &Node, to: &FakeBroker) -> String {
    format!(
        "lr: API node {} is unreachable; continuing through {}",
        from.url, to.url
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_completes_when_the_first_node_dies_mid_command() {
    let broker = FakeBroker::http().await;
    let mut first = broker.node();
    let third = broker.node();
    let mut lr = three_nodes(&broker, &first, &third);
    let child = lr.spawn(&[
        "exec", "web-07", "--output", "json", "--", "findfile", "-name", "x.log", "-path", "/var",
    ]);
    // The console waits for the running command through the first node: kill it then.
    until(|| broker.saw_prefix("GET /api/v1/sessions/s-1/commands/")).await;
    first.kill();
    broker.finish_running();
    let run = crate::Run::of(child).await;
    run.assert_code(0);
    assert_eq!(run.json()["state"], "completed", "{run:?}");
    assert_eq!(
        run.stderr.matches("continuing through").count(),
        1,
        "{run:?}"
    );
    assert!(run.stderr.contains(&moved_line(&first, &broker)), "{run:?}");
    assert_eq!(broker.open_sessions(), 0, "the session is closed");
    assert_eq!(broker.sessions_opened(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_repl_moves_on_once_and_keeps_its_prompt() {
    use tokio::io::AsyncWriteExt;

    let broker = FakeBroker::http().await;
    let mut first = broker.node();
    let third = broker.node();
    let mut lr = three_nodes(&broker, &first, &third);
    lr.stdin("");
    let mut child = lr.spawn(&["connect", "web-07"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"dir\n").await.unwrap();
    until(|| broker.command_lines().len() == 1).await;
    first.kill();
    stdin
        .write_all(b"processes\ncd /tmp\nexit\n")
        .await
        .unwrap();
    drop(stdin);
    let run = crate::Run::of(child).await;
    run.assert_code(0);
    assert_eq!(
        broker.command_lines(),
        ["dir", "processes", "cd -path /tmp"],
        "{run:?}"
    );
    assert!(run.stdout.contains("sshd"), "{run:?}");
    assert_eq!(
        run.stderr.matches("continuing through").count(),
        1,
        "one line when the console moved: {run:?}"
    );
    assert!(run.stderr.contains(&moved_line(&first, &broker)), "{run:?}");
    assert_eq!(broker.open_sessions(), 0, "the session is closed");
}

/// While another node adopts the session, the API node answers `session_moving`: the REPL waits
/// on the same node, says once that the session moved, and keeps its prompt.
#[tokio::test(flavor = "multi_thread")]
async fn the_repl_says_once_that_the_session_moved_and_stays_on_its_node() {
    use tokio::io::AsyncWriteExt;

    let broker = FakeBroker::http().await;
    let first = broker.node();
    let third = broker.node();
    let mut lr = three_nodes(&broker, &first, &third);
    lr.stdin("");
    let mut child = lr.spawn(&["connect", "web-07"]);
    let mut stdin = child.stdin.take().unwrap();
    broker.set_moving(3);
    stdin
        .write_all(
            b"dir
cd /tmp
exit
",
        )
        .await
        .unwrap();
    drop(stdin);
    let run = crate::Run::of(child).await;
    run.assert_code(0);
    assert_eq!(broker.command_lines(), ["dir", "cd -path /tmp"], "{run:?}");
    assert_eq!(
        run.stderr
            .matches("lr: the session moved to another broker node; continuing")
            .count(),
        1,
        "{run:?}"
    );
    assert!(
        !run.stderr.contains("continuing through"),
        "the API node stays: {run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_resumes_from_the_next_node() {
    let broker = FakeBroker::http().await;
    let mut first = broker.node();
    let third = broker.node();
    let mut lr = three_nodes(&broker, &first, &third);
    let dir = lr.home().join("downloads");
    lr.env("LR_DOWNLOADS_DIR", dir.to_str().unwrap());
    // The first content stream is cut half-way; its node is killed before the console resumes.
    let child = lr.spawn(&["exec", "web-07", "--", "getfile", "/data/flaky.bin"]);
    until(|| !broker.content_ranges().is_empty()).await;
    first.kill();
    let run = crate::Run::of(child).await;
    run.assert_code(0);
    let content = file_content("/data/flaky.bin").unwrap();
    assert_eq!(std::fs::read(dir.join("flaky.bin")).unwrap(), content);
    let ranges = broker.content_ranges();
    assert_eq!(ranges[0], None, "{ranges:?}");
    assert!(
        ranges[1..]
            .iter()
            .all(|r| r.as_deref().is_some_and(|r| r.starts_with("bytes="))),
        "resumed with Range: {ranges:?}"
    );
    assert!(run.stderr.contains(&moved_line(&first, &broker)), "{run:?}");
    assert_eq!(broker.open_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_that_answers_is_kept() {
    let broker = FakeBroker::http().await;
    let mut first = broker.node();
    let third = broker.node();
    first.kill();
    let run = three_nodes(&broker, &first, &third)
        .run(&["exec", "web-07", "--", "dir"])
        .await;
    run.assert_code(0);
    // Open, submit, wait and close all went through the second node: the dead one was tried
    // once, by the first request.
    assert_eq!(
        broker.requests(),
        [
            "POST /api/v1/sessions",
            "POST /api/v1/sessions/s-1/commands",
            "GET /api/v1/sessions/s-1/commands/c-2",
            "DELETE /api/v1/sessions/s-1",
        ]
    );
    assert_eq!(
        run.stderr.matches("continuing through").count(),
        1,
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_url_in_the_list_is_named_and_nothing_is_sent() {
    let broker = FakeBroker::http().await;
    let mut lr = Lr::at(&broker);
    lr.env(
        "LR_API_URL",
        &format!("{},ftp://127.0.0.1:9,{}", broker.url, broker.url),
    );
    let run = lr.run(&["devices"]).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains(
            "api_url (from environment variable LR_API_URL): \"ftp://127.0.0.1:9\" is not an \
             http:// or https:// URL"
        ),
        "{run:?}"
    );
    assert!(broker.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_node_answering_says_what_was_tried_and_what_to_do() {
    let broker = FakeBroker::http().await;
    let mut nodes = [broker.node(), broker.node(), broker.node()];
    for node in &mut nodes {
        node.kill();
    }
    let mut lr = Lr::at(&broker);
    let list: Vec<&str> = nodes.iter().map(|n| n.url.as_str()).collect();
    lr.env("LR_API_URL", &list.join(","));
    let run = lr.run(&["exec", "web-07", "--", "dir"]).await;
    run.assert_code(4);
    let first_line = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first_line.starts_with("lr: no API node answered: "),
        "{run:?}"
    );
    for url in &list {
        assert!(first_line.contains(&format!("{url} (")), "{url}: {run:?}");
    }
    assert!(
        run.stderr.contains(
            "lr: hint: each of the 3 API nodes in LR_API_URL (--api-url, api_url in the config \
             file) was tried 3 times"
        ),
        "{run:?}"
    );
    assert!(broker.requests().is_empty());
}
