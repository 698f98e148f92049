//! Only a live lease reaches an agent. Orders forged by a client with broker-level NATS access but
//! no lease and no key are dropped by the device's node or refused by the agent, and logged; none
//! runs, and the next real session on the device works. A getfile outlives its session until
//! another session takes the device.

mod common;

use std::path::Path;
use std::time::Duration;

use agent::testing;
use agent_proto::agent::command_result::Status;
use agent_proto::agent::order_body::Action;
use agent_proto::agent::{ChunkRequest, CommandRequest, GetTicket, Order};
use agent_proto::bus::envelope::Body;
use agent_proto::bus::transfer_event::Event;
use broker::bus;
use broker::orders::Signer;
use common::Stack;
use futures::StreamExt;
use grants::{AuthorityKey, Grant, SessionKey, SignedGrant};
use reqwest::StatusCode;

const TOKEN: &str = "token-a";

/// Publishes `body` on the device's command subject as a broker would; the node's answer.
async fn forge(nats: &async_nats::Client, tenant_in_envelope: &str, body: Body) -> Option<Body> {
    let subject = bus::device_cmd("demo", "web-07");
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        nats.request(subject, bus::encode(tenant_in_envelope, body)),
    )
    .await
    .ok()?
    .ok()?;
    let envelope = <agent_proto::bus::Envelope as prost::Message>::decode(reply.payload).unwrap();
    envelope.body
}

