//! `lr admin` and `--tenant`: values checked before anything is sent, the `LR-Tenant` header on
//! every request, a new token shown once, a new enrolment token shown once with its enroll line,
//! enrolled devices, refusals and their exit codes, tables and JSON.

use crate::Lr;
use crate::fake_admin::{CA_FINGERPRINT, ENROLLED_PAGE};
use crate::fake_broker::{FakeBroker, VIEWER_TOKEN};

#[tokio::test(flavor = "multi_thread")]
async fn mistakes_are_usage_errors_and_nothing_is_sent() {
    let broker = FakeBroker::http().await;
    let cases: [(&[&str], &str); 12] = [
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
        (
            &["admin", "enrolment", "create", "--expires-in", "2592001"],
            "invalid value '2592001' for '--expires-in <SECONDS>': 2592001 is not in 1..=2592000",
        ),
        (
            &["admin", "enrolment", "create", "--max-uses", "0"],
            "invalid value '0' for '--max-uses <N>'",
        ),
        (
            &["admin", "enrolment", "create", "--group", "web servers"],
            "invalid group name \"web servers\"",
        ),
        (
            &["admin", "device", "allow-reenrolment"],
            "the following required arguments were not provided",
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

#[tokio::test(flavor = "multi_thread")]
async fn an_enrolment_token_is_shown_once_with_the_enroll_line() {
    let broker = FakeBroker::http().await;
    Lr::at(&broker)
        .run(&["admin", "group", "set", "servers", "--device", "db-01"])
        .await
        .assert_code(0);
    let run = Lr::at(&broker)
        .run(&[
            "admin",
            "enrolment",
            "create",
            "--expires-in",
            "3600",
            "--max-uses",
            "20",
            "--group",
            "servers",
            "--description",
            "web farm",
        ])
        .await;
    run.assert_code(0);
    let token = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no token line: {run:?}"));
    assert!(token.starts_with("lre_"), "{run:?}");
    for line in [
        "tenant:  demo",
        "expires: 2025-06-01T12:00:00Z",
        "uses:    0/20",
        "group:   servers",
    ] {
        assert!(run.stdout.lines().any(|l| l == line), "{line}: {run:?}");
    }
    let enroll = format!(
        "lr-agent enroll --broker <broker-agent-endpoint> --token {token} --ca-fingerprint \
         {CA_FINGERPRINT}"
    );
    assert_eq!(run.stdout.lines().last(), Some(enroll.as_str()), "{run:?}");
    assert!(
        run.stderr
            .contains("created; store it now: it will not be shown again"),
        "{run:?}"
    );
    assert!(!run.stderr.contains(token), "{run:?}");

    // JSON: the broker's answer, token and fingerprints included; the defaults are the broker's.
    let json = Lr::at(&broker)
        .run(&["admin", "enrolment", "create", "--output", "json"])
        .await;
    let created = json.assert_code(0).json();
    assert_eq!(created["ca_fingerprint"], CA_FINGERPRINT);
    assert_eq!(created["max_uses"], 1);
    assert_eq!(created["group"], serde_json::Value::Null);
    assert_eq!(created["expires_at"], "2025-06-02T11:00:00Z");
    let second = created["token"].as_str().unwrap();
    assert!(second.starts_with("lre_") && second != token, "{json:?}");
    assert!(
        json.stderr.contains("it will not be shown again"),
        "{json:?}"
    );

    // Listed with its uses, never a token.
    let list = Lr::at(&broker).run(&["admin", "enrolment", "list"]).await;
    list.assert_code(0);
    let header: Vec<&str> = list
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split('┆')
        .map(|c| c.trim_matches(|c: char| c == '│' || c.is_whitespace()))
        .collect();
    assert_eq!(
        header,
        [
            "id",
            "description",
            "group",
            "uses/max",
            "expires_at",
            "revoked_at"
        ],
        "{list:?}"
    );
    let row = list
        .stdout
        .lines()
        .find(|l| l.contains("web farm"))
        .unwrap_or_else(|| panic!("{list:?}"));
    assert!(row.contains("servers") && row.contains("0/20"), "{list:?}");
    assert!(
        !list.stdout.contains(token) && !list.stdout.contains(second),
        "{list:?}"
    );

    // Revoked: the record says when, and the list shows it.
    let id = created["id"].as_str().unwrap();
    let revoked = Lr::at(&broker)
        .run(&["admin", "enrolment", "revoke", id, "--output", "json"])
        .await;
    assert_eq!(
        revoked.assert_code(0).json()["revoked_at"],
        "2025-06-01T11:00:00Z"
    );
    assert!(
        revoked
            .stderr
            .contains("no device can enrol with it from now on"),
        "{revoked:?}"
    );
    let listed = Lr::at(&broker)
        .run(&["admin", "enrolment", "list", "--output", "json"])
        .await;
    let listed = listed.assert_code(0).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert_eq!(listed[1]["revoked_at"], "2025-06-01T11:00:00Z");
    assert_eq!(listed[0]["revoked_at"], serde_json::Value::Null);

    // A group the tenant does not have: named, with where to look.
    let nogroup = Lr::at(&broker)
        .run(&["admin", "enrolment", "create", "--group", "ghosts"])
        .await;
    nogroup.assert_code(2);
    assert_eq!(
        nogroup.stderr,
        "lr: no group ghosts\nlr: hint: lr admin group list shows the tenant's device groups\n"
    );
    assert!(nogroup.stdout.is_empty(), "{nogroup:?}");
    let unknown = Lr::at(&broker)
        .run(&["admin", "enrolment", "revoke", "enr-nope"])
        .await;
    unknown.assert_code(2);
    assert!(
        unknown
            .stderr
            .ends_with("lr: hint: lr admin enrolment list shows the tenant's enrolment tokens\n"),
        "{unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn enrolled_devices_are_listed_revoked_and_allowed_again() {
    let broker = FakeBroker::http().await;
    let list = Lr::at(&broker).run(&["admin", "device", "list"]).await;
    list.assert_code(0);
    let lines: Vec<&str> = list.stdout.lines().collect();
    let header: Vec<&str> = lines[1]
        .split('┆')
        .map(|c| c.trim_matches(|c: char| c == '│' || c.is_whitespace()))
        .collect();
    assert_eq!(
        header,
        [
            "device",
            "state",
            "certificate_expires_at",
            "last_seen",
            "online",
            "hostname",
            "reenrolment_allowed"
        ],
        "{list:?}"
    );
    let row = |device: &str| -> Vec<String> {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("│ {device} ")))
            .unwrap_or_else(|| panic!("no row {device}: {list:?}"));
        line.split('┆')
            .map(|c| {
                c.trim_matches(|c: char| c == '│' || c.is_whitespace())
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        row("web-07"),
        [
            "web-07",
            "enrolled",
            "2025-06-08T11:00:00Z",
            "2025-06-01T10:42:00Z",
            "true",
            "web-07.example",
            "false"
        ]
    );
    assert_eq!(
        row("old-03"),
        [
            "old-03",
            "revoked",
            "2025-06-08T11:00:00Z",
            "",
            "false",
            "",
            "false"
        ]
    );
    // Every page was read.
    assert!(lines.iter().any(|l| l.starts_with("│ db-01 ")), "{list:?}");
    let pages = broker
        .uris()
        .iter()
        .filter(|u| u.starts_with("/api/v1/admin/devices?"))
        .count();
    assert_eq!(
        pages,
        3_usize.div_ceil(ENROLLED_PAGE),
        "{:?}",
        broker.uris()
    );

    let shown = Lr::at(&broker)
        .run(&["admin", "device", "show", "web-07", "--output", "json"])
        .await;
    let shown = shown.assert_code(0).json();
    assert_eq!(shown["state"], "enrolled");
    assert_eq!(shown["online"], true);

    let revoked = Lr::at(&broker)
        .run(&["admin", "device", "revoke", "web-07"])
        .await;
    revoked.assert_code(0);
    assert_eq!(
        revoked.stderr,
        "lr: device web-07 of tenant demo revoked: its stream is dropped and its sessions end; \
         it cannot connect until `lr admin device allow-reenrolment web-07` and a new \
         enrolment\n"
    );
    assert!(
        revoked
            .stdout
            .lines()
            .any(|l| l.contains("state") && l.contains("revoked")),
        "{revoked:?}"
    );

    let allowed = Lr::at(&broker)
        .run(&[
            "admin",
            "device",
            "allow-reenrolment",
            "web-07",
            "--output",
            "json",
        ])
        .await;
    let device = allowed.assert_code(0).json();
    assert_eq!(device["state"], "revoked");
    assert_eq!(device["reenrolment_allowed"], true);
    assert!(
        allowed.stderr.contains("may enrol once more"),
        "{allowed:?}"
    );
    assert_eq!(
        &broker.requests()[broker.requests().len() - 2..],
        [
            "POST /api/v1/admin/devices/web-07/revoke",
            "POST /api/v1/admin/devices/web-07/allow-reenrolment"
        ]
    );

    // A device enrolment does not know: exit 2, and where to look.
    let ghost = Lr::at(&broker)
        .run(&["admin", "device", "revoke", "ghost"])
        .await;
    ghost.assert_code(2);
    assert_eq!(
        ghost.stderr,
        "lr: no device ghost\nlr: hint: lr admin device list shows the tenant's enrolled \
         devices\n"
    );
    assert!(ghost.stdout.is_empty(), "{ghost:?}");
    let unknown = Lr::at(&broker)
        .run(&["admin", "device", "show", "ghost"])
        .await;
    unknown.assert_code(2);
    assert!(
        unknown.stderr.starts_with("lr: no enrolled device ghost\n"),
        "{unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn enrolment_needs_a_tenant_admin() {
    let broker = FakeBroker::http().await;
    for args in [
        &["admin", "enrolment", "create", "--max-uses", "5"][..],
        &["admin", "enrolment", "list"],
        &["admin", "device", "list"],
        &["admin", "device", "revoke", "web-07"],
    ] {
        let run = Lr::at(&broker)
            .env("LR_TOKEN", VIEWER_TOKEN)
            .run(args)
            .await;
        run.assert_code(3);
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
        assert!(
            run.stderr.starts_with(
                "lr: this needs the role tenant-admin in tenant demo; analyst-v holds: viewer; \
                 ask a tenant admin for it\n"
            ),
            "{args:?}: {run:?}"
        );
        assert!(run.stderr.contains("lr: hint: `lr whoami`"), "{run:?}");
    }
    // Refused, the device is as it was.
    let shown = Lr::at(&broker)
        .run(&["admin", "device", "show", "web-07", "--output", "json"])
        .await;
    assert_eq!(shown.assert_code(0).json()["state"], "enrolled");
}
