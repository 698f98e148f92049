//! The analyst API of a real three-broker stack, without agents: authentication, tenancy, errors.

mod common;

use common::{Stack, TENANT};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_need_a_token_and_see_only_their_tenant() {
    let stack = Stack::start(3, "").await;

    let (status, body) = stack.get(1, "wrong", "/api/v1/devices").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");

    let (status, body) = stack.get(2, "token-a", "/api/v1/devices").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"items": [], "next": null}));

    // An unknown device, an unknown session: clear 404s with the stable error shape.
    let (status, body) = stack.open(3, "token-a", "nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no device nope in tenant demo"),
        "{body}"
    );
    let (status, body) = stack.get(1, "token-a", "/api/v1/sessions/0190-abc").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = stack
        .post(
            1,
            "token-a",
            "/api/v1/sessions/x/commands",
            Some(json!({"command_line": "dir"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Malformed and oversized bodies.
    let (status, body) = stack
        .post(
            1,
            "token-a",
            "/api/v1/sessions",
            Some(json!({"devise": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    let huge = "x".repeat(100_000);
    let (status, body) = stack
        .post(
            1,
            "token-a",
            "/api/v1/sessions",
            Some(json!({ "device": huge })),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    let (status, body) = stack.get(1, "token-c", "/api/v1/sessions").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"items": [], "next": null}))
    );
    let (status, doc) = stack.get(2, "", "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/api/v1/sessions/{id}/commands"].is_object());
    let _ = TENANT;
}
