//! Signed orders end to end: a real `agent::run` obeys only orders signed by a session under a
//! grant of a lease authority it trusts, answers forgeries `UNAUTHORIZED`, and a forgery never
//! raises its fencing token.

mod common;

use std::sync::Arc;

use agent_proto::agent::command_result::Status as Pb;
use agent_proto::agent::{ChunkRequest, CommandRequest, GetTicket, Order, PutOffer, order_body};
use common::*;
use grants::{Grant, SessionKey};

fn command_body(
    id: &str,
    session: &str,
    token: u64,
    command: &str,
    args: &[&str],
) -> order_body::Action {
    order_body::Action::Command(CommandRequest {
        command_id: id.into(),
        session_id: session.into(),
        token,
        command: command.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        cwd: "/".into(),
        timeout_ms: 0,
    })
}

/// Asserts `order` is answered UNAUTHORIZED, its error containing `why`.
async fn refused(conn: &mut Conn, order: Order, id: &str, why: &str) {
    conn.order(order).await;
    let r = conn.result().await;
    assert_eq!(r.command_id, id);
    assert_eq!(status(&r), Pb::Unauthorized, "{}", r.error);
    assert!(r.error.contains(why), "{why:?} not in {:?}", r.error);
    assert!(r.error.contains("nothing was done"), "{}", r.error);
    assert!(r.output_json.is_empty());
}

