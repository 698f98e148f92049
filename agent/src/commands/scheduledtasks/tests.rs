use serde_json::{Value, json};

use super::*;
use crate::commands::linux::fixture;
use crate::commands::testutil;
use crate::model::Status;

const NOW: &str = "2024-02-27T10:30:15Z";

fn tasks(root: &std::path::Path) -> (Report, Vec<Value>, Vec<Value>) {
    let ctx = fixture::ctx(root);
    let mut scan = Scan::new(&ctx);
    let wants = Wants::load(&mut scan);
    let services = systemd::discover(&mut scan, &wants, ".service");
    let report = collect(&mut scan, &wants, &services, NOW.parse().unwrap());
    let list = report.tasks.items.iter().map(Task::to_json).collect();
    let errors = scan.errors();
    (report, list, errors)
}

/// The fields that do not depend on the file's owner and time.
fn summary(t: &Value) -> Value {
    json!([
        t["kind"],
        t["source"],
        t["line"],
        t["user"],
        t["schedule"],
        t["command"],
        t["unit"],
        t["enabled"],
        t["next_run"]
    ])
}

#[test]
fn reads_every_cron_source_and_timer_of_the_fixture() {
    let tmp = fixture::build();
    let (report, list, errors) = tasks(tmp.path());
    assert_eq!(report.timezone, "UTC (no /etc/localtime)");
    assert!(
        report.systemd.starts_with("not queried"),
        "{}",
        report.systemd
    );
    let got: Vec<Value> = list.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            json!([
                "cron",
                "/etc/crontab",
                6,
                "root",
                "17 * * * *",
                "cd / && run-parts --report /etc/cron.hourly",
                null,
                null,
                "2024-02-27T11:17:00Z"
            ]),
            json!([
                "cron",
                "/etc/crontab",
                7,
                "root",
                "25 6 * * *",
                "test -x /usr/sbin/anacron || run-parts --report /etc/cron.daily",
                null,
                null,
                "2024-02-28T06:25:00Z"
            ]),
            json!([
                "cron",
                "/etc/cron.d/backup",
                2,
                "root",
                "30 2 * * *",
                "/usr/local/bin/backup.sh --full",
                null,
                null,
                "2024-02-28T02:30:00Z"
            ]),
            json!([
                "cron",
                "/etc/cron.d/backup",
                4,
                "bob",
                "@reboot",
                "/home/bob/.local/bin/agent",
                null,
                null,
                null
            ]),
            json!([
                "cron",
                "/var/spool/cron/crontabs/alice",
                2,
                "alice",
                "*/10 * * * *",
                "/home/alice/bin/sync.sh >/dev/null 2>&1",
                null,
                null,
                "2024-02-27T10:40:00Z"
            ]),
            json!([
                "cron_script",
                "/etc/cron.daily/logrotate",
                null,
                "root",
                "daily",
                "/etc/cron.daily/logrotate",
                null,
                null,
                null
            ]),
            json!([
                "systemd_timer",
                "/lib/systemd/system/cleanup.timer",
                null,
                null,
                "OnCalendar=daily",
                "/usr/lib/helper",
                "journal-helper.service",
                "disabled",
                null
            ]),
            json!([
                "systemd_timer",
                "/etc/systemd/system/evil.timer",
                null,
                "nobody",
                "OnCalendar=hourly; OnBootSec=5min",
                "/opt/evil/run  --quiet",
                "evil.service",
                "enabled",
                null
            ]),
        ]
    );
    let me = fixture::own_name(tmp.path());
    for t in &list {
        assert_eq!(t["owner"], me.as_str());
        assert!(t["modified"].as_str().unwrap().ends_with('Z'), "{t}");
    }
    assert_eq!(list[3]["note"], "runs when cron starts (at boot)");
    assert!(list[7]["note"].as_str().unwrap().contains("needs systemd"));
    // The malformed line is reported; the file's other lines were still read.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["path"], "/etc/cron.d/backup");
    assert!(
        errors[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("line 3: not a cron entry"),
        "{errors:?}"
    );
}

