use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::commands::testutil::{mkfifo, run};
use crate::model::Status;

fn entry<'a>(out: &'a Value, name: &str) -> &'a Value {
    out["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name} in {out}"))
}

#[tokio::test]
async fn lists_a_fixture_tree_without_opening_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("file.txt"), b"hello").unwrap();
    std::fs::set_permissions(d.join("file.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::os::unix::fs::symlink("file.txt", d.join("link")).unwrap();
    std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
    mkfifo(&d.join("pipe"));
    std::fs::write(d.join(OsStr::from_bytes(b"bad\xffname")), b"").unwrap();

    let o = run("dir", d.to_str().unwrap(), &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    assert_eq!(out["path"], d.to_str().unwrap());
    assert_eq!(out["truncated"], false);
    assert_eq!(out["entries"].as_array().unwrap().len(), 6);

    let f = entry(&out, "file.txt");
    assert_eq!(f["type"], "file");
    assert_eq!(f["size"], 5);
    assert_eq!(f["mode"], "0640");
    assert_eq!(f["mode_string"], "-rw-r-----");
    let md = std::fs::metadata(d.join("file.txt")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(f["uid"], md.uid());
    let names = crate::sys::users::Names::load();
    assert_eq!(f["owner"], names.user_or_number(md.uid()));
    assert_eq!(f["group"], names.group_or_number(md.gid()));
    assert!(f["modified"].as_str().unwrap().ends_with('Z'));
    assert_eq!(f["target"], Value::Null);

    assert_eq!(entry(&out, "sub")["type"], "dir");
    assert_eq!(entry(&out, "link")["type"], "symlink");
    assert_eq!(entry(&out, "link")["target"], "file.txt");
    assert_eq!(entry(&out, "loop")["target"], "loop");
    assert_eq!(entry(&out, "pipe")["type"], "fifo");
    let bad = entry(&out, "bad\u{fffd}name");
    assert_eq!(bad["name_lossy"], true);
    assert_eq!(entry(&out, "sub")["name_lossy"], false);

    // Sorted by name.
    let names: Vec<_> = out["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[tokio::test]
async fn relative_path_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    std::fs::write(tmp.path().join("sub/a"), b"").unwrap();
    std::fs::write(tmp.path().join("f"), b"").unwrap();
    let root = tmp.path().to_str().unwrap();

    let o = run("dir", root, &["sub"]).await;
    assert_eq!(o.output.unwrap()["entries"][0]["name"], "a");

    let o = run("dir", root, &["f"]).await;
    assert_eq!(o.status, Status::Failed);
    assert!(o.error.contains("use fileinfo"), "{}", o.error);

    let o = run("dir", root, &["nope"]).await;
    assert_eq!(o.status, Status::Failed);
    assert!(o.error.starts_with("cannot list"), "{}", o.error);
}

#[tokio::test]
async fn truncates_big_directories() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..super::MAX_ENTRIES + 25 {
        std::fs::File::create(tmp.path().join(format!("f{i}"))).unwrap();
    }
    let o = run("dir", tmp.path().to_str().unwrap(), &[]).await;
    let out = o.output.unwrap();
    assert_eq!(out["truncated"], true);
    assert_eq!(out["more"], 25);
    assert_eq!(out["entries"].as_array().unwrap().len(), super::MAX_ENTRIES);
}

#[tokio::test]
async fn live_proc_and_dev() {
    // /dev holds devices: listing must not open them.
    let o = run("dir", "/", &["/dev"]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    assert_eq!(entry(&out, "null")["type"], "char_device");
}
