//! Tenants, analysts and roles on a real stack: the bootstrap token, the role matrix on every
//! route and on a basic and an advanced command, revocation and expiry on every node, tenant
//! isolation for admins, and tenant settings taking effect.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::Stack;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Creates `name` in the admin's current tenant with `roles` and answers a fresh token.
async fn analyst(stack: &Stack, admin: &str, tenant: &str, name: &str, roles: &[&str]) -> String {
    let roles: Vec<Value> = roles.iter().map(|r| json!({"role": r})).collect();
    let (status, body) = stack
        .call_in(
            1,
            admin,
            Some(tenant),
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"name": name, "roles": roles})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    token(stack, admin, tenant, name, None).await
}

async fn token(
    stack: &Stack,
    admin: &str,
    tenant: &str,
    user: &str,
    expires: Option<u64>,
) -> String {
    let (status, body) = stack
        .call_in(
            2,
            admin,
            Some(tenant),
            Method::POST,
            "/api/v1/admin/tokens",
            Some(json!({"user": user, "expires_in_secs": expires})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("lrt_"), "{token}");
    token
}

/// Waits until `token` gets `expected` from `GET /api/v1/me` on every node.
async fn everywhere(stack: &Stack, token: &str, expected: StatusCode) -> bool {
    testkit::wait_until(Duration::from_secs(30), || async {
        for id in 1..=3 {
            if stack.get(id, token, "/api/v1/me").await.0 != expected {
                return false;
            }
        }
        true
    })
    .await
}

const RESPONDERS: &[&str] = &["responder-basic", "responder-advanced"];
const ADMINS: &[&str] = &["tenant-admin", "platform-admin"];

/// What is asked, how, with which body, and which roles may (`*`: every role).
type Check = (
    &'static str,
    Method,
    &'static str,
    Option<Value>,
    &'static [&'static str],
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_gets_exactly_its_routes_and_commands() {
    let mut stack = Stack::start(3, "").await;
    let (file, admin) = stack.admin_token().await;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the bootstrap token file is for its owner only"
    );
    stack.start_agent("demo", "web-07", "web-07", &[1]).await;
    stack.wait_online("token-a", "web-07", None).await;

    let roles = [
        "viewer",
        "responder-basic",
        "responder-advanced",
        "library-manager",
        "tenant-admin",
    ];
    let mut callers: Vec<(String, String, Option<&str>)> = Vec::new();
    for role in roles {
        let name = format!("u-{role}");
        let token = analyst(&stack, &admin, "demo", &name, &[role]).await;
        assert!(everywhere(&stack, &token, StatusCode::OK).await);
        callers.push((role.to_string(), token, None));
    }
    callers.push(("platform-admin".into(), admin.clone(), Some("demo")));

    // (what, method, path, body, roles allowed); everyone else is answered 403.
    let matrix: Vec<Check> = vec![
        ("me", Method::GET, "/api/v1/me", None, &["*"]),
        ("devices", Method::GET, "/api/v1/devices", None, &["*"]),
        ("sessions", Method::GET, "/api/v1/sessions", None, &["*"]),
        ("transfers", Method::GET, "/api/v1/transfers", None, &["*"]),
        ("library", Method::GET, "/api/v1/library", None, &["*"]),
        (
            "upload",
            Method::PUT,
            "/api/v1/library/tool.sh",
            Some(json!("echo")),
            &["library-manager"],
        ),
        (
            "users",
            Method::GET,
            "/api/v1/admin/users",
            None,
            &["tenant-admin", "platform-admin"],
        ),
        (
            "tokens",
            Method::GET,
            "/api/v1/admin/tokens",
            None,
            &["tenant-admin", "platform-admin"],
        ),
        (
            "groups",
            Method::GET,
            "/api/v1/admin/groups",
            None,
            &["tenant-admin", "platform-admin"],
        ),
        (
            "settings",
            Method::GET,
            "/api/v1/admin/settings",
            None,
            &["tenant-admin", "platform-admin"],
        ),
        (
            "tenants",
            Method::GET,
            "/api/v1/admin/tenants",
            None,
            &["platform-admin"],
        ),
        (
            "open",
            Method::POST,
            "/api/v1/sessions",
            Some(json!({"device": "web-07"})),
            &["responder-basic", "responder-advanced"],
        ),
        (
            "session",
            Method::GET,
            "/api/v1/sessions/none",
            None,
            &["*"],
        ),
        (
            "events",
            Method::GET,
            "/api/v1/sessions/none/events",
            None,
            &["*"],
        ),
        (
            "end",
            Method::DELETE,
            "/api/v1/sessions/none",
            None,
            RESPONDERS,
        ),
        (
            "commands",
            Method::GET,
            "/api/v1/sessions/none/commands",
            None,
            &["*"],
        ),
        (
            "run",
            Method::POST,
            "/api/v1/sessions/none/commands",
            Some(json!({"command_line": "dir"})),
            RESPONDERS,
        ),
        (
            "command",
            Method::GET,
            "/api/v1/sessions/none/commands/c1",
            None,
            &["*"],
        ),
        (
            "cancel",
            Method::POST,
            "/api/v1/sessions/none/commands/c1/cancel",
            None,
            RESPONDERS,
        ),
        (
            "transfer",
            Method::GET,
            "/api/v1/transfers/none",
            None,
            &["*"],
        ),
        (
            "cancel transfer",
            Method::DELETE,
            "/api/v1/transfers/none",
            None,
            &["responder-advanced"],
        ),
        (
            "content",
            Method::GET,
            "/api/v1/transfers/none/content",
            None,
            &["responder-advanced"],
        ),
        (
            "delete file",
            Method::DELETE,
            "/api/v1/library/none",
            None,
            &["library-manager"],
        ),
        (
            "create tenant",
            Method::POST,
            "/api/v1/admin/tenants",
            Some(json!({"id": "matrix"})),
            &["platform-admin"],
        ),
        (
            "tenant",
            Method::GET,
            "/api/v1/admin/tenants/demo",
            None,
            &["platform-admin"],
        ),
        (
            "update tenant",
            Method::PATCH,
            "/api/v1/admin/tenants/none",
            Some(json!({})),
            &["platform-admin"],
        ),
        (
            "remove tenant",
            Method::DELETE,
            "/api/v1/admin/tenants/none",
            None,
            &["platform-admin"],
        ),
        (
            "update settings",
            Method::PATCH,
            "/api/v1/admin/settings",
            Some(json!({})),
            ADMINS,
        ),
        (
            "create user",
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"name": "x", "roles": [{"role": "nope"}]})),
            ADMINS,
        ),
        (
            "user",
            Method::GET,
            "/api/v1/admin/users/none",
            None,
            ADMINS,
        ),
        (
            "update user",
            Method::PATCH,
            "/api/v1/admin/users/none",
            Some(json!({"roles": []})),
            ADMINS,
        ),
        (
            "remove user",
            Method::DELETE,
            "/api/v1/admin/users/none",
            None,
            ADMINS,
        ),
        (
            "create token",
            Method::POST,
            "/api/v1/admin/tokens",
            Some(json!({"user": "none"})),
            ADMINS,
        ),
        (
            "revoke",
            Method::DELETE,
            "/api/v1/admin/tokens/none",
            None,
            ADMINS,
        ),
        (
            "group",
            Method::GET,
            "/api/v1/admin/groups/none",
            None,
            ADMINS,
        ),
        (
            "put group",
            Method::PUT,
            "/api/v1/admin/groups/matrix",
            Some(json!({"devices": []})),
            ADMINS,
        ),
        (
            "remove group",
            Method::DELETE,
            "/api/v1/admin/groups/none",
            None,
            ADMINS,
        ),
        (
            "device groups",
            Method::GET,
            "/api/v1/admin/devices/web-07/groups",
            None,
            ADMINS,
        ),
        ("audit", Method::GET, "/api/v1/audit", None, &["*"]),
        (
            "audit output",
            Method::GET,
            "/api/v1/audit/output/999999",
            None,
            &["*"],
        ),
        (
            "verify audit",
            Method::GET,
            "/api/v1/audit/verify",
            None,
            ADMINS,
        ),
        (
            "enrolment tokens",
            Method::GET,
            "/api/v1/admin/enrolment-tokens",
            None,
            ADMINS,
        ),
        (
            "create enrolment token",
            Method::POST,
            "/api/v1/admin/enrolment-tokens",
            Some(json!({"max_uses": 0})),
            ADMINS,
        ),
        (
            "revoke enrolment token",
            Method::DELETE,
            "/api/v1/admin/enrolment-tokens/none",
            None,
            ADMINS,
        ),
        (
            "enrolled devices",
            Method::GET,
            "/api/v1/admin/devices",
            None,
            ADMINS,
        ),
        (
            "enrolled device",
            Method::GET,
            "/api/v1/admin/devices/none",
            None,
            ADMINS,
        ),
        (
            "revoke device",
            Method::POST,
            "/api/v1/admin/devices/none/revoke",
            None,
            ADMINS,
        ),
        (
            "allow re-enrolment",
            Method::POST,
            "/api/v1/admin/devices/none/allow-reenrolment",
            None,
            ADMINS,
        ),
    ];
    for (role, token, tenant) in &callers {
        for (what, method, path, body, allowed) in &matrix {
            let (status, answer) = stack
                .call_in(3, token, *tenant, method.clone(), path, body.clone())
                .await;
            let may = allowed.contains(&"*") || allowed.contains(&role.as_str());
            if may {
                // Allowed: done, or refused for what was asked (no such object, a bad body).
                let answered = status.is_success()
                    || status == StatusCode::NOT_FOUND
                    || status == StatusCode::BAD_REQUEST;
                assert!(answered, "{role} {what}: {status} {answer}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role} {what}: {answer}");
                assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
                assert!(answer["error"]["role"].is_string(), "{answer}");
            }
            // One basic and one advanced command in the session just opened, then end it.
            if *what == "open" && may {
                let session = answer["session_id"].as_str().unwrap().to_string();
                let path = format!("/api/v1/sessions/{session}/commands");
                for (line, needs_advanced) in
                    [("dir /", false), ("getfile /etc/hostname -auto", true)]
                {
                    let (status, answer) = stack
                        .post(3, token, &path, Some(json!({"command_line": line})))
                        .await;
                    let may = !needs_advanced || role == "responder-advanced";
                    let expected = if may {
                        StatusCode::ACCEPTED
                    } else {
                        StatusCode::FORBIDDEN
                    };
                    assert_eq!(status, expected, "{role} {line}: {answer}");
                }
                let ended = stack
                    .call(
                        3,
                        token,
                        Method::DELETE,
                        &format!("/api/v1/sessions/{session}"),
                        None,
                    )
                    .await;
                assert_eq!(ended.0, StatusCode::NO_CONTENT, "{ended:?}");
            }
        }
    }
    // /me lists what each may run.
    let (_, me) = stack.get(1, &callers[1].1, "/api/v1/me").await;
    let commands = me["commands"].to_string();
    assert!(
        commands.contains("\"dir\"") && !commands.contains("\"getfile\""),
        "{me}"
    );

    // A role scoped to a device group reaches that group's devices only.
    let group =
        json!({"devices": ["web-07"], "rules": [{"match": "hostname", "pattern": "no-such-*"}]});
    let (status, body) = stack
        .call_in(
            1,
            &admin,
            Some("demo"),
            Method::PUT,
            "/api/v1/admin/groups/servers",
            Some(group),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let roles = json!([{"role": "responder-basic", "groups": ["servers"]}]);
    let (status, body) = stack
        .call_in(
            1,
            &admin,
            Some("demo"),
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"name": "scoped", "roles": roles})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let scoped = token(&stack, &admin, "demo", "scoped", None).await;
    assert!(everywhere(&stack, &scoped, StatusCode::OK).await);
    stack.start_agent("demo", "db-02", "db-02", &[2]).await;
    stack.wait_online(&scoped, "db-02", None).await;
    let (status, body) = stack.open(1, &scoped, "db-02").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("db-02"),
        "{body}"
    );
    let (status, body) = stack.open(1, &scoped, "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let first = body["session_id"].as_str().unwrap().to_string();
    let (status, _) = stack
        .call(
            1,
            &scoped,
            Method::DELETE,
            &format!("/api/v1/sessions/{first}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A tag rule takes the devices whose agent carries the tag.
    stack.agent_tags = vec!["pci".into()];
    stack.start_agent("demo", "db-03", "db-03", &[3]).await;
    stack.wait_online(&scoped, "db-03", None).await;
    let (_, listed) = stack.get(1, &scoped, "/api/v1/devices?limit=1000").await;
    assert!(listed.to_string().contains("\"pci\""), "{listed}");
    let group = json!({"rules": [{"match": "tag", "pattern": "pci"}]});
    let (status, body) = stack
        .call_in(
            1,
            &admin,
            Some("demo"),
            Method::PUT,
            "/api/v1/admin/groups/servers",
            Some(group),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, groups) = stack
        .call_in(
            1,
            &admin,
            Some("demo"),
            Method::GET,
            "/api/v1/admin/devices/db-03/groups",
            None,
        )
        .await;
    assert_eq!(groups["groups"], json!(["servers"]), "{groups}");
    let (status, body) = stack.open(2, &scoped, "db-03").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_expiry_and_tenant_boundaries_hold_on_every_node() {
    let mut stack = Stack::start(3, "").await;
    let (file, admin) = stack.admin_token().await;
    for tenant in ["initech", "globex"] {
        let (status, body) = stack
            .post(
                1,
                &admin,
                "/api/v1/admin/tenants",
                Some(json!({"id": tenant})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let tenant_admin = analyst(&stack, &admin, "initech", "boss", &["tenant-admin"]).await;
    let responder = analyst(
        &stack,
        &tenant_admin,
        "initech",
        "alice",
        &["responder-basic"],
    )
    .await;

    // A platform admin must name a tenant on tenant routes.
    let (status, body) = stack.get(2, &admin, "/api/v1/devices").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["rule"].is_string(), "{body}");
    // A tenant admin naming another tenant learns nothing of it.
    let (status, _) = stack
        .call_in(
            2,
            &tenant_admin,
            Some("globex"),
            Method::GET,
            "/api/v1/admin/users",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = stack
        .call_in(
            2,
            &tenant_admin,
            Some("nowhere"),
            Method::GET,
            "/api/v1/admin/users",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nor can it revoke another tenant's token.
    let (_, tokens) = stack
        .call_in(
            1,
            &admin,
            Some("demo"),
            Method::GET,
            "/api/v1/admin/tokens",
            None,
        )
        .await;
    let demo_token = tokens["items"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = stack
        .call(
            1,
            &tenant_admin,
            Method::DELETE,
            &format!("/api/v1/admin/tokens/{demo_token}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Revoked: 401 on every node.
    let (_, listed) = stack
        .get(3, &tenant_admin, "/api/v1/admin/tokens?user=alice")
        .await;
    let id = listed["items"][0]["id"].as_str().unwrap().to_string();
    let (status, revoked) = stack
        .call(
            3,
            &tenant_admin,
            Method::DELETE,
            &format!("/api/v1/admin/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert!(everywhere(&stack, &responder, StatusCode::UNAUTHORIZED).await);
    let (_, body) = stack.get(1, &responder, "/api/v1/me").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );

    // Expired: 401 on every node, once its time has passed.
    let short = token(&stack, &tenant_admin, "initech", "alice", Some(2)).await;
    assert_eq!(stack.get(1, &short, "/api/v1/me").await.0, StatusCode::OK);
    assert!(everywhere(&stack, &short, StatusCode::UNAUTHORIZED).await);

    // Live response off: sessions refused with the reason; on again; each change a new version.
    let (_, before) = stack.get(1, &tenant_admin, "/api/v1/admin/settings").await;
    let version = before["settings"]["version"].as_u64().unwrap();
    let (status, off) = stack
        .call(
            1,
            &tenant_admin,
            Method::PATCH,
            "/api/v1/admin/settings",
            Some(json!({"live_response_enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{off}");
    assert_eq!(off["settings"]["version"].as_u64().unwrap(), version + 1);
    let bob = analyst(
        &stack,
        &tenant_admin,
        "initech",
        "bob",
        &["responder-basic"],
    )
    .await;
    stack.start_agent("initech", "db-01", "db-01", &[2]).await;
    stack.wait_online(&bob, "db-01", None).await;
    let refused = testkit::wait_until(Duration::from_secs(30), || async {
        let (status, body) = stack.open(2, &bob, "db-01").await;
        status == StatusCode::CONFLICT
            && body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("disabled")
    })
    .await;
    assert!(refused, "sessions were not refused with live response off");
    // Counted by its reason on the node that refused.
    let metrics = reqwest::get(format!(
        "http://127.0.0.1:{}/metrics",
        stack.brokers[&2].metrics_port
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let counted = metrics.lines().find_map(|line| {
        line.strip_prefix(&format!(
            "{}{{reason=\"live_response_disabled\"}} ",
            broker::metrics::SESSIONS_REFUSED
        ))
    });
    assert!(
        counted.is_some_and(|n| n.parse::<f64>().unwrap() >= 1.0),
        "{metrics}"
    );
    let (_, on) = stack
        .call(
            1,
            &tenant_admin,
            Method::PATCH,
            "/api/v1/admin/settings",
            Some(json!({"live_response_enabled": true, "max_sessions_per_user": 2})),
        )
        .await;
    assert!(
        on["settings"]["version"].as_u64().unwrap() > version + 1,
        "{on}"
    );
    assert_eq!(on["settings"]["max_sessions_per_user"], 2, "{on}");
    let opened = testkit::wait_until(Duration::from_secs(30), || async {
        stack.open(2, &bob, "db-01").await.0 == StatusCode::CREATED
    })
    .await;
    assert!(opened, "sessions were not allowed again");

    // A restart neither rewrites the bootstrap token nor takes it away.
    let written = std::fs::read_to_string(&file).unwrap();
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    for id in 1..=3 {
        stack.kill(id);
        stack.spawn_broker(id);
    }
    for id in 1..=3 {
        stack.wait_healthy(id).await;
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        modified
    );
    assert!(everywhere(&stack, &admin, StatusCode::OK).await);
    for id in 1..=3 {
        assert!(
            !stack.log(id).contains(admin.trim()),
            "broker {id} logged the admin token"
        );
    }

    // A token added to a node's configuration after the bootstrap is refused: exit code 64.
    let config = stack.brokers[&3].config.clone();
    let text = std::fs::read_to_string(&config).unwrap();
    let late = format!(
        "tokens = [{{ tenant = \"demo\", user = \"late\", token_sha256 = \"{}\" }}, ",
        "c".repeat(64)
    );
    std::fs::write(&config, text.replacen("tokens = [", &late, 1)).unwrap();
    stack.kill(3);
    stack.spawn_broker(3);
    let mut code = None;
    for _ in 0..600 {
        let child = stack.brokers.get_mut(&3).unwrap().child.as_mut().unwrap();
        code = child.try_wait().unwrap().map(|s| s.code());
        if code.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code, Some(Some(64)), "{}", stack.log(3));
    assert!(
        stack.log(3).contains("lr admin token create"),
        "{}",
        stack.log(3)
    );
}
