use access::{Role, RoleGrant};

use super::*;

fn token(id: &str, tenant: &str, user: &str, fill: char) -> ApiToken {
    ApiToken {
        id: id.into(),
        tenant: tenant.into(),
        user: user.into(),
        sha256: fill.to_string().repeat(64),
        description: String::new(),
        created_at: 1,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

fn bootstrapped() -> Directory {
    let mut d = Directory::default();
    let op = DirectoryOp::Bootstrap {
        admin: "root".into(),
        token: token("t0", PLATFORM_TENANT, "root", 'a'),
        import: vec![Import {
            tenant: "demo".into(),
            users: vec![(
                "analyst-a".into(),
                vec![RoleGrant::everywhere(Role::ResponderAdvanced)],
            )],
            tokens: vec![token("t1", "demo", "analyst-a", 'b')],
        }],
    };
    assert_eq!(d.apply(10, &op), Ok(DirectoryOutcome::Bootstrapped));
    d
}

#[test]
fn bootstrap_happens_once_and_imports_the_old_configuration() {
    let mut d = bootstrapped();
    assert!(d.is_bootstrapped());
    let admin = d.user(PLATFORM_TENANT, "root").unwrap();
    assert_eq!(
        admin.roles,
        vec![RoleGrant::everywhere(Role::PlatformAdmin)]
    );
    assert_eq!(d.token_by_hash(&"b".repeat(64)).unwrap().user, "analyst-a");
    let again = DirectoryOp::Bootstrap {
        admin: "other".into(),
        token: token("t9", PLATFORM_TENANT, "other", 'c'),
        import: vec![],
    };
    let before = d.clone();
    assert_eq!(
        d.apply(11, &again),
        Err(DirectoryError::AlreadyBootstrapped)
    );
    assert_eq!(d, before);
}

#[test]
fn a_refused_op_changes_nothing() {
    let mut d = Directory::default();
    let op = DirectoryOp::Bootstrap {
        admin: "root".into(),
        token: token("t0", PLATFORM_TENANT, "root", 'a'),
        // A token for a user that does not exist: the whole bootstrap is refused.
        import: vec![Import {
            tenant: "demo".into(),
            users: vec![],
            tokens: vec![token("t1", "demo", "ghost", 'b')],
        }],
    };
    assert!(matches!(
        d.apply(1, &op),
        Err(DirectoryError::NotFound { .. })
    ));
    assert_eq!(d, Directory::default());
}

#[test]
fn settings_changes_raise_the_version_and_are_checked() {
    let mut d = bootstrapped();
    let v = d.tenant("demo").unwrap().settings.version;
    let off = DirectoryOp::UpdateTenant {
        id: "demo".into(),
        display_name: None,
        settings: SettingsPatch {
            live_response_enabled: Some(false),
            ..SettingsPatch::default()
        },
    };
    let Ok(DirectoryOutcome::Tenant(t)) = d.apply(12, &off) else {
        panic!("not updated")
    };
    assert!(!t.settings.live_response_enabled);
    assert_eq!(t.settings.version, v + 1);
    let bad = DirectoryOp::UpdateTenant {
        id: "demo".into(),
        display_name: None,
        settings: SettingsPatch {
            idle_timeout_ms: Some(5),
            ..SettingsPatch::default()
        },
    };
    assert!(matches!(
        d.apply(13, &bad),
        Err(DirectoryError::Invalid { .. })
    ));
    assert_eq!(d.tenant("demo").unwrap().settings.version, v + 1);
}

#[test]
fn platform_admin_lives_only_in_the_platform_tenant() {
    let mut d = bootstrapped();
    let op = DirectoryOp::CreateUser {
        tenant: "demo".into(),
        name: "mallory".into(),
        roles: vec![RoleGrant::everywhere(Role::PlatformAdmin)],
    };
    assert!(matches!(
        d.apply(1, &op),
        Err(DirectoryError::Invalid { .. })
    ));
    let op = DirectoryOp::CreateTenant {
        id: PLATFORM_TENANT.into(),
        display_name: "x".into(),
    };
    assert!(d.apply(1, &op).is_err());
}

#[test]
fn revoking_and_removing_take_tokens_away() {
    let mut d = bootstrapped();
    let revoke = DirectoryOp::RevokeToken {
        tenant: "demo".into(),
        id: "t1".into(),
    };
    d.apply(20, &revoke).unwrap();
    assert!(!d.token("t1").unwrap().is_live(21));
    // Another tenant cannot revoke it, nor learn it exists.
    let foreign = DirectoryOp::RevokeToken {
        tenant: "acme".into(),
        id: "t0".into(),
    };
    assert!(matches!(
        d.apply(21, &foreign),
        Err(DirectoryError::NotFound { .. })
    ));
    d.apply(22, &DirectoryOp::RemoveTenant { id: "demo".into() })
        .unwrap();
    assert!(d.token_by_hash(&"b".repeat(64)).is_none());
    assert_eq!(d.users("demo").count(), 0);
    let expiring = ApiToken {
        expires_at: Some(100),
        ..token("t2", PLATFORM_TENANT, "root", 'c')
    };
    assert!(expiring.is_live(99) && !expiring.is_live(100));
}

#[test]
fn groups_hold_listed_devices_and_matching_ones() {
    let mut d = bootstrapped();
    let group = DeviceGroup {
        tenant: "demo".into(),
        name: "servers".into(),
        devices: vec!["db-01".into()],
        rules: vec![
            GroupRule::Hostname("web-*.example.com".into()),
            GroupRule::Tag("pci".into()),
        ],
    };
    d.apply(1, &DirectoryOp::PutGroup(group)).unwrap();
    assert_eq!(d.groups_of("demo", "db-01", "x", &[]), vec!["servers"]);
    assert_eq!(
        d.groups_of("demo", "w", "WEB-07.example.com", &[]),
        vec!["servers"]
    );
    assert!(d.groups_of("demo", "w", "mail.example.com", &[]).is_empty());
    assert!(d.groups_of("acme", "db-01", "x", &[]).is_empty());
    let tagged = ["linux".to_string(), "pci".to_string()];
    assert_eq!(d.groups_of("demo", "w", "mail", &tagged), vec!["servers"]);
}

#[test]
fn the_directory_round_trips_through_a_snapshot_with_its_index() {
    let d = bootstrapped();
    let json = serde_json::to_string(&d).unwrap();
    let back: Directory = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d);
    assert_eq!(back.token_by_hash(&"a".repeat(64)).unwrap().id, "t0");
}

#[test]
fn globs() {
    assert!(glob("*", ""));
    assert!(glob("web-??", "web-07"));
    assert!(!glob("web-??", "web-7"));
    assert!(glob("*.corp", "a.b.corp"));
    assert!(!glob("a*b", "ac"));
}

fn enrolment_token(id: &str, tenant: &str, max_uses: u32, fill: char) -> EnrolmentToken {
    EnrolmentToken {
        id: id.into(),
        tenant: tenant.into(),
        sha256: fill.to_string().repeat(64),
        description: String::new(),
        group: None,
        max_uses,
        uses: 0,
        created_by: "analyst-a".into(),
        created_at: 10,
        expires_at: 1_000,
        revoked_at: None,
    }
}

fn enrol(device: &str, token: &str, fill: char, certificate: char) -> DirectoryOp {
    DirectoryOp::Enrol {
        tenant: "demo".into(),
        device: device.into(),
        token_id: token.into(),
        token_sha256: fill.to_string().repeat(64),
        certificate: certificate.to_string().repeat(64),
        certificate_expires_at: 5_000,
    }
}

fn refusal(result: Result<DirectoryOutcome, DirectoryError>) -> String {
    match result {
        Err(DirectoryError::Refused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_enrolment_token_enrols_up_to_its_uses_until_it_expires_or_is_revoked() {
    let mut d = bootstrapped();
    d.apply(
        20,
        &DirectoryOp::CreateEnrolmentToken(enrolment_token("e1", "demo", 2, 'e')),
    )
    .unwrap();
    assert!(matches!(
        d.apply(30, &enrol("web-01", "e1", 'e', '1')),
        Ok(DirectoryOutcome::Device(_))
    ));
    assert_eq!(d.enrolment_token("e1").unwrap().uses, 1);
    // A wrong secret is the same as an unknown token.
    assert!(refusal(d.apply(31, &enrol("web-02", "e1", 'f', '2'))).contains("not known"));
    d.apply(32, &enrol("web-02", "e1", 'e', '2')).unwrap();
    let before = d.clone();
    assert!(refusal(d.apply(33, &enrol("web-03", "e1", 'e', '3'))).contains("used up"));
    assert_eq!(d, before, "a refused enrolment changes nothing");

    d.apply(
        40,
        &DirectoryOp::CreateEnrolmentToken(enrolment_token("e2", "demo", 5, 'c')),
    )
    .unwrap();
    assert!(refusal(d.apply(1_000, &enrol("web-04", "e2", 'c', '4'))).contains("expired"));
    d.apply(
        50,
        &DirectoryOp::RevokeEnrolmentToken {
            tenant: "demo".into(),
            id: "e2".into(),
        },
    )
    .unwrap();
    assert!(refusal(d.apply(60, &enrol("web-04", "e2", 'c', '4'))).contains("revoked"));
}

#[test]
fn another_tenants_token_enrols_nothing_here() {
    let mut d = bootstrapped();
    d.apply(
        20,
        &DirectoryOp::CreateTenant {
            id: "initech".into(),
            display_name: "Initech".into(),
        },
    )
    .unwrap();
    d.apply(
        21,
        &DirectoryOp::CreateUser {
            tenant: "initech".into(),
            name: "analyst-a".into(),
            roles: vec![],
        },
    )
    .unwrap();
    d.apply(
        22,
        &DirectoryOp::CreateEnrolmentToken(enrolment_token("e1", "initech", 1, 'e')),
    )
    .unwrap();
    assert!(refusal(d.apply(30, &enrol("web-01", "e1", 'e', '1'))).contains("another tenant"));
    // Nor may a tenant admin revoke it from another tenant.
    assert!(matches!(
        d.apply(
            31,
            &DirectoryOp::RevokeEnrolmentToken {
                tenant: "demo".into(),
                id: "e1".into()
            }
        ),
        Err(DirectoryError::NotFound { .. })
    ));
}

#[test]
fn a_device_enrols_once_until_an_admin_allows_it_again_and_revocation_locks_it_out() {
    let mut d = bootstrapped();
    d.apply(
        20,
        &DirectoryOp::CreateEnrolmentToken(enrolment_token("e1", "demo", 10, 'e')),
    )
    .unwrap();
    d.apply(30, &enrol("web-01", "e1", 'e', '1')).unwrap();
    let first = "1".repeat(64);
    assert_eq!(d.admits("demo", "web-01", &first), Ok(()));
    assert!(refusal(d.apply(31, &enrol("web-01", "e1", 'e', '2'))).contains("enrolled"));

    // Renewal: the new certificate and the one it replaced admit; the one before does not.
    let renew = |presented: char, new: char| DirectoryOp::RenewCertificate {
        tenant: "demo".into(),
        device: "web-01".into(),
        presented: presented.to_string().repeat(64),
        certificate: new.to_string().repeat(64),
        certificate_expires_at: 9_000,
    };
    d.apply(40, &renew('1', '5')).unwrap();
    assert_eq!(d.admits("demo", "web-01", &first), Ok(()));
    d.apply(41, &renew('5', '6')).unwrap();
    assert!(matches!(
        d.admits("demo", "web-01", &first),
        Err(NotAdmitted::Superseded { .. })
    ));
    assert!(refusal(d.apply(42, &renew('1', '7'))).contains("replaced"));

    let revoke = DirectoryOp::RevokeDevice {
        tenant: "demo".into(),
        device: "web-01".into(),
    };
    d.apply(50, &revoke).unwrap();
    assert!(matches!(
        d.admits("demo", "web-01", &"6".repeat(64)),
        Err(NotAdmitted::Revoked { .. })
    ));
    assert!(refusal(d.apply(51, &renew('6', '8'))).contains("revoked"));
    assert!(refusal(d.apply(52, &enrol("web-01", "e1", 'e', '9'))).contains("revoked"));
    d.apply(
        53,
        &DirectoryOp::AllowReenrolment {
            tenant: "demo".into(),
            device: "web-01".into(),
        },
    )
    .unwrap();
    d.apply(54, &enrol("web-01", "e1", 'e', '9')).unwrap();
    let device = d.device("demo", "web-01").unwrap();
    assert_eq!(device.state, EnrolmentState::Enrolled);
    assert!(!device.reenrolment_allowed, "an allowance is used once");
    // The certificates of the revoked enrolment stay dead.
    assert!(d.admits("demo", "web-01", &"6".repeat(64)).is_err());
    assert_eq!(d.admits("demo", "web-01", &"9".repeat(64)), Ok(()));
}

#[test]
fn an_enrolment_tokens_group_takes_in_the_devices_it_enrols() {
    let mut d = bootstrapped();
    d.apply(
        20,
        &DirectoryOp::PutGroup(DeviceGroup {
            tenant: "demo".into(),
            name: "kiosks".into(),
            devices: vec![],
            rules: vec![],
        }),
    )
    .unwrap();
    let mut token = enrolment_token("e1", "demo", 3, 'e');
    token.group = Some("kiosks".into());
    d.apply(21, &DirectoryOp::CreateEnrolmentToken(token))
        .unwrap();
    d.apply(30, &enrol("kiosk-1", "e1", 'e', '1')).unwrap();
    assert_eq!(d.groups_of("demo", "kiosk-1", "", &[]), vec!["kiosks"]);
    let mut missing = enrolment_token("e2", "demo", 3, 'f');
    missing.group = Some("nowhere".into());
    assert!(matches!(
        d.apply(31, &DirectoryOp::CreateEnrolmentToken(missing)),
        Err(DirectoryError::NotFound { .. })
    ));
}

#[test]
fn retention_cuts_only_forwards_and_within_the_checkpointed_chain() {
    let mut d = bootstrapped();
    let cut = |seq: u64| DirectoryOp::CutAudit {
        tenant: "demo".into(),
        seq,
        prev_hash: "c".repeat(64),
    };
    // Nothing checkpointed yet: nothing to cut.
    assert!(matches!(
        d.apply(20, &cut(2)),
        Err(DirectoryError::Invalid { .. })
    ));
    let checkpoint = DirectoryOp::CheckpointAudit {
        tenant: "demo".into(),
        seq: 10,
        hash: "d".repeat(64),
    };
    d.apply(21, &checkpoint).unwrap();
    // Past the checkpointed head, or at the chain's very start: refused.
    for seq in [11, 1] {
        assert!(matches!(
            d.apply(22, &cut(seq)),
            Err(DirectoryError::Invalid { .. })
        ));
    }
    d.apply(23, &cut(5)).unwrap();
    // An older cut changes nothing; a later checkpoint keeps the cut.
    d.apply(24, &cut(3)).unwrap();
    let later = DirectoryOp::CheckpointAudit {
        tenant: "demo".into(),
        seq: 12,
        hash: "e".repeat(64),
    };
    d.apply(25, &later).unwrap();
    let head = d.audit_head("demo").unwrap();
    assert_eq!(head.seq, 12);
    assert_eq!(
        head.cut,
        Some(AuditCut {
            seq: 5,
            prev_hash: "c".repeat(64),
            at: 23
        })
    );
}
