//! Exit codes and messages for refusals, usage errors, unreachable and off-contract brokers, TLS
//! trust, plain HTTP, and where settings come from.

use crate::Lr;
use crate::fake_broker::{FakeBroker, TOKEN};

#[tokio::test(flavor = "multi_thread")]
async fn refused_session_exits_3_with_the_api_message() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker).run(&["session", "open", "busy"]).await;
    run.assert_code(3);
    assert!(
        run.stderr.starts_with(
            "lr: device busy is in a session held by analyst-a (tenant demo) since 10:42 UTC"
        ),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("held by analyst-a since 2025-06-01T10:42:00Z (session s-held")
    );
    assert!(run.stdout.is_empty());

    let offline = Lr::at(&broker).run(&["exec", "offline", "--", "dir"]).await;
    offline.assert_code(3);
    assert!(offline.stderr.contains("no connected agent"), "{offline:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_device_exits_2_and_opens_nothing() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker).run(&["exec", "ghost", "--", "dir"]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("lr: device ghost not found"), "{run:?}");
    assert!(!broker.saw_prefix("DELETE"), "{:?}", broker.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_token_exits_3_with_a_hint() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .env("LR_TOKEN", "wrong")
        .run(&["devices"])
        .await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("missing or invalid bearer token"),
        "{run:?}"
    );
    assert!(run.stderr.contains("lr: hint: check LR_TOKEN"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_broker_exits_4() {
    // A port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let run = Lr::bare()
        .env("LR_API_URL", &format!("http://127.0.0.1:{port}"))
        .env("LR_TOKEN", TOKEN)
        .env("LR_INSECURE_HTTP", "1")
        .run(&["exec", "web-07", "--", "dir"])
        .await;
    run.assert_code(4);
    assert!(
        run.stderr
            .starts_with("lr: cannot reach the broker at http://127.0.0.1:"),
        "{run:?}"
    );
    assert!(
        !run.stderr.contains("Error {"),
        "debug dump on stderr: {run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn off_contract_answer_exits_4() {
    let broker = FakeBroker::http().await;
    // Not the broker's API root: the server's own 404 has no error body of the contract.
    let run = Lr::at(&broker)
        .env("LR_API_URL", &format!("{}/not-the-api", broker.url))
        .run(&["devices"])
        .await;
    run.assert_code(4);
    assert!(
        run.stderr
            .contains("unexpected answer from the broker: HTTP 404"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2() {
    let broker = FakeBroker::http().await;
    for args in [
        &[][..],
        &["exec", "web-07"],
        &["exec", "web-07", "dir", "/tmp"],
        &["frobnicate"],
        &["devices", "--output", "yaml"],
    ] {
        let run = Lr::at(&broker).run(args).await;
        run.assert_code(2);
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
    let no_url = Lr::bare().env("LR_TOKEN", TOKEN).run(&["devices"]).await;
    no_url.assert_code(2);
    assert!(no_url.stderr.contains("no broker address"), "{no_url:?}");

    let help = Lr::bare().run(&["--help"]).await;
    help.assert_code(0);
    assert!(help.stdout.contains("Exit codes"), "{help:?}");
    assert!(broker.requests().is_empty(), "{:?}", broker.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_is_refused_before_anything_is_sent() {
    let broker = FakeBroker::http().await;
    let run = Lr::bare()
        .env("LR_API_URL", &broker.url)
        .env("LR_TOKEN", TOKEN)
        .run(&["exec", "web-07", "--", "dir"])
        .await;
    run.assert_code(2);
    assert_eq!(
        run.stderr,
        format!(
            "lr: api_url (from environment variable LR_API_URL): refusing {}: the API token \
             would be sent in clear; use https://, or for a broker on this machine pass \
             --insecure-http (LR_INSECURE_HTTP=1)\n",
            broker.url
        ),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");

    // The opt-in is for this machine only: another host is refused without being contacted.
    let remote = Lr::bare()
        .env("LR_TOKEN", TOKEN)
        .run(&[
            "devices",
            "--api-url",
            "http://10.0.0.5:7601",
            "--insecure-http",
        ])
        .await;
    remote.assert_code(2);
    assert!(
        remote.stderr.starts_with(
            "lr: api_url (from flag --api-url): refusing http://10.0.0.5:7601: the API token \
             would cross the network in clear; use https:// (--insecure-http only allows"
        ),
        "{remote:?}"
    );
    assert!(broker.requests().is_empty(), "{:?}", broker.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn https_trusts_exactly_the_given_ca() {
    let broker = FakeBroker::https().await;
    let run = Lr::at(&broker).run(&["devices"]).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("web-07") && run.stdout.contains("db-01"),
        "{run:?}"
    );

    let json = Lr::at(&broker).run(&["devices", "--output", "json"]).await;
    assert_eq!(json.assert_code(0).json()[0]["device"], "web-07");

    // Another CA: the broker's certificate is not trusted.
    let other = FakeBroker::https().await;
    let mut lr = Lr::at(&broker);
    let wrong = lr.home().join("other-ca.pem");
    std::fs::write(&wrong, other.ca_pem.as_ref().unwrap()).unwrap();
    let run = lr
        .env("LR_CA_CERT", wrong.to_str().unwrap())
        .run(&["devices"])
        .await;
    run.assert_code(4);
    assert!(
        run.stderr.contains("lr: hint: check that LR_CA_CERT"),
        "{run:?}"
    );

    let missing = Lr::at(&broker)
        .env("LR_CA_CERT", "/nonexistent/ca.pem")
        .run(&["devices"])
        .await;
    missing.assert_code(2);
    assert!(
        missing
            .stderr
            .contains("ca_cert (from environment variable LR_CA_CERT)"),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_needs_no_token() {
    let broker = FakeBroker::http().await;
    let run = Lr::bare()
        .env("LR_API_URL", &broker.url)
        .run(&["health", "--output", "json", "--insecure-http"])
        .await;
    let answer = run.assert_code(0).json();
    assert_eq!(answer[0]["ready"], true, "{answer}");
    assert_eq!(answer[0]["readiness"]["leader"], 1, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_says_ready_per_node() {
    let broker = FakeBroker::http().await;
    let run = Lr::bare()
        .env("LR_API_URL", &broker.url)
        .run(&["health", "--insecure-http"])
        .await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains(&format!("{} ready (node 1, leader 1)", broker.url)),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_exits_4_naming_the_failed_check_when_not_ready() {
    let broker = FakeBroker::http().await;
    broker.set_ready(false);
    let run = Lr::bare()
        .env("LR_API_URL", &broker.url)
        .run(&["health", "--insecure-http"])
        .await;
    run.assert_code(4);
    assert!(run.stdout.contains("not ready: leader: "), "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "lr: not ready: {}: leader: this node sees no raft leader",
            broker.url
        )),
        "{run:?}"
    );

    let run = Lr::bare()
        .env("LR_API_URL", &broker.url)
        .run(&["health", "--output", "json", "--insecure-http"])
        .await;
    run.assert_code(4);
    let answer = run.json();
    assert_eq!(answer[0]["ready"], false, "{answer}");
    assert!(
        answer[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("leader: ")),
        "{answer}"
    );
    assert_eq!(answer[0]["readiness"]["checks"][0]["ok"], false, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_of_an_unreachable_node_is_not_ready() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let run = Lr::bare()
        .env("LR_API_URL", &format!("http://127.0.0.1:{port}"))
        .run(&["health", "--insecure-http"])
        .await;
    run.assert_code(4);
    assert!(run.stdout.contains("not ready"), "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_override_env_override_config_file() {
    let broker = FakeBroker::http().await;
    let mut lr = Lr::bare();
    let dir = lr.home().join("config").join("lr");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "api_url = \"{}\"\ntoken = \"{TOKEN}\"\noutput = \"json\"\ninsecure_http = true\n",
            broker.url
        ),
    )
    .unwrap();
    let from_file = lr.run(&["devices"]).await;
    assert_eq!(from_file.assert_code(0).json()[1]["device"], "db-01");
    assert!(from_file.stderr.contains("chmod 600"), "{from_file:?}");

    let mut lr = Lr::bare();
    let dir = lr.home().join("config").join("lr");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "api_url = \"{}\"\ntoken = \"{TOKEN}\"\ninsecure_http = true\n",
            broker.url
        ),
    )
    .unwrap();
    let env_wins = lr.env("LR_TOKEN", "stale").run(&["devices"]).await;
    env_wins.assert_code(3);

    let mut lr = Lr::bare();
    let dir = lr.home().join("config").join("lr");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "api_url = \"{}\"\ntoken = \"stale\"\ninsecure_http = true\n",
            broker.url
        ),
    )
    .unwrap();
    let flag_wins = lr
        .env("LR_TOKEN", "stale-too")
        .run(&["devices", "--token", TOKEN])
        .await;
    flag_wins.assert_code(0);
}
