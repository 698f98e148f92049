use super::*;
use crate::commands::linux::fixture;

#[test]
fn parses_sections_continuations_comments_and_resets() {
    let f = UnitFile::parse(
        "# c\n[Unit]\nDescription = A \\\n  long\\\n# inner comment\n  one\n; other\n[Service]\nExecStart=/a\nExecStart=/b x\nExecStart=\nExecStart=-/c\nnonsense\nEnvironment=A=1\n[Install]\n",
    );
    assert_eq!(f.last("Unit", "Description"), Some("A  long one"));
    assert_eq!(f.list("Service", "ExecStart"), ["-/c"]);
    assert_eq!(f.last("Service", "Environment"), Some("A=1"));
    assert!(!f.installable());
    assert_eq!(f.last("Service", "Nope"), None);
    let mut f = f;
    f.merge(UnitFile::parse("[Install]\nWantedBy=multi-user.target\n"));
    assert!(f.installable());
}

#[test]
fn template_instances_count_as_enabled() {
    let wants = Wants(["getty@tty1.service".to_owned()].into_iter().collect());
    assert!(wants.contains("getty@.service"));
    assert!(wants.contains("getty@tty1.service"));
    assert!(!wants.contains("serial-getty@.service"));
    assert!(!wants.contains("getty@.timer"));
}

#[test]
fn parses_systemctl_show_blocks() {
    let blocks = parse_show(
        "ActiveState=active\nSubState=running\nMainPID=42\n\nActiveState=inactive\nSubState=dead\nMainPID=0\n",
    );
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0]["MainPID"], "42");
    assert_eq!(blocks[1]["SubState"], "dead");
    assert!(parse_show("").is_empty());
}

#[test]
fn discovers_units_first_wins_with_states_and_drop_ins() {
    let tmp = fixture::build();
    let ctx = fixture::ctx(tmp.path());
    let mut scan = Scan::new(&ctx);
    let wants = Wants::load(&mut scan);
    let units = discover(&mut scan, &wants, ".service");
    let by = |n: &str| {
        units
            .iter()
            .find(|u| u.name == n)
            .unwrap_or_else(|| panic!("no {n}"))
    };
    let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "apport.service",
            "evil.service",
            "journal-helper.service",
            "nginx.service",
            "ssh.service",
            "sshd.service"
        ]
    );

    let evil = by("evil.service");
    assert_eq!(evil.state, Enablement::Enabled);
    assert_eq!(evil.path, Path::new("/etc/systemd/system/evil.service"));
    assert_eq!(evil.description(), Some("Totally legit updater"));
    assert_eq!(
        evil.config.list("Service", "ExecStart"),
        ["/opt/evil/run  --quiet"]
    );
    assert!(evil.facts.as_ref().unwrap().modified.is_some());

    // The mask in /etc shadows the vendor file.
    let apport = by("apport.service");
    assert_eq!(apport.state, Enablement::Masked);
    assert_eq!(apport.path, Path::new("/etc/systemd/system/apport.service"));
    assert_eq!(apport.link_target.as_deref(), Some(Path::new("/dev/null")));
    assert_eq!(apport.description(), None);

    assert_eq!(by("journal-helper.service").state, Enablement::Static);
    assert_eq!(by("nginx.service").state, Enablement::Disabled);

    let ssh = by("ssh.service");
    assert_eq!(ssh.state, Enablement::Enabled);
    assert_eq!(ssh.path, Path::new("/lib/systemd/system/ssh.service"));
    assert_eq!(
        ssh.drop_ins,
        [Path::new("/etc/systemd/system/ssh.service.d/override.conf")]
    );
    assert_eq!(ssh.config.list("Service", "ExecStart"), ["/tmp/.x/sshd -D"]);

    let alias = by("sshd.service");
    assert_eq!(alias.state, Enablement::Alias);
    assert_eq!(alias.alias_of.as_deref(), Some("ssh.service"));
    assert!(scan.errors().is_empty(), "{:?}", scan.errors());

    let timers = discover(&mut scan, &wants, ".timer");
    let states: Vec<(&str, Enablement)> =
        timers.iter().map(|u| (u.name.as_str(), u.state)).collect();
    assert_eq!(
        states,
        [
            ("cleanup.timer", Enablement::Disabled),
            ("evil.timer", Enablement::Enabled)
        ]
    );
}

#[test]
fn fixture_roots_are_never_asked_for_live_state() {
    let tmp = fixture::build();
    std::fs::create_dir_all(tmp.path().join("run/systemd/system")).unwrap();
    let scan = Scan::new(&fixture::ctx(tmp.path()));
    let why = live_status(&scan).unwrap_err();
    assert!(why.starts_with("not queried: system_root is "), "{why}");
}
