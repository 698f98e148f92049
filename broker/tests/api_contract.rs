//! The API as a contract, on a real stack: the generated OpenAPI document matches the routes and
//! passes a validator, lists page, `/me` answers, and retried requests with the same id open one
//! session and run one command.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use agent_proto::agent::order_body::Action;
use agent_proto::bus::envelope::Body;
use broker::bus;
use common::{Stack, TENANT};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_names_every_route_and_every_route_it_names_exists() {
    let stack = Stack::start(3, "").await;
    let (status, doc) = stack.get(1, "", "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{doc}");

    let mut operation_ids = BTreeSet::new();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            let id = operation["operationId"].as_str().expect("an operationId");
            assert!(operation_ids.insert(id.to_string()), "{id} twice");
            assert!(
                operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{id} has no tag"
            );
            for status in ["400", "500", "503"] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{id} lacks {status}"
                );
            }
            // Every documented route answers with something other than "no such endpoint".
            let concrete = path
                .replace("{id}", "x")
                .replace("{cid}", "y")
                .replace("{name}", "z");
            let (status, body) = stack
                .call(1, "token-a", method.clone(), &concrete, None)
                .await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                !message.contains("no such endpoint"),
                "{method} {path}: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 17, "only {checked} operations documented");

    // Every error code a broker sends is in the document.
    let codes: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = api_model::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(codes, expected);

    // A route that is not documented does not exist.
    let (status, body) = stack.get(1, "token-a", "/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no such endpoint")
    );

    // The document passes an OpenAPI validator.
    let file = stack.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let validated = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 runs; scripts/setup.sh installs the validator");
    assert!(
        validated.status.success(),
        "the document does not validate (scripts/setup.sh installs openapi-spec-validator):\n{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    // A person can read it.
    let (status, page) = stack.get_text(1, "/api/v1/docs/").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.to_lowercase().contains("<html"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_lists_pages_and_retried_requests_do_things_once() {
    let mut stack = Stack::start(2, "").await;
    let (status, me) = stack.get(2, "token-a", "/api/v1/me").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (&me["tenant"], &me["user"]),
        (&json!(TENANT), &json!("analyst-a"))
    );
    assert_eq!(
        me["roles"],
        json!(["responder-basic", "responder-advanced", "library-manager"])
    );
    let commands: Vec<&str> = me["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(
        commands.contains(&"dir") && commands.contains(&"getfile"),
        "{me}"
    );

    stack.start_agent(TENANT, "web-01", "web-01", &[1]).await;
    stack.start_agent(TENANT, "web-02", "web-02", &[2]).await;
    stack.wait_online("token-a", "web-01", None).await;
    stack.wait_online("token-a", "web-02", None).await;

    // Lists page: one device a page, then the end.
    let (_, first) = stack.get(1, "token-a", "/api/v1/devices?limit=1").await;
    assert_eq!(first["items"][0]["device"], "web-01", "{first}");
    let next = first["next"].as_str().unwrap().to_string();
    let (_, second) = stack
        .get(
            1,
            "token-a",
            &format!("/api/v1/devices?limit=1&after={next}"),
        )
        .await;
    assert_eq!(second["items"][0]["device"], "web-02", "{second}");
    assert_eq!(second["next"], Value::Null);
    let (status, bad) = stack.get(1, "token-a", "/api/v1/devices?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    // Opening with a request id twice (through two nodes) answers one session.
    let open = json!({"device": "web-01", "request_id": "open-1"});
    let (status, session) = stack
        .post(1, "token-a", "/api/v1/sessions", Some(open.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let (status, again) = stack
        .post(2, "token-a", "/api/v1/sessions", Some(open))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["session_id"], session["session_id"]);
    let (_, sessions) = stack.get(1, "token-a", "/api/v1/sessions").await;
    assert_eq!(sessions["items"].as_array().unwrap().len(), 1, "{sessions}");
    // The same request id for another device is refused, not taken for a replay.
    let (status, other) = stack
        .post(
            1,
            "token-a",
            "/api/v1/sessions",
            Some(json!({"device": "web-02", "request_id": "open-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{other}");
    assert_eq!(other["error"]["code"], "already_exists");

    // Submitting the same command id twice runs it once on the device.
    let sid = session["session_id"].as_str().unwrap().to_string();
    let nats = stack.nats_as_broker(1).await;
    let mut to_device = nats
        .subscribe(bus::device_cmd(TENANT, "web-01"))
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let path = format!("/api/v1/sessions/{sid}/commands");
    let run = json!({"command_line": "processes", "command_id": "cmd-1"});
    let (status, first) = stack.post(1, "token-a", &path, Some(run.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["command_id"], "cmd-1");
    let (status, replay) = stack.post(2, "token-a", &path, Some(run)).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(replay["command_id"], "cmd-1");
    assert_eq!(replay["submitted_at"], first["submitted_at"]);
    // The header works the same way; a different line under a used id is refused.
    let (status, clash) = stack
        .call_with_key(1, "token-a", &path, json!({"command_line": "dir"}), "cmd-1")
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{clash}");
    let done = stack
        .call(
            1,
            "token-a",
            Method::GET,
            &format!("{path}/cmd-1?wait_ms=20000"),
            None,
        )
        .await
        .1;
    assert_eq!(done["state"], "completed", "{done}");
    let mut sent = 0;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(1), to_device.next()).await
    {
        if let Ok((_, Body::Order(order))) = bus::decode(&message)
            && let Ok(claims) = broker::orders::claims(&order)
            && let Action::Command(request) = claims.action
            && request.command == "processes"
        {
            sent += 1;
        }
    }
    assert_eq!(sent, 1, "the device was sent the command {sent} times");
    let (_, commands) = stack.get(2, "token-a", &path).await;
    assert_eq!(commands["items"].as_array().unwrap().len(), 1, "{commands}");
    let (_, completed) = stack
        .get(2, "token-a", &format!("{path}?state=completed"))
        .await;
    assert_eq!(completed["items"][0]["command_id"], "cmd-1", "{completed}");
}