/// A TZif v1 file of a fixed offset without transitions.
fn tzif_fixed(offset_secs: i32, abbrev: &str) -> Vec<u8> {
    let mut b = b"TZif".to_vec();
    b.extend([0u8; 16]);
    // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
    for n in [0u32, 0, 0, 0, 1, abbrev.len() as u32 + 1] {
        b.extend(n.to_be_bytes());
    }
    b.extend(offset_secs.to_be_bytes());
    b.extend([0u8, 0u8]);
    b.extend(abbrev.as_bytes());
    b.push(0);
    b
}

#[test]
fn local_time_zone_rhel_spool_and_cron_tz() {
    let tmp = fixture::build();
    let r = tmp.path();
    fixture::write(r, "/etc/timezone", "Test/Plus2\n");
    std::fs::write(r.join("etc/localtime"), tzif_fixed(7200, "P2")).unwrap();
    std::fs::create_dir_all(r.join("usr/share/zoneinfo/Test")).unwrap();
    std::fs::write(
        r.join("usr/share/zoneinfo/Test/Minus5"),
        tzif_fixed(-5 * 3600, "M5"),
    )
    .unwrap();
    fixture::write(
        r,
        "/var/spool/cron/bob",
        "0 12 * * * /usr/bin/noon\nCRON_TZ=Test/Minus5\n0 12 * * * /usr/bin/noon-in-m5\nCRON_TZ=No/Such\n0 12 * * * x\n",
    );
    let (report, list, _) = tasks(r);
    assert_eq!(report.timezone, "Test/Plus2");
    let by_cmd = |c: &str| list.iter().find(|t| t["command"] == c).unwrap().clone();
    // 10:30Z is 12:30 at +02: the next 12:00 there is tomorrow 10:00Z.
    assert_eq!(by_cmd("/usr/bin/noon")["next_run"], "2024-02-28T10:00:00Z");
    assert_eq!(by_cmd("/usr/bin/noon")["user"], "bob");
    assert_eq!(by_cmd("/usr/bin/noon")["source"], "/var/spool/cron/bob");
    assert_eq!(
        by_cmd("/usr/bin/noon-in-m5")["next_run"],
        "2024-02-27T17:00:00Z"
    );
    assert_eq!(
        by_cmd("/usr/bin/noon-in-m5")["note"],
        "scheduled in CRON_TZ=Test/Minus5"
    );
    assert_eq!(by_cmd("x")["next_run"], Value::Null);
    assert!(
        by_cmd("x")["note"]
            .as_str()
            .unwrap()
            .contains("CRON_TZ=No/Such cannot be used")
    );
    // 02:30 at +02 is 00:30Z.
    assert_eq!(
        by_cmd("/usr/local/bin/backup.sh --full")["next_run"],
        "2024-02-28T00:30:00Z"
    );
}

#[test]
fn parses_systemctl_unix_timestamps() {
    assert_eq!(
        unix_stamp("@1704067200").map(|t| t.to_string()).as_deref(),
        Some("2024-01-01T00:00:00Z")
    );
    assert_eq!(unix_stamp("n/a"), None);
    assert_eq!(unix_stamp(""), None);
}

#[tokio::test]
async fn runs_on_a_fixture_root_and_live() {
    let tmp = fixture::build();
    let o = fixture::run(tmp.path(), "scheduledtasks", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    assert_eq!(out["tasks"].as_array().unwrap().len(), 8);
    assert_eq!(out["truncated"], false);
    assert!(out["now"].as_str().unwrap().ends_with('Z'));

    let o = testutil::run("scheduledtasks", "/", &[]).await;
    assert_eq!(o.status, Status::Ok, "{}", o.error);
    let out = o.output.unwrap();
    assert!(out["tasks"].is_array() && out["errors"].is_array(), "{out}");
}
