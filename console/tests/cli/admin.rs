//! `lr admin` and `--tenant`: values checked before anything is sent, the `LR-Tenant` header on
//! every request, a new token shown once, refusals and their exit codes, tables and JSON.

use crate::Lr;
use crate::fake_broker::{FakeBroker, VIEWER_TOKEN};

#[tokio::test(flavor = "multi_thread")]
async fn mistakes_are_usage_errors_and_nothing_is_sent() {
    let broker = FakeBroker::http().await;
    let cases: [(&[&str], &str); 8] = [
        (
            &[
                "admin",
                "user",
                "create",
                "alice",
                "--role",
                "responder-advnced",
            ],
            "unknown role 'responder-advnced' (did you mean responder-advanced?); roles are viewer, responder-basic, responder-advanced, library-manager, tenant-admin, platform-admin",
        ),
        (
            &["admin", "user", "update", "alice", "--role", "root:servers"],
            "unknown role 'root'",
        ),
        (
            &["admin", "user", "create", "alice", "--role", "viewer:"],
            "no group after 'viewer:'",
        ),
        (
            &["admin", "user", "create", "alice"],
            "--role <ROLE[:GROUP,...]>",
        ),
        (
            &["admin", "tenant", "update", "acme"],
            "the following required arguments were not provided",
        ),
        (
            &["admin", "settings", "update", "--live-response", "maybe"],
            "invalid value 'maybe' for '--live-response <on|off>'",
        ),
        (
            &["admin", "group", "set", "web.servers"],
            "invalid group name \"web.servers\"",
        ),
        (
            &["--tenant", "acme.eu", "admin", "user", "list"],
            "lr: tenant (from flag --tenant): \"acme.eu\" is not a tenant id",
        ),
    ];
    for (args, said) in cases {
        let run = Lr::at(&broker).run(args).await;
        run.assert_code(2);
        assert!(run.stderr.contains(said), "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
    assert!(broker.requests().is_empty(), "{:?}", broker.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_is_sent_as_lr_tenant_on_every_request() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .run(&[
            "--tenant",
            "acme",
            "admin",
            "user",
            "create",
            "alice",
            "--role",
            "responder-advanced:servers,dbs",
            "--output",
            "json",
        ])
        .await;
    let user = run.assert_code(0).json();
    assert_eq!(user["tenant"], "acme", "{run:?}");
    assert_eq!(
        user["roles"],
        serde_json::json!([{"role": "responder-advanced", "groups": ["servers", "dbs"]}])
    );

    // The environment and the config file name it too, for any request.
    Lr::at(&broker)
        .env("LR_TENANT", "acme")
        .run(&["devices"])
        .await
        .assert_code(0);
    let mut lr = Lr::at(&broker);
    let dir = lr.home().join("config").join("lr");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), "tenant = \"acme\"\n").unwrap();
    lr.run(&["admin", "user", "list"]).await.assert_code(0);
    assert_eq!(
        broker.tenant_headers(),
        [
            Some("acme".to_owned()),
            Some("acme".to_owned()),
            Some("acme".to_owned())
        ],
        "{:?}",
        broker.requests()
    );

    // Without it, nothing is sent, and the caller acts in its own tenant.
    let run = Lr::at(&broker).run(&["admin", "user", "list"]).await;
    assert!(run.assert_code(0).stdout.contains("analyst-b"), "{run:?}");
    assert!(!run.stdout.contains("alice"), "{run:?}");
    assert_eq!(broker.tenant_headers().last(), Some(&None));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_token_is_shown_once() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .run(&[
            "admin",
            "token",
            "create",
            "analyst-b",
            "--description",
            "laptop",
        ])
        .await;
    run.assert_code(0);
    let token = run
        .stdout
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{run:?}"));
    assert!(
        token.starts_with("lrt_") && !token.contains(char::is_whitespace),
        "stdout is the token alone: {run:?}"
    );
    assert!(
        run.stderr
            .contains("created; store it now: it will not be shown again"),
        "{run:?}"
    );
    assert!(!run.stderr.contains(token), "{run:?}");

    // JSON: the whole answer, token included, once.
    let json = Lr::at(&broker)
        .run(&["admin", "token", "create", "analyst-b", "--output", "json"])
        .await;
    let created = json.assert_code(0).json();
    let second = created["token"].as_str().unwrap();
    assert_eq!(created["user"], "analyst-b");
    assert!(second.starts_with("lrt_") && second != token, "{json:?}");
    assert!(
        json.stderr.contains("it will not be shown again"),
        "{json:?}"
    );

    // Listing shows the records, never a token.
    let list = Lr::at(&broker)
        .run(&["admin", "token", "list", "--user", "analyst-b"])
        .await;
    list.assert_code(0);
    assert!(list.stdout.contains("laptop"), "{list:?}");
    assert!(
        !list.stdout.contains(token) && !list.stdout.contains(second),
        "{list:?}"
    );
    assert!(
        broker
            .uris()
            .iter()
            .any(|u| u.starts_with("/api/v1/admin/tokens?") && u.contains("user=analyst-b")),
        "{:?}",
        broker.uris()
    );

    // Revoked: the record says when.
    let id = created["id"].as_str().unwrap();
    let revoked = Lr::at(&broker)
        .run(&["admin", "token", "revoke", id, "--output", "json"])
        .await;
    assert!(!revoked.assert_code(0).json()["revoked_at"].is_null());
    assert!(revoked.stderr.contains("revoked"), "{revoked:?}");

    // A token for nobody: the user is named as missing.
    let nobody = Lr::at(&broker)
        .run(&["admin", "token", "create", "ghost"])
        .await;
    nobody.assert_code(2);
    assert!(nobody.stderr.starts_with("lr: no user ghost"), "{nobody:?}");
    assert!(
        nobody.stderr.contains("lr: hint: lr admin user list"),
        "{nobody:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_exits_3_with_the_message() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .env("LR_TOKEN", VIEWER_TOKEN)
        .run(&["admin", "user", "create", "alice", "--role", "viewer"])
        .await;
    run.assert_code(3);
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr.starts_with(
            "lr: this needs the role tenant-admin in tenant demo; analyst-v holds: viewer; ask a \
             tenant admin for it\n"
        ),
        "{run:?}"
    );
    assert!(run.stderr.contains("lr: hint: `lr whoami`"), "{run:?}");

    let tenants = Lr::at(&broker)
        .env("LR_TOKEN", VIEWER_TOKEN)
        .run(&["admin", "tenant", "list"])
        .await;
    tenants.assert_code(3);
    assert!(
        tenants.stderr.contains("the role platform-admin"),
        "{tenants:?}"
    );

    let whoami = Lr::at(&broker)
        .env("LR_TOKEN", VIEWER_TOKEN)
        .run(&["whoami"])
        .await;
    assert_eq!(
        whoami.assert_code(0).stdout,
        "analyst-v (tenant demo)\nroles: viewer\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_users_and_groups_as_tables_and_json() {
    let broker = FakeBroker::http().await;
    let created = Lr::at(&broker)
        .run(&["admin", "tenant", "create", "acme", "--name", "ACME Corp"])
        .await;
    assert!(
        created.assert_code(0).stdout.contains("ACME Corp"),
        "{created:?}"
    );
    let again = Lr::at(&broker)
        .run(&["admin", "tenant", "create", "acme"])
        .await;
    again.assert_code(3);
    assert!(
        again.stderr.starts_with("lr: tenant acme exists already\n"),
        "{again:?}"
    );
    assert!(
        again
            .stderr
            .contains("lr: hint: lr admin tenant update acme changes its name and settings"),
        "{again:?}"
    );

    let updated = Lr::at(&broker)
        .run(&[
            "admin",
            "tenant",
            "update",
            "acme",
            "--live-response",
            "off",
            "--idle-timeout",
            "900",
            "--max-sessions",
            "50",
            "--remediation-groups",
            "servers,dbs",
            "--output",
            "json",
        ])
        .await;
    let settings = &updated.assert_code(0).json()["settings"];
    assert_eq!(settings["live_response_enabled"], false);
    assert_eq!(settings["idle_timeout_ms"], 900_000);
    assert_eq!(settings["max_sessions_per_tenant"], 50);
    assert_eq!(
        settings["remediation_groups"],
        serde_json::json!(["servers", "dbs"])
    );

    // A table puts the settings beside the tenant's id.
    let list = Lr::at(&broker).run(&["admin", "tenant", "list"]).await;
    list.assert_code(0);
    let header = list.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        header.contains("live_response_enabled") && !header.contains("settings"),
        "{list:?}"
    );
    assert!(list.stdout.contains("servers, dbs"), "{list:?}");

    let settings = Lr::at(&broker)
        .run(&["admin", "settings", "update", "--unsigned-scripts", "on"])
        .await;
    assert!(
        settings
            .assert_code(0)
            .stdout
            .contains("unsigned_scripts_allowed")
    );

    let user = Lr::at(&broker)
        .run(&[
            "admin",
            "user",
            "update",
            "analyst-b",
            "--role",
            "responder-basic",
            "--role",
            "responder-advanced:servers",
        ])
        .await;
    assert!(
        user.assert_code(0)
            .stdout
            .contains("responder-basic, responder-advanced (groups servers)"),
        "{user:?}"
    );
    let missing = Lr::at(&broker)
        .run(&["admin", "user", "show", "ghost"])
        .await;
    missing.assert_code(2);
    assert_eq!(
        missing.stderr,
        "lr: no user ghost\nlr: hint: lr admin user list shows the tenant's users\n"
    );

    let group = Lr::at(&broker)
        .run(&[
            "admin",
            "group",
            "set",
            "servers",
            "--device",
            "db-01",
            "--hostname",
            "web-*",
            "--device-glob",
            "srv-??",
            "--output",
            "json",
        ])
        .await;
    assert_eq!(
        group.assert_code(0).json(),
        serde_json::json!({"name": "servers", "devices": ["db-01"],
            "rules": [{"match": "hostname", "pattern": "web-*"}, {"match": "device", "pattern": "srv-??"}]})
    );
    let shown = Lr::at(&broker)
        .run(&["admin", "group", "show", "servers"])
        .await;
    assert!(
        shown
            .assert_code(0)
            .stdout
            .contains("hostname web-*, device srv-??"),
        "{shown:?}"
    );
    let of = Lr::at(&broker)
        .run(&["admin", "device", "groups", "web-07", "--output", "json"])
        .await;
    assert_eq!(
        of.assert_code(0).json(),
        serde_json::json!({"device": "web-07", "groups": ["servers"]})
    );

    let removed = Lr::at(&broker)
        .run(&["admin", "group", "remove", "servers"])
        .await;
    assert_eq!(removed.assert_code(0).stdout, "group servers removed\n");
    let removed = Lr::at(&broker)
        .run(&["admin", "tenant", "remove", "acme", "--output", "json"])
        .await;
    assert_eq!(
        removed.assert_code(0).json(),
        serde_json::json!({"id": "acme", "removed": true})
    );
    let gone = Lr::at(&broker)
        .run(&["admin", "tenant", "show", "acme"])
        .await;
    gone.assert_code(2);
    assert!(
        gone.stderr
            .contains("lr: hint: lr admin tenant list shows the tenants"),
        "{gone:?}"
    );
}
