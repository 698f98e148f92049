use std::time::Duration;

use serde_json::Value;

use super::scan;
use crate::commands::CommandContext;
use crate::commands::testutil::run;
use crate::model::Status;
use crate::sys::procfs::ProcRoot;
use crate::sys::users::Names;

fn find(out: &Value, pid: u32) -> Option<&Value> {
    out["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
}

#[tokio::test]
async fn live_scan_contains_this_test_process() {
    let o = run("processes", "/", &["-hash"]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    let me = find(&out, std::process::id()).expect("own pid listed");
    let my_args: Vec<String> = std::env::args().collect();
    assert_eq!(me["args"], serde_json::json!(my_args));
    assert_eq!(me["command_line"], my_args.join(" "));
    let exe = std::env::current_exe().unwrap();
    assert_eq!(me["image_path"], exe.to_str().unwrap());
    let names = Names::load();
    assert_eq!(
        me["user"],
        names.user_or_number(me["uid"].as_u64().unwrap() as u32)
    );
    assert!(me["threads"].as_u64().unwrap() >= 1);
    assert!(me["rss_bytes"].as_u64().unwrap() > 0);
    assert!(me["start_time"].as_str().unwrap().ends_with('Z'));
    let sha = std::process::Command::new("sha256sum")
        .arg(&exe)
        .output()
        .unwrap();
    let sha = String::from_utf8(sha.stdout).unwrap();
    assert_eq!(me["sha256"], sha.split_whitespace().next().unwrap());
}

#[test]
fn fixture_tree_with_vanished_and_kernel_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    std::fs::write(p.join("stat"), "cpu 1 2 3\nbtime 1700000000\n").unwrap();
    // A normal process.
    std::fs::create_dir(p.join("10")).unwrap();
    std::fs::write(
        p.join("10/stat"),
        "10 (sshd: alice) S 1 10 10 0 -1 0 0 0 0 0 250 50 0 0 20 0 2 0 150 0 0",
    )
    .unwrap();
    std::fs::write(
        p.join("10/status"),
        "Uid:\t1000\t1000\t1000\t1000\nVmRSS:\t8 kB\n",
    )
    .unwrap();
    std::fs::write(p.join("10/cmdline"), b"sshd: alice\0-D\0").unwrap();
    std::fs::write(p.join("image"), b"binary").unwrap();
    std::os::unix::fs::symlink(p.join("image"), p.join("10/exe")).unwrap();
    // A kernel thread: no cmdline content, no exe, no VmRSS.
    std::fs::create_dir(p.join("2")).unwrap();
    std::fs::write(
        p.join("2/stat"),
        "2 (kthreadd) S 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0",
    )
    .unwrap();
    std::fs::write(p.join("2/status"), "Uid:\t0\t0\t0\t0\n").unwrap();
    std::fs::write(p.join("2/cmdline"), b"").unwrap();
    // Vanished: the directory is there, its files are not.
    std::fs::create_dir(p.join("99")).unwrap();

    let names = Names::parse("alice:x:1000:1000::/:/bin/sh\n", "");
    let ctx = CommandContext::new("/", Duration::from_secs(10));
    let out = scan(&ctx, &ProcRoot::new(p), &names, true).unwrap().value;
    let list = out["processes"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{out}");

    let sshd = find(&out, 10).unwrap();
    assert_eq!(sshd["name"], "sshd: alice");
    assert_eq!(sshd["ppid"], 1);
    assert_eq!(sshd["user"], "alice");
    assert_eq!(sshd["args"], serde_json::json!(["sshd: alice", "-D"]));
    assert_eq!(sshd["command_line"], "sshd: alice -D");
    assert_eq!(sshd["rss_bytes"], 8192);
    assert_eq!(sshd["threads"], 2);
    assert_eq!(sshd["state"], "sleeping");
    // 300 ticks at the fallback 100 Hz (the fixture has no auxv).
    assert_eq!(sshd["cpu_seconds"], 3.0);
    assert_eq!(sshd["start_time"], "2023-11-14T22:13:21.5Z");
    assert_eq!(
        sshd["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"binary"))
    );

    let k = find(&out, 2).unwrap();
    assert_eq!(k["image_path"], Value::Null);
    assert_eq!(k["sha256"], Value::Null);
    assert_eq!(k["rss_bytes"], Value::Null);
    assert_eq!(k["args"], serde_json::json!([]));
    assert!(out["errors"].as_array().unwrap().is_empty(), "{out}");
}

#[test]
fn missing_boot_time_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = CommandContext::new("/", Duration::from_secs(10));
    let out = scan(&ctx, &ProcRoot::new(tmp.path()), &Names::default(), false)
        .unwrap()
        .value;
    assert!(
        out["errors"][0]
            .as_str()
            .unwrap()
            .contains("boot time unknown")
    );
}

#[tokio::test]
async fn rejects_unknown_parameters() {
    let o = run("processes", "/", &["-bogus"]).await;
    assert_eq!(o.status, Status::InvalidArguments);
    assert!(o.error.contains("usage: processes [-hash]"), "{}", o.error);
}
