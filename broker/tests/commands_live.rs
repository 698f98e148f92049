//! Every basic command through a real cluster against this machine, checked against facts the
//! test can verify on its own: its own process, a listener it opened, persistence it planted.

mod common;

use std::net::TcpListener;

use common::Stack;
use reqwest::StatusCode;
use serde_json::Value;

fn entries<'a>(output: &'a Value, list: &str) -> &'a Vec<Value> {
    output[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_basic_command_tells_the_truth_about_this_machine() {
    let mut stack = Stack::start(3, "").await;

    // A fixture root with planted persistence: a cron file and an authorized key.
    let root = stack.path().join("root");
    std::fs::create_dir_all(root.join("etc/cron.d")).unwrap();
    std::fs::create_dir_all(root.join("home/mallory/.ssh")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nmallory:x:1001:1001::/home/mallory:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/cron.d/updater"),
        "*/5 * * * * root /usr/local/bin/updater --beacon\n",
    )
    .unwrap();
    std::fs::write(
        root.join("home/mallory/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlanTedKeyPlanTedKeyPlanTedKeyPlanTedKey0 planted@attacker\n",
    )
    .unwrap();
    stack
        .start_agent_on("demo", "web-07", "web-07", &[3], &root)
        .await;
    stack.wait_online("token-a", "web-07", Some(3)).await;
    let (status, session) = stack.open(1, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["session_id"].as_str().unwrap().to_string();
    let run = |line: &'static str| {
        let stack = &stack;
        let id = id.clone();
        async move {
            let command = stack.run(1, "token-a", &id, line).await;
            assert_eq!(command["state"], "completed", "{line}: {command}");
            command["output"].clone()
        }
    };

    // processes: this test's own pid and command line.
    let processes = run("processes").await;
    let me = std::process::id();
    let own = entries(&processes, "processes")
        .iter()
        .find(|p| p["pid"] == me)
        .expect("own pid listed");
    let exe = std::env::args().next().unwrap();
    assert!(
        own["command_line"].as_str().unwrap().contains(&exe),
        "{own}"
    );

    // connections: a listener opened here, owned by this process.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = run("connections").await;
    let mine = entries(&connections, "connections")
        .iter()
        .find(|c| c["local_port"] == port && c["state"] == "LISTEN")
        .unwrap_or_else(|| panic!("listener on {port} not listed"));
    assert_eq!(mine["pid"], me, "{mine}");
    drop(listener);

    // persistence: the planted cron entry and key.
    let persistence = run("persistence").await;
    let planted = entries(&persistence, "entries");
    assert!(
        planted.iter().any(|e| e["mechanism"] == "cron"
            && e["command"]
                .as_str()
                .unwrap_or("")
                .contains("/usr/local/bin/updater")),
        "{persistence}"
    );
    assert!(
        planted.iter().any(|e| e["mechanism"] == "authorized_keys"
            && e["location"] == "/home/mallory/.ssh/authorized_keys"),
        "{persistence}"
    );

    // The rest answer from the real system (or say what they could not read).
    let scheduled = run("scheduledtasks").await;
    assert!(
        entries(&scheduled, "tasks")
            .iter()
            .any(|t| t["command"].as_str().unwrap_or("").contains("updater")),
        "{scheduled}"
    );
    for line in [
        "drivers",
        "services",
        "startupfolders",
        "dir /",
        "fileinfo /etc/hostname",
        "findfile hostname -path /etc -max 5",
        "help",
    ] {
        run(line).await;
    }

    // registry is a Windows command.
    let registry = stack.run(1, "token-a", &id, "registry").await;
    assert_eq!(registry["state"], "rejected", "{registry}");
    assert_eq!(
        registry["error"],
        "registry is a Windows command; not supported on linux"
    );
}
