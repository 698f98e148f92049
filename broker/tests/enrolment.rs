//! Enrolment and the certificate lifecycle on a real stack: tokens (good, expired, used up,
//! revoked, another tenant's), the agent pinning the cluster CA by fingerprint, the issued
//! certificate's identity and lifetime, renewal over the stream, and revocation dropping a
//! connected agent and ending its session.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Stack, WAIT};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "token-a";

async fn enrol_error(stack: &Stack, via: u64, token: &Value, device: &str) -> String {
    match agent::enrol::enrol(&stack.enrol_options(via, token, device)).await {
        Ok(_) => panic!("{device} enrolled, but should have been refused"),
        Err(error) => error.to_string(),
    }
}

async fn device(stack: &Stack, admin: &str, id: &str) -> Value {
    let (status, device) = stack
        .call_in(
            1,
            admin,
            Some("demo"),
            Method::GET,
            &format!("/api/v1/admin/devices/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{device}");
    device
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_tokens_enrol_what_they_allow_and_nothing_else() {
    let stack = Stack::start(2, "certificate_lifetime_secs = 3600\n").await;
    let (_, admin) = stack.admin_token().await;

    // A good token made through node 1 enrols through node 2 at once.
    let token = stack.enrolment_token("demo", json!({"max_uses": 1})).await;
    assert_eq!(token["max_uses"], 1);
    let ca = pki::pem_to_der(&std::fs::read_to_string(stack.ca_path()).unwrap()).unwrap();
    assert_eq!(token["ca_fingerprint"], pki::fingerprint(&ca));
    let config = agent::enrol::enrol(&stack.enrol_options(2, &token, "web-01"))
        .await
        .unwrap();
    assert_eq!(
        (config.tenant.as_str(), config.device_id.as_str()),
        ("demo", "web-01")
    );
    assert_eq!(config.authority_keys, stack.trusted_keys);
    let cert = pki::pem_to_der(&std::fs::read_to_string(&config.tls.cert).unwrap()).unwrap();
    let identity = pki::agent_identity(&cert).unwrap();
    assert_eq!(
        (identity.tenant.as_str(), identity.device.as_str()),
        ("demo", "web-01")
    );
    let validity = pki::validity(&cert).unwrap();
    assert_eq!(
        validity.not_after_ms - validity.not_before_ms,
        (3600 + pki::BACKDATE.as_secs()) * 1000,
        "the configured lifetime, from a minute back"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&config.tls.key), 0o600);
    let key = std::fs::read_to_string(&config.tls.key).unwrap();
    assert!(pki::certifies_key(&cert, &key).unwrap());
    let enrolled = device(&stack, &admin, "web-01").await;
    assert_eq!(enrolled["state"], "enrolled", "{enrolled}");
    assert_eq!(enrolled["certificate"], pki::fingerprint(&cert));

    // The private key never reaches the broker side: no file outside the device's directory
    // holds it (broker data, logs, certificates, nats-server's store).
    let secret_line = key
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 40)
        .unwrap();
    for file in files(stack.path()) {
        if file.starts_with(stack.path().join("agent-web-01")) {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret_line),
            "{} holds the device's private key",
            file.display()
        );
    }

    // Used up.
    let refused = enrol_error(&stack, 1, &token, "web-02").await;
    assert!(refused.contains("used up"), "{refused}");
    // The same device id again: refused until an admin allows it.
    let another = stack.enrolment_token("demo", json!({"max_uses": 5})).await;
    let refused = enrol_error(&stack, 1, &another, "web-01").await;
    assert!(refused.contains("already"), "{refused}");
    // Expired.
    let expired = stack
        .enrolment_token("demo", json!({"expires_in_secs": 1}))
        .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let refused = enrol_error(&stack, 2, &expired, "web-03").await;
    assert!(refused.contains("expired"), "{refused}");
    // Revoked.
    let revoked = stack.enrolment_token("demo", json!({})).await;
    let path = format!(
        "/api/v1/admin/enrolment-tokens/{}",
        revoked["id"].as_str().unwrap()
    );
    // Another tenant's admin cannot see it, let alone revoke it.
    let (status, _) = stack
        .call_in(1, &admin, Some("acme"), Method::DELETE, &path, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = stack
        .call_in(1, &admin, Some("demo"), Method::DELETE, &path, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let refused = enrol_error(&stack, 1, &revoked, "web-04").await;
    assert!(refused.contains("revoked"), "{refused}");
    // Another tenant's token, for a device that expects to join demo.
    let acme = stack.enrolment_token("acme", json!({})).await;
    let mut options = stack.enrol_options(1, &acme, "web-05");
    options.tenant = Some("demo".into());
    let refused = agent::enrol::enrol(&options).await.unwrap_err().to_string();
    assert!(refused.contains("another tenant"), "{refused}");
    // Not a token at all.
    let mut forged = another.clone();
    forged["token"] = json!(format!("lre_{}_guessed", another["id"].as_str().unwrap()));
    let refused = enrol_error(&stack, 1, &forged, "web-06").await;
    assert!(refused.contains("not known"), "{refused}");

    // The wrong CA fingerprint: the agent refuses the broker and writes nothing.
    let mut pinned_wrong = another.clone();
    pinned_wrong["ca_fingerprint"] = json!("ab".repeat(32));
    let refused = enrol_error(&stack, 1, &pinned_wrong, "web-07").await;
    assert!(refused.contains("fingerprint"), "{refused}");
    assert!(
        !stack
            .path()
            .join("agent-web-07")
            .join("agent.toml")
            .exists()
    );
    let (_, tokens) = stack
        .call_in(
            1,
            &admin,
            Some("demo"),
            Method::GET,
            "/api/v1/admin/enrolment-tokens",
            None,
        )
        .await;
    let uses = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == another["id"])
        .unwrap()["uses"]
        .clone();
    assert_eq!(uses, 0, "refused enrolments use nothing: {tokens}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_renew_over_their_stream_and_revocation_cuts_them_off_everywhere() {
    // A 20 s certificate: the agent renews about 13 s after enrolling.
    let mut stack = Stack::start(3, "certificate_lifetime_secs = 20\n").await;
    let (_, admin) = stack.admin_token().await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online(TOKEN, "web-07", Some(3)).await;
    let first = device(&stack, &admin, "web-07").await;
    assert!(first["renewed_at"].is_null(), "{first}");

    let renewed = testkit::wait_until(Duration::from_secs(60), || async {
        !device(&stack, &admin, "web-07").await["renewed_at"].is_null()
    })
    .await;
    assert!(renewed, "the agent did not renew its certificate");
    let now = device(&stack, &admin, "web-07").await;
    assert_ne!(now["certificate"], first["certificate"]);
    let cert_file = stack
        .path()
        .join("agent-web-07")
        .join("tls")
        .join("agent.pem");
    let on_disk = testkit::wait_until(WAIT, || async {
        std::fs::read_to_string(&cert_file)
            .ok()
            .and_then(|pem| pki::pem_to_der(&pem).ok())
            .is_some_and(|der| now["certificate"] == pki::fingerprint(&der))
    })
    .await;
    assert!(on_disk, "the agent did not keep its renewed certificate");
    // Past the first certificate's expiry the agent still works: it dials with the new one.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (status, session) = stack.open(1, TOKEN, "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let session = session["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        stack.run(1, TOKEN, &session, "dir /").await["state"],
        "completed"
    );

    // Revoked through node 2: node 3 drops the stream, the session ends, and no node takes the
    // agent back.
    let (status, revoked) = stack
        .call_in(
            2,
            &admin,
            Some("demo"),
            Method::POST,
            "/api/v1/admin/devices/web-07/revoke",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    // The lease went with the revocation; the session's actor learns it at its next renewal.
    let ended = testkit::wait_until(WAIT, || async {
        let (status, _) = stack
            .get(1, TOKEN, &format!("/api/v1/sessions/{session}"))
            .await;
        status == StatusCode::NOT_FOUND
    })
    .await;
    assert!(ended, "the revocation did not end the session");
    let offline = testkit::wait_until(WAIT, || async {
        let (_, devices) = stack.get(1, TOKEN, "/api/v1/devices").await;
        devices["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["device"] == "web-07" && d["online"] == false)
    })
    .await;
    assert!(offline, "the revoked agent's stream was not dropped");
    let refused = testkit::wait_until(WAIT, || async {
        stack.log(3).contains("refused an agent's certificate")
    })
    .await;
    assert!(refused, "the revoked agent was not refused on reconnecting");
    let (status, answer) = stack.open(1, TOKEN, "web-07").await;
    assert_ne!(status, StatusCode::CREATED, "{answer}");

    // A revoked id enrols again only once an admin allows it.
    let token = stack.enrolment_token("demo", json!({"max_uses": 2})).await;
    let refused = enrol_error(&stack, 1, &token, "web-07").await;
    assert!(refused.contains("revoked"), "{refused}");
    let (status, allowed) = stack
        .call_in(
            1,
            &admin,
            Some("demo"),
            Method::POST,
            "/api/v1/admin/devices/web-07/allow-reenrolment",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{allowed}");
    assert_eq!(allowed["reenrolment_allowed"], true);
    agent::enrol::enrol(&stack.enrol_options(1, &token, "web-07"))
        .await
        .unwrap();
    let (_, list) = stack
        .call_in(
            1,
            &admin,
            Some("demo"),
            Method::GET,
            "/api/v1/admin/devices",
            None,
        )
        .await;
    let listed = &list["items"][0];
    assert_eq!(listed["device"], "web-07");
    assert_eq!(listed["state"], "enrolled");
    assert!(listed["certificate_expires_at"].is_string(), "{list}");
    assert!(listed["last_seen"].is_string(), "{list}");
}
