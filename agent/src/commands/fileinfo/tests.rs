use std::time::Duration;

use crate::commands::testutil::{mkfifo, run};
use crate::commands::{CommandContext, execute};
use crate::model::{FileKind, Status};

fn tool_digest(tool: &str, path: &std::path::Path) -> String {
    let out = std::process::Command::new(tool).arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn hashes_match_coreutils() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(".hidden.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&path, &data).unwrap();

    let o = run("fileinfo", tmp.path().to_str().unwrap(), &[".hidden.bin"]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let facts = o.file_facts.unwrap();
    let out = o.output.unwrap();
    // The typed facts say what the document says.
    assert_eq!(facts.path, out["path"]);
    assert_eq!(facts.kind, FileKind::File);
    assert_eq!(facts.size, 200_000);
    assert_eq!(facts.sha256.unwrap(), out["hashes"]["sha256"]);
    assert_eq!(facts.hashes_note, None);
    assert_eq!(out["hashes"]["sha256"], tool_digest("sha256sum", &path));
    assert_eq!(out["hashes"]["sha1"], tool_digest("sha1sum", &path));
    assert_eq!(out["hashes"]["md5"], tool_digest("md5sum", &path));
    assert_eq!(out["size"], 200_000);
    assert_eq!(out["hidden"], true);
    assert_eq!(out["type"], "file");
    assert_eq!(out["magic"], "data");
    assert_eq!(out["hard_links"], 1);
    assert_eq!(out["hashes_note"], serde_json::Value::Null);
    for key in ["modified", "accessed", "changed"] {
        assert!(out[key].as_str().unwrap().ends_with('Z'), "{key}: {out}");
    }
}

#[tokio::test]
async fn fifo_and_dir_get_metadata_without_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe");
    mkfifo(&fifo);
    // Never opened: if it were, this would hang until the test's timeout.
    let o = run("fileinfo", "/", &[fifo.to_str().unwrap()]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let facts = o.file_facts.unwrap();
    assert_eq!((facts.kind, facts.sha256), (FileKind::Fifo, None));
    assert!(facts.hashes_note.unwrap().contains("not opened"));
    let out = o.output.unwrap();
    assert_eq!(out["type"], "fifo");
    assert_eq!(out["hashes"], serde_json::Value::Null);
    assert!(out["hashes_note"].as_str().unwrap().contains("not opened"));

    let o = run("fileinfo", "/", &[tmp.path().to_str().unwrap()]).await;
    assert_eq!(o.output.unwrap()["type"], "dir");

    let o = run("fileinfo", "/", &["/dev/null"]).await;
    assert_eq!(o.output.unwrap()["type"], "char_device");
}

#[tokio::test]
async fn symlinks_are_followed_and_shown() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("real"), b"#!/bin/sh\necho hi\n").unwrap();
    std::os::unix::fs::symlink("real", tmp.path().join("link")).unwrap();
    std::os::unix::fs::symlink("loop", tmp.path().join("loop")).unwrap();
    let root = tmp.path().to_str().unwrap();

    let o = run("fileinfo", root, &["link"]).await;
    let out = o.output.unwrap();
    assert_eq!(out["type"], "file");
    assert_eq!(out["symlink_target"], "real");
    assert_eq!(out["magic"], "script");
    assert!(out["hashes"]["sha256"].is_string());

    let o = run("fileinfo", root, &["loop"]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    assert_eq!(out["type"], "symlink");
    assert_eq!(out["hashes"], serde_json::Value::Null);
    assert!(
        out["hashes_note"]
            .as_str()
            .unwrap()
            .contains("cannot be reached")
    );
}

#[tokio::test]
async fn missing_file_and_bad_args() {
    let o = run("fileinfo", "/", &["/definitely/not/here"]).await;
    assert_eq!(o.status, Status::Failed);
    assert!(o.error.contains("no such file"), "{}", o.error);
    let o = run("fileinfo", "/", &[]).await;
    assert_eq!(o.status, Status::InvalidArguments);
}

#[tokio::test]
async fn cancel_mid_hash_returns_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big");
    // Sparse: large to hash, free to create.
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(8 * 1024 * 1024 * 1024).unwrap();
    let ctx = CommandContext::new("/", Duration::from_secs(600));
    let task = tokio::spawn(execute(
        ctx.clone(),
        "fileinfo",
        vec![path.to_str().unwrap().to_owned()],
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cancelled_at = std::time::Instant::now();
    ctx.cancel();
    let o = task.await.unwrap();
    assert!(cancelled_at.elapsed() < Duration::from_secs(1));
    assert_eq!(o.status, Status::Cancelled, "{}", o.error);
    assert_eq!(o.file_facts, None, "only a completed fileinfo states facts");
    let out = o.output.unwrap();
    assert_eq!(out["size"], 8u64 * 1024 * 1024 * 1024);
    assert_eq!(out["hashes"], serde_json::Value::Null);
    assert!(
        out["hashes_note"]
            .as_str()
            .unwrap()
            .starts_with("stopped after")
    );
}
