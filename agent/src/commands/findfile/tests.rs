use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::commands::testutil::{mkfifo, run};
use crate::commands::{CommandContext, execute};
use crate::model::Status;

fn paths(out: &Value) -> Vec<String> {
    out["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap().to_owned())
        .collect()
}

fn fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("a/b/c")).unwrap();
    std::fs::write(d.join("a/x.log"), b"1").unwrap();
    std::fs::write(d.join("a/b/y.log"), b"22").unwrap();
    std::fs::write(d.join("a/b/c/z.txt"), b"").unwrap();
    std::fs::write(d.join(OsStr::from_bytes(b"a/b/w\xff.log")), b"").unwrap();
    mkfifo(&d.join("a/pipe.log"));
    // A loop and a link out of the tree: neither may be followed.
    std::os::unix::fs::symlink("..", d.join("a/b/up")).unwrap();
    std::os::unix::fs::symlink("/etc", d.join("a/etc")).unwrap();
    tmp
}

#[tokio::test]
async fn finds_by_glob_without_following_links() {
    let tmp = fixture();
    let root = tmp.path().to_str().unwrap();
    let o = run("findfile", "/", &["*.log", "-path", root]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    assert_eq!(
        paths(&out),
        [
            format!("{root}/a/b/w\u{fffd}.log"),
            format!("{root}/a/b/y.log"),
            format!("{root}/a/pipe.log"),
            format!("{root}/a/x.log"),
        ]
    );
    assert_eq!(out["matches"][0]["path_lossy"], true);
    assert_eq!(out["matches"][1]["size"], 2);
    assert_eq!(out["matches"][2]["type"], "fifo");
    assert_eq!(out["truncated"], false);
    assert_eq!(out["pattern"], "*.log");
    assert_eq!(out["root"], root);

    // Relative root, literal name, symlinks matched as names but not entered.
    let o = run("findfile", root, &["up", "-path", "a"]).await;
    let out = o.output.unwrap();
    assert_eq!(paths(&out), [format!("{root}/a/b/up")]);
    assert_eq!(out["matches"][0]["type"], "symlink");
    let o = run("findfile", root, &["passwd", "-path", "a"]).await;
    assert!(paths(&o.output.unwrap()).is_empty());
}

#[tokio::test]
async fn max_truncates() {
    let tmp = fixture();
    let o = run(
        "findfile",
        tmp.path().to_str().unwrap(),
        &["*", "-path", ".", "-max", "2"],
    )
    .await;
    let out = o.output.unwrap();
    assert_eq!(out["truncated"], true);
    assert_eq!(out["matches"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_arguments() {
    for args in [
        vec![],
        vec!["a/b"],
        vec!["x", "-max", "0"],
        vec!["x", "-max", "lots"],
        vec!["x", "-xdev", "maybe"],
        vec!["x", "-xdev", "yes"],
        vec!["x", "-max", "10001"],
        vec!["x", "-path", ""],
        vec!["[x"],
    ] {
        let o = run("findfile", "/", &args).await;
        assert_eq!(o.status, Status::InvalidArguments, "{args:?}");
        assert!(o.error.contains("usage: findfile"), "{}", o.error);
    }
    let o = run("findfile", "/", &["a/b"]).await;
    assert!(o.error.starts_with("'a/b' holds a '/'"), "{}", o.error);
    let o = run("findfile", "/", &["x", "-max", "10001"]).await;
    assert!(
        o.error
            .starts_with("-max 10001 is above the limit of 10000"),
        "{}",
        o.error
    );
    let o = run("findfile", "/", &["x", "-path", "/nonexistent-root"]).await;
    assert_eq!(o.status, Status::Failed);
}

#[tokio::test]
async fn skips_proc_and_other_filesystems() {
    // From "/", /proc is skipped (and is another filesystem anyway); "self" only exists there.
    let o = run("findfile", "/", &["self", "-path", "/", "-max", "5"]).await;
    let found = paths(&o.output.unwrap());
    assert!(!found.iter().any(|p| p.starts_with("/proc")), "{found:?}");
    // With the root inside /proc the walk goes there.
    let o = run(
        "findfile",
        "/",
        &["status", "-path", "/proc/self", "-max", "1"],
    )
    .await;
    assert_eq!(paths(&o.output.unwrap()).len(), 1);
}

#[tokio::test]
async fn cancel_stops_within_a_second() {
    let ctx = CommandContext::new("/", Duration::from_secs(600));
    // The whole machine (-allfs from "/") is a tree whose walk takes far longer than the wait
    // below; the wait only lets the walk get going, the status is CANCELLED either way.
    let task = tokio::spawn(execute(
        ctx.clone(),
        "findfile",
        vec![
            "no-such-name-*".into(),
            "-path".into(),
            "/".into(),
            "-allfs".into(),
        ],
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    ctx.cancel();
    let cancelled_at = Instant::now();
    let o = task.await.unwrap();
    assert!(cancelled_at.elapsed() < Duration::from_secs(1));
    assert_eq!(o.status, Status::Cancelled, "{}", o.error);
    assert!(o.output.unwrap()["matches"].is_array());
}

#[tokio::test]
async fn deadline_gives_timed_out_with_partial_result() {
    // A name nothing has, so the walk covers the whole machine: far more than 50 ms of work.
    let ctx = CommandContext::new("/", Duration::from_millis(50));
    let o = execute(
        ctx,
        "findfile",
        vec![
            "no-such-name-*".into(),
            "-path".into(),
            "/".into(),
            "-allfs".into(),
        ],
    )
    .await;
    assert_eq!(o.status, Status::TimedOut, "{}", o.error);
    assert!(o.error.contains("timed out"), "{}", o.error);
    assert!(o.output.unwrap()["matches"].is_array());
}

#[test]
fn stays_on_one_filesystem_unless_told() {
    let ctx = CommandContext::new("/", Duration::from_secs(60));
    for (args, one_fs) in [
        (&["x"][..], true),
        (&["x", "-xdev", "true"], true),
        (&["x", "-xdev", "false"], false),
        (&["x", "-allfs"], false),
        (&["x", "-xdev", "true", "-allfs"], false),
    ] {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let invocation = ::commands::parse_args("findfile", &args).unwrap();
        let search = super::search(&ctx, &invocation).unwrap();
        assert_eq!(search.one_fs, one_fs, "{args:?}");
        assert_eq!(search.max, super::DEFAULT_MAX);
        assert_eq!(search.root, std::path::Path::new("/"));
    }
}