/// The highest token the agent announces once its stream is broken and it reconnects.
async fn highest_after_reconnect(broker: &mut TestBroker, conn: Conn) -> (Conn, u64) {
    drop(conn);
    let conn = broker.accept().await;
    let highest = conn.hello.highest_token;
    (conn, highest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_command_with_the_highest_token_neither_runs_nor_bricks_the_device() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    let mut conn = broker.accept().await;
    assert_eq!(conn.hello.highest_token, 0);

    // No grant at all, and no signature.
    let mut bare = sign_order(
        None,
        &SessionKey::generate().unwrap(),
        now_ms(),
        command_body("forged-1", SESSION, u64::MAX, "help", &[]),
    );
    bare.signature.clear();
    refused(&mut conn, bare, "forged-1", "carries no grant").await;
    // A grant the attacker's own "authority" signed, for this device and token u64::MAX.
    let attacker = Signer::new(Arc::new(authority_key()));
    refused(
        &mut conn,
        attacker.command("forged-2", u64::MAX, "help", &[], "/"),
        "forged-2",
        "which this agent does not trust",
    )
    .await;

    // The real session, with an ordinary token, still runs.
    conn.command("real-1", 3, "help", &[], "/").await;
    let r = conn.result().await;
    assert_eq!(status(&r), Pb::Ok, "{}", r.error);
    let (conn, highest) = highest_after_reconnect(&mut broker, conn).await;
    assert_eq!(highest, 3, "the forged token never reached the fence");

    // A refused id was not remembered: signed for real, it runs.
    let mut conn = conn;
    conn.command("forged-2", 3, "help", &[], "/").await;
    assert_eq!(status(&conn.result().await), Pb::Ok);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_grant_copied_onto_an_order_signed_by_another_key_does_not_run() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    let mut conn = broker.accept().await;

    // A real grant, seen on the wire (token 5), put on the attacker's own command.
    let real_grant = conn.signer.sign_grant(&conn.signer.grant(5));
    let attacker = SessionKey::generate().unwrap();
    let copied = sign_order(
        Some(real_grant.clone()),
        &attacker,
        now_ms(),
        command_body("stolen-1", SESSION, 5, "processes", &[]),
    );
    refused(
        &mut conn,
        copied,
        "stolen-1",
        "not signed with the key its grant gives session session-1",
    )
    .await;
    // The same, claiming a higher token than the grant's.
    let higher = sign_order(
        Some(real_grant),
        &attacker,
        now_ms(),
        command_body("stolen-2", SESSION, u64::MAX, "processes", &[]),
    );
    refused(&mut conn, higher, "stolen-2", "not signed with the key").await;
    // The real session's own key signing a token its grant does not give.
    let own = sign_order(
        Some(conn.signer.sign_grant(&conn.signer.grant(5))),
        &conn.signer.session_key,
        now_ms(),
        command_body("stolen-3", SESSION, 6, "help", &[]),
    );
    refused(
        &mut conn,
        own,
        "stolen-3",
        "claims fencing token 6 but its grant gives token 5",
    )
    .await;

    let (mut conn, highest) = highest_after_reconnect(&mut broker, conn).await;
    assert_eq!(highest, 0);
    conn.command("real-1", 2, "help", &[], "/").await;
    assert_eq!(status(&conn.result().await), Pb::Ok);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_stamped_after_its_grant_expired_does_not_run() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    let mut conn = broker.accept().await;

    let now = now_ms();
    let lapsed = Grant {
        issued_at_ms: now - 60_000,
        expires_at_ms: now - 30_000,
        ..conn.signer.grant(4)
    };
    let order = sign_order(
        Some(conn.signer.sign_grant(&lapsed)),
        &conn.signer.session_key,
        now,
        command_body("late-1", SESSION, 4, "help", &[]),
    );
    refused(
        &mut conn,
        order,
        "late-1",
        "the session's lease has run out",
    )
    .await;
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_request_under_a_forged_ticket_sends_nothing() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    let mut conn = broker.accept().await;
    let shadow = GetWindow {
        transfer_id: "t-shadow".into(),
        token: u64::MAX,
        path: "/etc/shadow".into(),
        size: 1,
        sha256: "00".repeat(32),
        chunk_size: 64 * 1024,
        first_index: 0,
        count: 64,
    };

    // A ticket under the attacker's own authority.
    let attacker = Signer::new(Arc::new(authority_key()));
    conn.send_chunk_request(attacker.chunk_request(shadow.clone()))
        .await;
    let end = conn.transfer_ended().await;
    assert_eq!(end.transfer_id, "t-shadow");
    assert_eq!(
        Pb::try_from(end.status).unwrap(),
        Pb::Unauthorized,
        "{}",
        end.error
    );
    assert!(end.error.contains("does not trust"), "{}", end.error);

    // A real grant with the attacker's ticket.
    let ticket = sign_order(
        Some(conn.signer.sign_grant(&conn.signer.grant(7))),
        &SessionKey::generate().unwrap(),
        now_ms(),
        order_body::Action::Get(GetTicket {
            transfer_id: "t-shadow-2".into(),
            session_id: SESSION.into(),
            token: 7,
            path: "/etc/shadow".into(),
            size: 1,
            sha256: "00".repeat(32),
            chunk_size: 64 * 1024,
        }),
    );
    conn.send_chunk_request(ChunkRequest {
        ticket: Some(ticket),
        first_index: 0,
        count: 64,
    })
    .await;
    let end = conn.transfer_ended().await;
    assert_eq!(end.transfer_id, "t-shadow-2");
    assert_eq!(Pb::try_from(end.status).unwrap(), Pb::Unauthorized);

    // A command ticket, well signed, is no getfile ticket and runs nothing.
    conn.send_chunk_request(ChunkRequest {
        ticket: Some(conn.signer.command("in-a-ticket", 1, "help", &[], "/")),
        first_index: 0,
        count: 1,
    })
    .await;

    // Nothing else came: the next message is this command's result, and no token was raised.
    conn.command("real-1", 1, "help", &[], "/").await;
    let r = conn.result().await;
    assert_eq!((r.command_id.as_str(), status(&r)), ("real-1", Pb::Ok));
    let (conn, highest) = highest_after_reconnect(&mut broker, conn).await;
    assert_eq!(highest, 1);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_put_offer_writes_nothing() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, state_dir) = tempdir();
    let agent = RunningAgent::start(agent_config(&pki, &[broker.addr], &state_dir));
    let mut conn = broker.accept().await;

    let attacker = Signer::new(Arc::new(authority_key()));
    let offer = PutOffer {
        transfer_id: "p-evil".into(),
        session_id: SESSION.into(),
        token: u64::MAX,
        name: "implant".into(),
        size: 4,
        sha256: "00".repeat(32),
        chunk_size: 64 * 1024,
        keep: true,
        overwrite: true,
    };
    conn.order(attacker.put_offer(offer)).await;
    let end = conn.transfer_ended().await;
    assert_eq!(end.transfer_id, "p-evil");
    assert_eq!(Pb::try_from(end.status).unwrap(), Pb::Unauthorized);
    assert!(end.error.contains("does not trust"), "{}", end.error);
    assert!(!state_dir.join("work/.partial/p-evil").exists());
    let (conn, highest) = highest_after_reconnect(&mut broker, conn).await;
    assert_eq!(highest, 0);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_cancel_stops_nothing() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    let (_tree, root) = big_tree();
    let mut conn = broker.accept().await;

    let args = ["*.nothing", "-path", &path_str(&root)];
    conn.command("find-1", 1, "findfile", &args, "/").await;
    // Right after, as the real cancel in link.rs is: it would find the walk running.
    let attacker = Signer::new(Arc::new(authority_key()));
    conn.order(attacker.cancel("find-1", 1)).await;
    let r = conn.result().await;
    assert_eq!(r.command_id, "find-1");
    assert_eq!(status(&r), Pb::Ok, "{}", r.error);
    assert_eq!(output(&r)["scanned_dirs"], 10_101);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_key_rotation_orders_under_grants_of_either_key_run() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let new_key = Signer::new(Arc::new(authority_key()));
    let (_state, state_dir) = tempdir();
    let mut config = agent_config(&pki, &[broker.addr], &state_dir);
    config
        .authority_keys
        .push(new_key.authority.public().to_string());
    let agent = RunningAgent::start(config);
    let mut conn = broker.accept().await;

    conn.command("old-key", 1, "help", &[], "/").await;
    assert_eq!(status(&conn.result().await), Pb::Ok);
    conn.order(new_key.command("new-key", 2, "help", &[], "/"))
        .await;
    let r = conn.result().await;
    assert_eq!(
        (r.command_id.as_str(), status(&r)),
        ("new-key", Pb::Ok),
        "{}",
        r.error
    );
    // A third key is still nobody's.
    let stranger = Signer::new(Arc::new(authority_key()));
    refused(
        &mut conn,
        stranger.command("third-key", 2, "help", &[], "/"),
        "third-key",
        "does not trust",
    )
    .await;
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}
