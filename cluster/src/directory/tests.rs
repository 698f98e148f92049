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
