//! Fencing and idempotency at the protocol level: commands forged straight onto the device's NATS
//! subject, as a stale or confused broker would send them.

mod common;

use std::time::Duration;

use agent_proto::agent::CommandRequest;
use agent_proto::agent::command_result::Status;
use agent_proto::bus::envelope::Body;
use broker::bus;
use common::Stack;
use futures::StreamExt;
use reqwest::StatusCode;

async fn forge(
    nats: &async_nats::Client,
    tenant_in_envelope: &str,
    request: CommandRequest,
) -> Option<Body> {
    let subject = bus::device_cmd("demo", "web-07");
    let reply = tokio::time::timeout(
        Duration::from_secs(3),
        nats.request(
            subject,
            bus::encode(tenant_in_envelope, Body::Command(request)),
        ),
    )
    .await
    .ok()?
    .ok()?;
    let envelope = <agent_proto::bus::Envelope as prost::Message>::decode(reply.payload).unwrap();
    envelope.body
}

fn command(id: &str, token: u64, name: &str, args: &[&str]) -> CommandRequest {
    CommandRequest {
        command_id: id.into(),
        session_id: "forged".into(),
        token,
        command: name.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        cwd: "/".into(),
        timeout_ms: 60_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_tokens_are_refused_and_resent_commands_do_not_run_twice() {
    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "web-07", "web-07", &[3]);
    stack.wait_online("token-a", "web-07", Some(3)).await;
    let (status, session) = stack.open(1, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED);
    let token = session["token"].as_u64().unwrap();
    let id = session["session_id"].as_str().unwrap().to_string();
    // The agent has now seen the live session's token.
    assert_eq!(
        stack.run(1, "token-a", &id, "dir").await["state"],
        "completed"
    );

    let nats = stack.nats_as_broker(1).await;
    let mut results = nats
        .subscribe(bus::session_evt("demo", "forged"))
        .await
        .unwrap();
    let mut next_result = async || {
        let message = tokio::time::timeout(Duration::from_secs(10), results.next())
            .await
            .unwrap()
            .unwrap();
        match bus::decode(&message).unwrap().1 {
            Body::Result(result) => result,
            other => panic!("unexpected {other:?}"),
        }
    };

    // An older token than the agent has seen: refused, not executed.
    let ack = forge(&nats, "demo", command("stale-1", token - 1, "dir", &[])).await;
    assert!(
        matches!(ack, Some(Body::Ack(ref a)) if broker::wire::accepted(a)),
        "{ack:?}"
    );
    let result = next_result().await;
    assert_eq!(result.status(), Status::StaleToken, "{result:?}");
    assert!(
        result.error.contains(&token.to_string()),
        "{}",
        result.error
    );

    // The same command id twice: the second answer is the first one's, not a second run.
    let target = stack.path().join("only-once");
    std::fs::create_dir_all(&target).unwrap();
    let target = target.display().to_string();
    forge(&nats, "demo", command("dup-1", token, "cd", &[&target]))
        .await
        .unwrap();
    let first = next_result().await;
    assert_eq!(first.status(), Status::Ok, "{first:?}");
    std::fs::remove_dir(&target).unwrap();
    forge(&nats, "demo", command("dup-1", token, "cd", &[&target]))
        .await
        .unwrap();
    let again = next_result().await;
    assert_eq!(
        again, first,
        "a re-sent command must return the first result, not run again"
    );

    // An envelope whose tenant differs from its subject's is dropped: no answer at all.
    assert!(
        forge(&nats, "acme", command("cross-1", token, "dir", &[]))
            .await
            .is_none()
    );
}
