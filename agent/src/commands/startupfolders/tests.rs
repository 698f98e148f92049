use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::commands::linux::fixture;
use crate::commands::testutil;
use crate::model::Status;

fn paths(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn lists_autostart_entries_and_shell_files_of_the_fixture() {
    let tmp = fixture::build();
    let o = fixture::run(tmp.path(), "startupfolders", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    let me = fixture::own_name(tmp.path());
    assert_eq!(out["errors"], json!([]));
    assert_eq!(out["truncated"], false);

    assert_eq!(
        paths(&out["autostart"]),
        [
            "/etc/xdg/autostart/updater.desktop",
            "/home/alice/.config/autostart/evil.desktop",
            "/home/bob/.config/autostart/off.desktop"
        ]
    );
    let evil = &out["autostart"][1];
    let modified = evil["modified"].as_str().unwrap().to_owned();
    assert_eq!(
        *evil,
        json!({
            "path": "/home/alice/.config/autostart/evil.desktop",
            "scope": "user",
            "user": "alice",
            "owner": me,
            "modified": modified,
            "name": "Not Evil",
            "exec": "/home/alice/.cache/.x/evil",
            "hidden": false,
            "gnome_autostart_enabled": true,
            "enabled": true,
        })
    );
    assert_eq!(out["autostart"][0]["scope"], "system");
    assert_eq!(out["autostart"][0]["user"], Value::Null);
    assert_eq!(out["autostart"][0]["gnome_autostart_enabled"], Value::Null);
    assert_eq!(out["autostart"][0]["enabled"], true);
    assert_eq!(out["autostart"][2]["hidden"], true);
    assert_eq!(out["autostart"][2]["enabled"], false);

    assert_eq!(
        paths(&out["shell_startup"]),
        [
            "/etc/profile",
            "/etc/bash.bashrc",
            "/etc/profile.d/evil.sh",
            "/etc/zsh/zshrc",
            "/home/alice/.bashrc",
            "/home/bob/.zshrc"
        ]
    );
    let bashrc = &out["shell_startup"][4];
    let text = std::fs::read(tmp.path().join("home/alice/.bashrc")).unwrap();
    assert_eq!(bashrc["sha256"], hex::encode(Sha256::digest(&text)));
    assert_eq!(bashrc["size"], text.len());
    assert_eq!(bashrc["user"], "alice");
    assert_eq!(bashrc["owner"], me.as_str());
    assert_eq!(bashrc["scope"], "user");
    assert!(bashrc["modified"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn unreadable_files_are_errors_and_fifos_are_not_opened() {
    let tmp = fixture::build();
    let r = tmp.path();
    // A FIFO in place of a startup file must not hang the command.
    testutil::mkfifo(&r.join("home/bob/.profile"));
    // Not-a-directory and non-UTF-8 content are handled, not panicked on.
    std::fs::write(
        r.join("home/alice/.config/autostart/bin.desktop"),
        b"[Desktop Entry]\nName=\xff\xfe\nExec=/x\n",
    )
    .unwrap();
    let o = fixture::run(r, "startupfolders", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    assert!(!paths(&out["shell_startup"]).contains(&"/home/bob/.profile"));
    let bin = out["autostart"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/home/alice/.config/autostart/bin.desktop")
        .unwrap();
    assert_eq!(bin["name"], "\u{fffd}\u{fffd}");

    // Unreadable for a non-root agent; root reads anything, so only check when not root.
    let secret = r.join("home/alice/.zshrc");
    std::fs::write(&secret, "x").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let o = fixture::run(r, "startupfolders", &[]).await;
    let out = o.output.unwrap();
    let readable = std::fs::read(&secret).is_ok();
    let entry = out["shell_startup"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/home/alice/.zshrc")
        .unwrap()
        .clone();
    if readable {
        assert!(entry["sha256"].is_string());
    } else {
        assert_eq!(entry["sha256"], Value::Null);
        assert_eq!(out["errors"][0]["path"], "/home/alice/.zshrc");
    }
}

#[tokio::test]
async fn live_run_returns_a_result() {
    let o = testutil::run("startupfolders", "/", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    assert!(out["autostart"].is_array() && out["shell_startup"].is_array());
}
