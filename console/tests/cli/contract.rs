//! What `lr` does with the contract of the API beyond single calls: lists read page after page
//! (and cut at 10,000 items), opens and submissions retried with one idempotency key after a lost
//! answer, and `whoami`.

use crate::Lr;
use crate::fake_broker::FakeBroker;

/// A key the console picked: a hyphenated UUIDv7.
fn assert_uuid_v7(key: &str) {
    let dashes: Vec<usize> = key.match_indices('-').map(|(at, _)| at).collect();
    assert_eq!(key.len(), 36, "{key}");
    assert_eq!(dashes, [8, 13, 18, 23], "{key}");
    assert_eq!(&key[14..15], "7", "version 7: {key}");
}

/// The keys of the POSTs to `path`: exactly `count` groups of two equal keys (a first attempt
/// and its retry), each group with a key of its own.
fn assert_retried_with_one_key(broker: &FakeBroker, path: &str, count: usize) {
    let keys: Vec<String> = broker
        .keys(path)
        .into_iter()
        .map(|k| k.unwrap_or_else(|| panic!("a POST to {path} without a key")))
        .collect();
    assert_eq!(keys.len(), 2 * count, "{keys:?}");
    for pair in keys.chunks(2) {
        assert_eq!(pair[0], pair[1], "a retry with another key: {keys:?}");
        assert_uuid_v7(&pair[0]);
    }
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), count, "one key per request: {keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_are_read_page_after_page() {
    let broker = FakeBroker::http().await;
    broker.set_page_size(7);
    broker.add_devices(25);
    let run = Lr::at(&broker).run(&["devices", "--output", "json"]).await;
    let devices: Vec<String> = run
        .assert_code(0)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap().to_owned())
        .collect();
    let mut expected = vec!["web-07".to_owned(), "db-01".to_owned()];
    expected.extend((1..=25).map(|n| format!("dev-{n:05}")));
    assert_eq!(devices, expected, "every page, once, in order");
    assert!(run.stderr.is_empty(), "{run:?}");
    // The query of each page: as many items as a page may hold, after the `next` of the page
    // before.
    let asked: Vec<Vec<String>> = broker
        .uris()
        .into_iter()
        .filter_map(|u| u.strip_prefix("/api/v1/devices?").map(str::to_owned))
        .map(|query| {
            let mut pairs: Vec<String> = query.split('&').map(str::to_owned).collect();
            pairs.sort();
            pairs
        })
        .collect();
    assert_eq!(
        asked,
        [
            vec!["limit=1000"],
            vec!["after=dev-00005", "limit=1000"],
            vec!["after=dev-00012", "limit=1000"],
            vec!["after=dev-00019", "limit=1000"],
        ],
    );

    // A table shows the whole list too; so do sessions and a session's commands.
    let table = Lr::at(&broker).run(&["devices"]).await;
    assert!(
        table.assert_code(0).stdout.contains("dev-00025"),
        "{table:?}"
    );
    broker.set_page_size(2);
    let mut id = String::new();
    for device in ["web-07", "db-01", "app-03"] {
        let open = Lr::at(&broker).run(&["session", "open", device]).await;
        id = open.assert_code(0).stdout.trim().to_owned();
    }
    let sessions = Lr::at(&broker).run(&["sessions", "--output", "json"]).await;
    assert_eq!(
        sessions.assert_code(0).json().as_array().unwrap().len(),
        3,
        "{sessions:?}"
    );
    for line in [&["dir"][..], &["processes"], &["cd", "/tmp"]] {
        let mut args = vec!["session", "run", id.as_str(), "--"];
        args.extend_from_slice(line);
        Lr::at(&broker).run(&args).await.assert_code(0);
    }
    let commands = Lr::at(&broker)
        .run(&["session", "commands", &id, "--output", "json"])
        .await;
    let lines: Vec<String> = commands
        .assert_code(0)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command_line"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(lines, ["dir", "processes", "cd -path /tmp"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_is_cut_at_ten_thousand_items_and_says_so() {
    let broker = FakeBroker::http().await;
    broker.add_devices(10_005);
    let run = Lr::at(&broker).run(&["devices", "--output", "json"]).await;
    let devices = run.assert_code(0).json();
    let devices = devices.as_array().unwrap();
    assert_eq!(devices.len(), 10_000);
    assert_eq!(devices[9_999]["device"], "dev-09998");
    assert_eq!(
        run.stderr,
        "lr: the list was cut: only the first 10000 devices are shown\n"
    );
    assert_eq!(
        broker.requests(),
        vec!["GET /api/v1/devices"; 10],
        "no page is asked for past the cut"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_whose_answer_was_lost_is_retried_with_the_same_key() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .run(&["exec", "drop-open", "--", "dir", "--output", "json"])
        .await;
    assert_eq!(run.assert_code(0).json()["state"], "completed");
    assert_retried_with_one_key(&broker, "/api/v1/sessions", 1);
    assert_eq!(broker.sessions_opened(), 1, "one session, not two");
    assert!(
        broker.saw("DELETE /api/v1/sessions/s-1"),
        "{:?}",
        broker.requests()
    );
    assert_eq!(broker.open_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_submission_whose_answer_was_lost_is_retried_with_the_same_key() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .run(&[
            "exec",
            "drop-submit",
            "--",
            "dir",
            "/tmp",
            "--output",
            "json",
        ])
        .await;
    let doc = run.assert_code(0).json();
    assert_eq!(doc["command_id"], "c-2");
    assert_eq!(doc["output"]["path"], "/tmp");
    assert_retried_with_one_key(&broker, "/api/v1/sessions/s-1/commands", 1);
    assert_eq!(broker.command_lines(), ["dir -path /tmp"], "ran once");
    assert!(broker.saw("DELETE /api/v1/sessions/s-1"));

    // Each command of a console gets a key of its own, kept across its retry.
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker)
        .stdin("dir\nprocesses\n")
        .run(&["connect", "drop-submit"])
        .await;
    run.assert_code(0);
    assert!(run.stdout.contains("sshd"), "{run:?}");
    assert_retried_with_one_key(&broker, "/api/v1/sessions/s-1/commands", 2);
    assert_eq!(broker.command_lines(), ["dir", "processes"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn whoami_says_who_the_token_belongs_to() {
    let broker = FakeBroker::http().await;
    let run = Lr::at(&broker).run(&["whoami"]).await;
    assert_eq!(
        run.assert_code(0).stdout,
        "analyst-b (tenant demo)\nroles: responder-basic, responder-advanced (groups servers, dbs)\n"
    );
    let json = Lr::at(&broker).run(&["whoami", "--output", "json"]).await;
    let me = json.assert_code(0).json();
    assert_eq!(
        (me["user"].as_str(), me["tenant"].as_str()),
        (Some("analyst-b"), Some("demo"))
    );
    assert!(broker.saw("GET /api/v1/me"));

    let refused = Lr::at(&broker)
        .env("LR_TOKEN", "wrong")
        .run(&["whoami"])
        .await;
    refused.assert_code(3);
    assert!(refused.stdout.is_empty(), "{refused:?}");
    assert!(
        refused.stderr.contains("lr: hint: check LR_TOKEN"),
        "{refused:?}"
    );

    // In the console: answered here, never sent to the device.
    let run = Lr::at(&broker)
        .stdin("whoami\nwhoami -output json\n")
        .run(&["connect", "web-07"])
        .await;
    run.assert_code(0);
    assert!(
        run.stdout.starts_with("analyst-b (tenant demo)\n"),
        "{run:?}"
    );
    assert!(run.stdout.contains(r#""tenant": "demo""#), "{run:?}");
    assert!(broker.command_lines().is_empty());
}
