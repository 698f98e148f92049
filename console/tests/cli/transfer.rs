//! Transfers: getfile in the foreground (download, SHA-256 check, resume with Range), in the
//! background of the REPL (`&`, `jobs`, `fg`), putfile, and the library commands.

use std::path::{Path, PathBuf};

use crate::Lr;
use crate::fake_broker::{FakeBroker, file_content, sha256_hex};

/// A downloads folder (not created yet) that outlives each `lr` run.
fn downloads() -> (tempfile::TempDir, PathBuf) {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("evidence");
    (base, dir)
}

/// `lr` at `broker`, saving downloads in `dir`.
fn lr(broker: &FakeBroker, dir: &Path) -> Lr {
    let mut lr = Lr::at(broker);
    lr.env("LR_DOWNLOADS_DIR", dir.to_str().unwrap());
    lr
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn assert_saved(path: &Path, device_path: &str) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let expected = file_content(device_path).unwrap();
    assert_eq!(bytes.len(), expected.len());
    assert!(bytes == expected, "content of {}", path.display());
    assert_eq!(sha256_hex(&bytes), sha256_hex(&expected));
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_getfile_downloads_verifies_and_names_the_file() {
    let broker = FakeBroker::http().await;
    let (_base, dir) = downloads();
    let run = lr(&broker, &dir)
        .run(&["exec", "web-07", "--", "getfile", "/data/report.bin"])
        .await;
    run.assert_code(0);
    let saved = dir.join("report.bin");
    assert!(
        run.stdout
            .starts_with(&format!("saved to {} (", saved.display())),
        "{run:?}"
    );
    assert!(run.stdout.contains("SHA-256 verified"), "{run:?}");
    assert_saved(&saved, "/data/report.bin");
    assert_eq!(files_in(&dir), ["report.bin"], "no .part left behind");
    assert_eq!(broker.content_ranges(), [None], "one request, no range");
    assert_eq!(broker.command_lines(), ["getfile -path /data/report.bin"]);
    assert!(broker.saw("DELETE /api/v1/sessions/s-1"));

    // The same file again gets a new name and leaves the first alone; JSON names where.
    let run = lr(&broker, &dir)
        .run(&[
            "exec",
            "web-07",
            "--",
            "download",
            "/data/report.bin",
            "--output",
            "json",
        ])
        .await;
    run.assert_code(0);
    let doc = run.json();
    let second = dir.join("report (1).bin");
    assert_eq!(doc["saved_to"], second.to_str().unwrap());
    assert_eq!(doc["state"], "completed");
    assert_saved(&second, "/data/report.bin");
    assert_saved(&saved, "/data/report.bin");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_content_stream_is_resumed_with_range() {
    let broker = FakeBroker::http().await;
    let (_base, dir) = downloads();
    let run = lr(&broker, &dir)
        .run(&["session", "run", "s-0", "--", "getfile", "/data/flaky.bin"])
        .await;
    // No session s-0: open one through exec instead, the path under test is the same.
    run.assert_code(2);
    let run = lr(&broker, &dir)
        .run(&["exec", "web-07", "--", "getfile", "/data/flaky.bin"])
        .await;
    run.assert_code(0);
    let ranges = broker.content_ranges();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let half = file_content("/data/flaky.bin").unwrap().len() / 2;
    assert_eq!(
        ranges[1].as_deref(),
        Some(format!("bytes={half}-").as_str())
    );
    assert_saved(&dir.join("flaky.bin"), "/data/flaky.bin");
    assert_eq!(files_in(&dir), ["flaky.bin"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_part_file_of_the_same_transfer_is_resumed() {
    let broker = FakeBroker::http().await;
    let (_base, dir) = downloads();
    // The first 1000 bytes are already in the part file of the transfer the fake will start
    // (session s-1, then transfer t-2).
    std::fs::create_dir_all(&dir).unwrap();
    let content = file_content("/data/report.bin").unwrap();
    std::fs::write(dir.join("report.bin.t-2.part"), &content[..1000]).unwrap();
    let run = lr(&broker, &dir)
        .run(&["exec", "web-07", "--", "getfile", "/data/report.bin"])
        .await;
    run.assert_code(0);
    assert_eq!(broker.content_ranges(), [Some("bytes=1000-".to_owned())]);
    assert_saved(&dir.join("report.bin"), "/data/report.bin");
    assert_eq!(files_in(&dir), ["report.bin"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sha256_mismatch_keeps_nothing_and_fails() {
    let broker = FakeBroker::http().await;
    let (_base, dir) = downloads();
    let run = lr(&broker, &dir)
        .run(&["exec", "web-07", "--", "getfile", "/data/bad.bin"])
        .await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("lr: the downloaded file does not match transfer t-2: its SHA-256 is"),
        "{run:?}"
    );
    assert!(run.stderr.contains("nothing was kept"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
    assert!(broker.saw("DELETE /api/v1/sessions/s-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_getfile_is_the_command_failure() {
    let broker = FakeBroker::http().await;
    let (_base, dir) = downloads();
    let run = lr(&broker, &dir)
        .run(&["exec", "web-07", "--", "getfile", "/data/none"])
        .await;
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("lr: command failed: no such file: /data/none"),
        "{run:?}"
    );
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn background_jobs_are_listed_and_finish_before_the_session_closes() {
    let broker = FakeBroker::http().await;
    let (_base, dir) = downloads();
    let run = lr(&broker, &dir)
        .stdin("getfile /data/report.bin &\njobs\nfg 7\njobs -output json\n")
        .run(&["connect", "web-07"])
        .await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("[1] t-2 getfile -path /data/report.bin\n"),
        "{run:?}"
    );
    // jobs: a table with the job, whatever its progress when it was asked.
    assert!(run.stdout.contains("command_line"), "{run:?}");
    assert!(
        run.stdout.contains("getfile -path /data/report.bin"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("lr: no job 7; jobs lists them (1)"),
        "{run:?}"
    );
    let json_start = run.stdout.rfind("[\n").unwrap();
    let jobs: serde_json::Value = serde_json::from_str(&run.stdout[json_start..]).unwrap();
    assert_eq!(jobs[0]["job"], 1, "{jobs}");
    assert_eq!(jobs[0]["transfer_id"], "t-2", "{jobs}");
    // The end of the job is told in one line, and the file is there before the session closes.
    let saved = dir.join("report.bin");
    assert!(
        run.stderr.contains(&format!(
            "[1] done getfile -path /data/report.bin: saved to {}",
            saved.display()
        )),
        "{run:?}"
    );
    assert_saved(&saved, "/data/report.bin");
    assert_eq!(broker.command_lines(), ["getfile -path /data/report.bin"]);
    assert!(broker.saw("DELETE /api/v1/sessions/s-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn repl_getfile_in_the_foreground_and_fg_of_an_ended_job() {
    let broker = FakeBroker::http().await;
    let (_base, dir) = downloads();
    let run = lr(&broker, &dir)
        .stdin("getfile /data/report.bin\nfg 1\nfg\n")
        .run(&["connect", "web-07"])
        .await;
    run.assert_code(0);
    let saved = dir.join("report.bin");
    let line = format!("saved to {} (", saved.display());
    assert_eq!(run.stdout.matches(&line).count(), 2, "{run:?}");
    assert!(run.stderr.contains("lr: job 1 has ended"), "{run:?}");
    assert!(run.stderr.contains("lr: fg needs <id>"), "{run:?}");
    assert_saved(&saved, "/data/report.bin");
}

#[tokio::test(flavor = "multi_thread")]
async fn library_upload_list_putfile_and_delete() {
    let broker = FakeBroker::http().await;
    let (_base, dir) = downloads();
    let script = _base.path().join("collect.sh");
    std::fs::write(&script, "#!/bin/sh\necho collected\n").unwrap();
    let script = script.to_str().unwrap().to_owned();

    let run = lr(&broker, &dir)
        .run(&[
            "library",
            "upload",
            &script,
            "--description",
            "collect logs",
            "--parameters-description=-days N",
            "-o",
            "json",
        ])
        .await;
    run.assert_code(0);
    let entry = run.json();
    assert_eq!(entry["name"], "collect.sh");
    assert_eq!(entry["size"], 25);
    assert_eq!(
        entry["sha256"],
        sha256_hex(b"#!/bin/sh\necho collected\n").as_str()
    );
    assert!(
        run.stderr.contains("lr: added collect.sh in the library"),
        "{run:?}"
    );
    assert!(broker.saw("PUT /api/v1/library/collect.sh"));

    // Again without --overwrite: refused by the broker, with the way out.
    let run = lr(&broker, &dir).run(&["library", "upload", &script]).await;
    run.assert_code(3);
    assert!(
        run.stderr
            .contains("lr: the library already has a file named collect.sh\n"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("lr: hint: add --overwrite to replace collect.sh"),
        "{run:?}"
    );
    let run = lr(&broker, &dir)
        .run(&[
            "library",
            "upload",
            &script,
            "--overwrite",
            "--name",
            "c2.sh",
        ])
        .await;
    run.assert_code(0);
    let run = lr(&broker, &dir)
        .run(&["library", "upload", &script, "--overwrite"])
        .await;
    run.assert_code(0);
    assert!(run.stderr.contains("lr: replaced collect.sh"), "{run:?}");

    let run = lr(&broker, &dir)
        .run(&["library", "list", "--output", "json"])
        .await;
    run.assert_code(0);
    let names: Vec<String> = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["c2.sh", "collect.sh"]);

    // putfile copies it to the device and says where it is.
    let run = lr(&broker, &dir)
        .run(&["exec", "web-07", "--", "putfile", "collect.sh"])
        .await;
    run.assert_code(0);
    assert!(
        run.stdout
            .starts_with("copied to /tmp/lr/collect.sh on the device"),
        "{run:?}"
    );
    assert!(broker.content_ranges().is_empty(), "nothing is downloaded");

    // library in a session renders the list.
    let run = lr(&broker, &dir)
        .stdin("library\n")
        .run(&["connect", "web-07"])
        .await;
    run.assert_code(0);
    assert!(run.stdout.contains("collect.sh"), "{run:?}");

    let run = lr(&broker, &dir)
        .run(&["library", "delete", "collect.sh"])
        .await;
    run.assert_code(0);
    assert_eq!(run.stdout, "collect.sh deleted from the library\n");
    let run = lr(&broker, &dir)
        .run(&["library", "delete", "collect.sh"])
        .await;
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("lr: the library has no file named collect.sh"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_refuse_what_is_not_a_readable_file() {
    let broker = FakeBroker::http().await;
    for (path, said) in [
        (
            "/nonexistent/x.sh",
            "cannot upload /nonexistent/x.sh: No such file",
        ),
        ("/tmp", "cannot upload /tmp: not a regular file"),
    ] {
        let run = Lr::at(&broker).run(&["library", "upload", path]).await;
        run.assert_code(2);
        assert!(run.stderr.contains(said), "{path}: {run:?}");
    }
    assert!(!broker.saw_prefix("PUT "));
}