fn refused(answer: &Option<Body>) -> String {
    match answer {
        Some(Body::Ack(ack)) if !broker::wire::accepted(ack) => ack.error.clone(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn command(session: &str, id: &str, token: u64, name: &str) -> Action {
    Action::Command(CommandRequest {
        command_id: id.into(),
        session_id: session.into(),
        token,
        command: name.into(),
        cwd: "/".into(),
        timeout_ms: 60_000,
        ..CommandRequest::default()
    })
}

/// A grant the attacker signs with a key of their own, for whatever they claim.
fn rogue_grant(dir: &Path, session: &str, token: u64, key: &SessionKey) -> SignedGrant {
    let rogue = AuthorityKey::from_pem_file(&pki::ensure_authority_key(dir).unwrap()).unwrap();
    rogue.sign(&Grant {
        tenant: "demo".into(),
        device: "web-07".into(),
        session: session.into(),
        user: "intruder".into(),
        token,
        issued_at_ms: 0,
        expires_at_ms: u64::MAX,
        session_key: key.public(),
    })
}

fn grant_of(order: &Order) -> SignedGrant {
    let g = order.grant.clone().unwrap();
    SignedGrant {
        body: g.body,
        signature: g.signature,
        key_id: g.key_id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_orders_do_not_run_are_logged_and_the_device_stays_usable() {
    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.start_agent("demo", "db-01", "db-01", &[2]).await;
    stack.wait_online(TOKEN, "web-07", Some(3)).await;
    stack.wait_online(TOKEN, "db-01", Some(2)).await;
    let nats = stack.nats_as_broker(1).await;

    // A real session, whose orders the attacker watches on the bus.
    let mut watch = nats
        .subscribe(bus::device_cmd("demo", "web-07"))
        .await
        .unwrap();
    let (status, opened) = stack.open(1, TOKEN, "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let session = opened["session_id"].as_str().unwrap().to_string();
    let token = opened["token"].as_u64().unwrap();
    assert_eq!(
        stack.run(1, TOKEN, &session, "dir").await["state"],
        "completed"
    );
    let copied = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap()
            .unwrap();
        if let Ok((_, Body::Order(order))) = bus::decode(&message) {
            break order;
        }
    };
    // Another device's live token.
    let (status, other) = stack.open(1, "token-b", "db-01").await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let other_token = other["token"].as_u64().unwrap();

    let keys = stack.path().join("rogue");
    let forged = |session: &str, token: u64, action: Action| {
        let key = SessionKey::generate().unwrap();
        let grant = rogue_grant(&keys, session, token, &key);
        Body::Order(Signer::new(key, grant).sign(action))
    };

    // Dropped by the device's node: a token above any granted, a stale one, another device's.
    let high = forge(
        &nats,
        "demo",
        forged(
            "forged",
            u64::MAX,
            command("forged", "max-1", u64::MAX, "dir"),
        ),
    )
    .await;
    assert!(
        refused(&high).contains("not the device's current lease"),
        "{high:?}"
    );
    let stale = forge(
        &nats,
        "demo",
        forged(
            &session,
            token - 1,
            command(&session, "stale-1", token - 1, "dir"),
        ),
    )
    .await;
    refused(&stale);
    let foreign = forge(
        &nats,
        "demo",
        forged(
            "x",
            other_token,
            command("x", "foreign-1", other_token, "dir"),
        ),
    )
    .await;
    refused(&foreign);

    // Passed on (they claim the live lease) and refused by the agent, which checks signatures: a
    // command under the copied real grant signed with the attacker's key, and a chunk request for
    // /etc/shadow under a ticket of their own.
    let mut results = nats
        .subscribe(bus::session_evt("demo", &session))
        .await
        .unwrap();
    let copy = Signer::new(SessionKey::generate().unwrap(), grant_of(&copied));
    let answer = forge(
        &nats,
        "demo",
        Body::Order(copy.sign(command(&session, "copied-1", token, "dir"))),
    )
    .await;
    assert!(
        matches!(&answer, Some(Body::Ack(a)) if broker::wire::accepted(a)),
        "{answer:?}"
    );
    let result = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), results.next())
            .await
            .expect("the agent did not answer the copied grant's command")
            .unwrap();
        if let Ok((_, Body::Result(r))) = bus::decode(&message)
            && r.command_id == "copied-1"
        {
            break r;
        }
    };
    assert_eq!(result.status(), Status::Unauthorized, "{result:?}");
    assert_eq!(result.output_json, "");

    let mut events = nats
        .subscribe(bus::transfer_evt("demo", "shadow-1"))
        .await
        .unwrap();
    let ticket = Action::Get(GetTicket {
        transfer_id: "shadow-1".into(),
        session_id: session.clone(),
        token,
        path: "/etc/shadow".into(),
        size: 1,
        sha256: "00".repeat(32),
        chunk_size: 262_144,
    });
    let Body::Order(ticket) = forged(&session, token, ticket) else {
        unreachable!()
    };
    let request = Body::ChunkRequest(ChunkRequest {
        ticket: Some(ticket),
        first_index: 0,
        count: 1,
    });
    forge(&nats, "demo", request).await;
    let ended = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the agent did not answer the forged ticket")
            .unwrap();
        match bus::decode(&message).unwrap().1 {
            Body::TransferEvent(e) => match e.event {
                Some(Event::Ended(ended)) => break ended,
                other => panic!("a forged ticket got {other:?}"),
            },
            _ => continue,
        }
    };
    assert_eq!(ended.status(), Status::Unauthorized, "{ended:?}");

    // An envelope whose tenant differs from its subject's is dropped unanswered.
    let cross = forged(&session, token, command(&session, "cross-1", token, "dir"));
    assert!(forge(&nats, "acme", cross).await.is_none());

    // Logged by the device's node, with the claimed token.
    let log = stack.log(3);
    assert!(
        log.contains("dropped an order that the device's lease does not back")
            && log.contains(&u64::MAX.to_string()),
        "{log}"
    );
    // And on record in the tenant's audit log.
    let (_, refused) = stack
        .get(
            1,
            TOKEN,
            &format!("/api/v1/audit?kind=refused&session={session}"),
        )
        .await;
    assert!(
        refused["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["details"]["order"] == "stale-1" && e["device"] == "web-07"),
        "{refused}"
    );

    // The device was not bricked: the next real session works.
    let (status, _) = stack
        .delete(1, TOKEN, &format!("/api/v1/sessions/{session}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, next) = stack.open(2, TOKEN, "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{next}");
    let next = next["session_id"].as_str().unwrap().to_string();
    let done = stack.run(2, TOKEN, &next, "dir").await;
    assert_eq!(done["state"], "completed", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_getfile_outlives_its_session_until_another_session_takes_the_device() {
    let settings = "[transfers]\nchunk_size = 262144\nwindow_chunks = 4\n";
    let mut stack = Stack::start(3, settings).await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online(TOKEN, "web-07", Some(3)).await;
    let dir = stack.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();

    // Its session ends mid-transfer: the transfer completes.
    let (_, opened) = stack.open(1, TOKEN, "web-07").await;
    let session = opened["session_id"].as_str().unwrap().to_string();
    let path = dir.join("first.bin");
    std::fs::write(&path, vec![7u8; 20 * 262_144]).unwrap();
    testing::delay_chunks(&path, Duration::from_millis(30));
    let id = getfile(&stack, &session, &path).await;
    let (status, _) = stack
        .delete(1, TOKEN, &format!("/api/v1/sessions/{session}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    testing::delay_chunks(&path, Duration::ZERO);
    let done = stack.transfer_finished(1, TOKEN, &id).await;
    assert_eq!(done["state"], "completed", "{done}");

    // Another session takes the device mid-transfer: the transfer fails, saying so.
    let (_, opened) = stack.open(1, TOKEN, "web-07").await;
    let session = opened["session_id"].as_str().unwrap().to_string();
    let path = dir.join("second.bin");
    std::fs::write(&path, vec![9u8; 40 * 262_144]).unwrap();
    testing::delay_chunks(&path, Duration::from_millis(100));
    let id = getfile(&stack, &session, &path).await;
    stack
        .delete(1, TOKEN, &format!("/api/v1/sessions/{session}"))
        .await;
    let (status, newer) = stack.open(2, "token-b", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{newer}");
    let newer = newer["session_id"].as_str().unwrap().to_string();
    // The newer session's first command carries its token to the agent, too.
    assert_eq!(
        stack.run(2, "token-b", &newer, "dir").await["state"],
        "completed"
    );
    let done = stack.transfer_finished(1, TOKEN, &id).await;
    testing::delay_chunks(&path, Duration::ZERO);
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("newer session"),
        "{done}"
    );
}

async fn getfile(stack: &Stack, session: &str, path: &Path) -> String {
    let line = format!("getfile {} -auto", path.display());
    let command = stack.run(1, TOKEN, session, &line).await;
    assert_eq!(command["state"], "completed", "{command}");
    command["output"]["transfer_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A rotation of the lease authority's key, with real brokers: the agent trusts the old and the
/// new key, the brokers other than the session's restart one by one with the new key, and the
/// session's commands go on running while its lease is renewed (every second here) under grants
/// of either key, whichever node leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_keeps_a_live_session_working() {
    let mut stack = Stack::start(3, "[sessions]\nlease_ttl_ms = 3000\n").await;
    let rotated = pki::ensure_authority_key(&stack.path().join("rotated")).unwrap();
    let public = AuthorityKey::from_pem_file(&rotated).unwrap().public();
    stack.trusted_keys.push(public.to_string());
    stack.start_agent("demo", "web-07", "web-07", &[1]).await;
    stack.wait_online(TOKEN, "web-07", Some(1)).await;
    let (status, opened) = stack.open(1, TOKEN, "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let session = opened["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        stack.run(1, TOKEN, &session, "dir").await["state"],
        "completed"
    );

    let old = stack
        .certs
        .join(pki::AUTHORITY_KEY_FILE)
        .display()
        .to_string();
    for id in [2, 3] {
        let config = stack.brokers[&id].config.clone();
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replace(&old, &rotated.display().to_string())).unwrap();
        stack.kill(id);
        stack.spawn_broker(id);
        stack.wait_healthy(id).await;
        // Past a few renewals of the session's lease.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let done = stack.run(1, TOKEN, &session, "dir").await;
        assert_eq!(
            done["state"], "completed",
            "after broker {id} rotated: {done}"
        );
    }
}
