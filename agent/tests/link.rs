//! The agent end to end: a real `agent::run` against in-test brokers over mutual TLS.

mod common;

use std::time::{Duration, Instant};

use agent_proto::agent::command_result::Status as Pb;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_command_and_heartbeats() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);

    let mut conn = broker.accept().await;
    let h = &conn.hello;
    assert_eq!(h.protocol_version, 2);
    assert_eq!(h.device_id, "web-07");
    assert_eq!(h.tenant, "demo");
    assert_eq!(h.os, "linux");
    assert_eq!(h.agent_version, agent::VERSION);
    assert!(!h.hostname.is_empty());
    for c in ["cd", "dir", "fileinfo", "findfile", "processes", "help"] {
        assert!(h.capabilities.iter().any(|x| x == c), "{c} missing");
    }
    assert_eq!(h.highest_token, 0);

    let (_files, dir) = tempdir();
    std::fs::write(dir.join("evidence.txt"), b"x").unwrap();
    conn.command("c1", 1, "dir", &[], &path_str(&dir)).await;
    let r = conn.result().await;
    assert_eq!(r.command_id, "c1");
    assert_eq!(status(&r), Pb::Ok, "{}", r.error);
    assert_eq!(r.cwd, path_str(&dir));
    assert_eq!(output(&r)["entries"][0]["name"], "evidence.txt");

    conn.command("c2", 1, "frobnicate", &[], "/").await;
    let r = conn.result().await;
    assert_eq!(status(&r), Pb::UnknownCommand);
    assert_eq!(
        r.error,
        "unknown command 'frobnicate'; run help for the list"
    );

    conn.heartbeat().await;
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_token_is_refused_and_the_highest_token_survives_a_restart() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, state_dir) = tempdir();
    let config = agent_config(&pki, &[broker.addr], &state_dir);

    let agent = RunningAgent::start(config.clone());
    let mut conn = broker.accept().await;
    conn.command("new-session", 7, "help", &[], "/").await;
    assert_eq!(status(&conn.result().await), Pb::Ok);
    conn.command("old-session", 5, "help", &[], "/").await;
    let r = conn.result().await;
    assert_eq!(status(&r), Pb::StaleToken);
    assert!(
        r.error.contains("token 5") && r.error.contains("7"),
        "{}",
        r.error
    );
    drop(conn);
    agent.stop().await;

    let agent = RunningAgent::start(config);
    let mut conn = broker.accept().await;
    assert_eq!(conn.hello.highest_token, 7);
    conn.command("old-again", 6, "help", &[], "/").await;
    assert_eq!(status(&conn.result().await), Pb::StaleToken);
    conn.command("same-token", 7, "help", &[], "/").await;
    assert_eq!(status(&conn.result().await), Pb::Ok);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_command_id_is_not_executed_twice_even_across_reconnects() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    let (_files, root) = tempdir();
    let target = root.join("case-42");
    std::fs::create_dir(&target).unwrap();

    let mut conn = broker.accept().await;
    conn.command("cd-1", 1, "cd", &["case-42"], &path_str(&root))
        .await;
    let first = conn.result().await;
    assert_eq!(status(&first), Pb::Ok, "{}", first.error);
    assert_eq!(first.cwd, path_str(&target));

    // If the command ran again it would now fail: its directory is gone.
    std::fs::remove_dir(&target).unwrap();
    conn.command("cd-1", 1, "cd", &["case-42"], &path_str(&root))
        .await;
    assert_eq!(conn.result().await, first);
    conn.command("cd-2", 1, "cd", &["case-42"], &path_str(&root))
        .await;
    assert_eq!(status(&conn.result().await), Pb::Failed);

    // The stream breaks; the broker re-sends the id on the next connection.
    drop(conn);
    let mut conn = broker.accept().await;
    conn.command("cd-1", 1, "cd", &["case-42"], &path_str(&root))
        .await;
    assert_eq!(conn.result().await, first);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_to_the_other_broker_when_one_goes_away() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut a = TestBroker::start(&pki, 1).await;
    let mut b = TestBroker::start(&pki, 2).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[a.addr, b.addr]);

    // The agent starts at a random broker; whichever it picked is the one that dies.
    let (conn, survivor, dead) = tokio::select! {
        c = a.accept() => (c, b, a),
        c = b.accept() => (c, a, b),
    };
    conn.command("before", 3, "help", &[], "/").await;
    drop(conn);
    dead.stop().await;

    let mut survivor = survivor;
    let started = Instant::now();
    let mut conn = survivor.accept().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(conn.hello.device_id, "web-07");
    conn.command("after", 3, "help", &["dir"], "/").await;
    let r = conn.result().await;
    assert_eq!(status(&r), Pb::Ok, "{}", r.error);
    assert_eq!(output(&r)["usage"], "dir [path]");
    drop(conn);
    agent.stop().await;
    survivor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_findfile_on_a_big_tree() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    let (_tree, root) = big_tree();

    let mut conn = broker.accept().await;
    conn.command(
        "find-1",
        1,
        "findfile",
        &["*.nothing", "-path", &path_str(&root)],
        "/",
    )
    .await;
    // Sent on the same stream right after: the agent handles it after starting the command.
    conn.cancel("find-1", 1).await;
    let cancelled_at = Instant::now();
    let r = conn.result().await;
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        cancelled_at.elapsed()
    );
    assert_eq!(r.command_id, "find-1");
    assert_eq!(status(&r), Pb::Cancelled, "{}", r.error);
    let partial = output(&r);
    assert!(partial["matches"].as_array().unwrap().is_empty());
    assert!(partial["scanned_dirs"].as_u64().unwrap() < 10_101);

    // The cancelled result is the id's result from now on.
    conn.command(
        "find-1",
        1,
        "findfile",
        &["*.nothing", "-path", &path_str(&root)],
        "/",
    )
    .await;
    assert_eq!(conn.result().await, r);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_outlives_its_stream_and_its_result_comes_on_the_next_one() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    let (_tree, root) = big_tree();
    std::fs::write(root.join("d50/e50/needle.txt"), b"x").unwrap();

    let conn = broker.accept().await;
    conn.command(
        "find-2",
        1,
        "findfile",
        &["needle.txt", "-path", &path_str(&root)],
        "/",
    )
    .await;
    drop(conn);
    let mut conn = broker.accept().await;
    conn.command(
        "find-2",
        1,
        "findfile",
        &["needle.txt", "-path", &path_str(&root)],
        "/",
    )
    .await;
    let r = conn.result().await;
    assert_eq!(status(&r), Pb::Ok, "{}", r.error);
    assert_eq!(
        output(&r)["matches"][0]["path"],
        path_str(&root.join("d50/e50/needle.txt"))
    );
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_identity_is_retried_with_backoff() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::refusing(
        &pki,
        tonic::Status::permission_denied(
            "hello claims device web-07 but the certificate is for db-01",
        ),
    )
    .await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    // Refused, then tried again: the agent neither gives up nor spins.
    assert_eq!(broker.refused_hello().await.device_id, "web-07");
    assert_eq!(broker.refused_hello().await.device_id, "web-07");
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_refused_before_connecting() {
    let pki = Pki::new();
    let (_state, state_dir) = tempdir();
    let mut config = agent_config(&pki, &["127.0.0.1:1".parse().unwrap()], &state_dir);
    config.tls.key = state_dir.join("missing.key");
    let err = agent::run(config, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tls.key"), "{err}");
}
