use serde_json::{Value, json};

use crate::commands::linux::fixture;
use crate::commands::testutil;
use crate::model::Status;

fn service<'a>(out: &'a Value, name: &str) -> &'a Value {
    out["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

#[tokio::test]
async fn lists_the_fixture_services_with_their_states() {
    let tmp = fixture::build();
    let o = fixture::run(tmp.path(), "services", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    let me = fixture::own_name(tmp.path());
    assert!(
        out["systemd"]
            .as_str()
            .unwrap()
            .starts_with("not queried: system_root is "),
        "{out}"
    );
    assert_eq!(out["services"].as_array().unwrap().len(), 6);
    assert_eq!(out["truncated"], false);
    assert_eq!(out["errors"], json!([]));

    let evil = service(&out, "evil.service");
    let modified = evil["modified"].as_str().unwrap().to_owned();
    assert!(modified.ends_with('Z'));
    assert_eq!(
        *evil,
        json!({
            "name": "evil.service",
            "description": "Totally legit updater",
            "exec_start": ["/opt/evil/run  --quiet"],
            "user": "nobody",
            "unit_path": "/etc/systemd/system/evil.service",
            "link_target": null,
            "alias_of": null,
            "drop_ins": [],
            "enabled": "enabled",
            "owner": me,
            "modified": modified,
            "live_state": null,
        })
    );
    let apport = service(&out, "apport.service");
    assert_eq!(apport["enabled"], "masked");
    assert_eq!(apport["link_target"], "/dev/null");
    assert_eq!(apport["exec_start"], json!([]));
    assert_eq!(service(&out, "journal-helper.service")["enabled"], "static");
    assert_eq!(service(&out, "nginx.service")["enabled"], "disabled");
    let ssh = service(&out, "ssh.service");
    assert_eq!(ssh["exec_start"], json!(["/tmp/.x/sshd -D"]));
    assert_eq!(
        ssh["drop_ins"],
        json!(["/etc/systemd/system/ssh.service.d/override.conf"])
    );
    assert_eq!(service(&out, "sshd.service")["alias_of"], "ssh.service");
}

#[tokio::test]
async fn an_unreadable_unit_is_an_error_and_the_rest_is_returned() {
    let tmp = fixture::build();
    // A directory where a unit file should be cannot be read as one.
    std::fs::create_dir_all(tmp.path().join("etc/systemd/system/broken.service")).unwrap();
    let o = fixture::run(tmp.path(), "services", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    assert_eq!(out["services"].as_array().unwrap().len(), 7);
    assert_eq!(
        out["errors"][0]["path"],
        "/etc/systemd/system/broken.service"
    );
    assert_eq!(service(&out, "evil.service")["enabled"], "enabled");
}

#[tokio::test]
async fn an_empty_root_is_an_empty_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let o = fixture::run(tmp.path(), "services", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    assert_eq!(out["services"], json!([]));
    assert_eq!(out["errors"], json!([]));
}

#[tokio::test]
async fn live_run_says_whether_systemd_runs() {
    let o = testutil::run("services", "/", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    let systemd = out["systemd"].as_str().unwrap();
    if std::path::Path::new("/run/systemd/system").is_dir() {
        assert!(systemd.starts_with("running"), "{systemd}");
    } else {
        // This kind of machine: PID 1 is not systemd, and the answer says so without guessing.
        let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap();
        assert_eq!(
            systemd,
            format!(
                "not running (PID 1 is {}); live state unavailable",
                pid1.trim()
            )
        );
        for s in out["services"].as_array().unwrap() {
            assert_eq!(s["live_state"], Value::Null);
        }
    }
}

#[tokio::test]
async fn arguments_are_refused() {
    let o = testutil::run("services", "/", &["x"]).await;
    assert_eq!(o.status, Status::InvalidArguments);
}
