use super::*;

const GOOD: &str = r#"
device_id = "web-07"
tenant = "demo"
brokers = ["127.0.0.1:7501", "[::1]:7502", "broker.example:7503"]
authority_keys = ["ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"]
state_dir = "/var/lib/lr-agent"

[tls]
ca_cert = "/etc/lr/ca.pem"
cert = "/etc/lr/agent.pem"
key = "/etc/lr/agent.key"
"#;

fn write(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

fn load(text: &str) -> Result<Config, ConfigError> {
    let f = write(text);
    Config::load(Some(f.path()), Overrides::default())
}

#[test]
fn loads_with_defaults() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.device_id, "web-07");
    assert_eq!(c.brokers.len(), 3);
    assert_eq!(c.tls.server_name, "localhost");
    assert_eq!(c.connection, ConnectionConfig::default());
    assert_eq!(c.system_root, Path::new("/"));
    assert_eq!(c.work_dir, None);
    assert_eq!(c.work_dir(), Path::new("/var/lib/lr-agent/work"));
    assert_eq!(c.held_result_bytes, crate::DEFAULT_HELD_RESULT_BYTES);
}

#[test]
fn work_dir_is_an_absolute_directory() {
    let c = load(&GOOD.replace("state_dir =", "work_dir = \"/srv/lr-work\"\nstate_dir =")).unwrap();
    assert_eq!(c.work_dir(), Path::new("/srv/lr-work"));
    expect_key(
        &GOOD.replace("state_dir =", "work_dir = \"work\"\nstate_dir ="),
        "work_dir",
    );
}

#[test]
fn system_root_is_an_absolute_directory() {
    let c =
        load(&GOOD.replace("state_dir =", "system_root = \"/mnt/image\"\nstate_dir =")).unwrap();
    assert_eq!(c.system_root, Path::new("/mnt/image"));
    expect_key(
        &GOOD.replace("state_dir =", "system_root = \"mnt\"\nstate_dir ="),
        "system_root",
    );
}

#[test]
fn overrides_replace_file_values() {
    let f = write(GOOD);
    let c = Config::load(
        Some(f.path()),
        Overrides {
            device_id: Some("db-01".into()),
            brokers: Some(vec!["10.1.1.1:9000".into()]),
            tls: TlsOverrides {
                server_name: Some("broker.internal".into()),
                ..TlsOverrides::default()
            },
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(c.device_id, "db-01");
    assert_eq!(c.brokers, ["10.1.1.1:9000"]);
    assert_eq!(c.tls.server_name, "broker.internal");
    assert_eq!(c.tls.cert, Path::new("/etc/lr/agent.pem"));
}

#[test]
fn flags_alone_are_enough() {
    let c = Config::load(
        None,
        Overrides {
            device_id: Some("d".into()),
            tenant: Some("t".into()),
            brokers: Some(vec!["h:1".into()]),
            authority_keys: Some(vec![format!("ed25519:{}", "ab".repeat(32))]),
            state_dir: Some("/s".into()),
            tls: TlsOverrides {
                ca_cert: Some("/ca".into()),
                cert: Some("/c".into()),
                key: Some("/k".into()),
                server_name: None,
            },
            tracing: Default::default(),
        },
    )
    .unwrap();
    assert_eq!(c.tenant, "t");
}

const KEY: &str = "ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

#[test]
fn authority_keys_are_read_as_trusted_keys() {
    let c = load(GOOD).unwrap();
    let keys = c.trusted_keys().unwrap();
    assert_eq!(keys.keys().len(), 1);
    assert_eq!(keys.keys()[0].to_string(), KEY);
    // Two during a rotation.
    let other = format!("ed25519:{}", "0f".repeat(32));
    let c = load(&GOOD.replace(
        &format!("[\"{KEY}\"]"),
        &format!("[\"{KEY}\", \"{other}\"]"),
    ))
    .unwrap();
    assert_eq!(c.trusted_keys().unwrap().keys().len(), 2);
}

#[test]
fn authority_keys_are_required_and_each_must_be_a_key() {
    let err = load(&GOOD.replace(&format!("authority_keys = [\"{KEY}\"]\n"), "")).unwrap_err();
    assert!(err.to_string().contains("authority_keys"), "{err}");
    expect_key(
        &GOOD.replace(&format!("[\"{KEY}\"]"), "[]"),
        "authority_keys",
    );
    let short = format!("[\"{KEY}\", \"ed25519:abcd\"]");
    let err = load(&GOOD.replace(&format!("[\"{KEY}\"]"), &short)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad config: authority_keys[1]: 'ed25519:abcd' is not an Ed25519 public key (it is not 32 bytes long); copy the lease authority's public key, written ed25519:<64 hex digits>"
    );
    let pem = format!("[\"{}\"]", KEY.trim_start_matches("ed25519:"));
    let err = load(&GOOD.replace(&format!("[\"{KEY}\"]"), &pem)).unwrap_err();
    assert!(
        err.to_string().contains("authority_keys[0]: '3b6a27bc")
            && err.to_string().contains("does not start with ed25519:"),
        "{err}"
    );
}

fn expect_key(text: &str, key: &str) {
    match load(text) {
        Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
        other => panic!("expected invalid {key}, got {other:?}"),
    }
}

#[test]
fn validation_names_the_key() {
    expect_key(&GOOD.replace("web-07", "web.07"), "device_id");
    expect_key(&GOOD.replace("\"demo\"", "\"\""), "tenant");
    expect_key(&GOOD.replace("[::1]:7502", "[::1]"), "brokers[1]");
    expect_key(&GOOD.replace("127.0.0.1:7501", "https://h:1"), "brokers[0]");
    expect_key(&GOOD.replace("127.0.0.1:7501", "h:99999"), "brokers[0]");
    expect_key(
        &GOOD.replace(
            r#"brokers = ["127.0.0.1:7501", "[::1]:7502", "broker.example:7503"]"#,
            "brokers = []",
        ),
        "brokers",
    );
    expect_key(
        &format!("{GOOD}\n[connection]\nbackoff_max_ms = 1\n"),
        "connection.backoff_max_ms",
    );
    expect_key(
        &format!("{GOOD}\n[connection]\nwelcome_timeout_ms = 0\n"),
        "connection.welcome_timeout_ms",
    );
    expect_key(
        &GOOD.replace(
            "state_dir = ",
            "held_result_bytes = 1099511627776\nstate_dir = ",
        ),
        "held_result_bytes",
    );
}

#[test]
fn parse_errors_name_the_key() {
    let err = load(&GOOD.replace("device_id = \"web-07\"\n", "")).unwrap_err();
    assert!(err.to_string().contains("device_id"), "{err}");
    let err = load(&format!("{GOOD}\nbogus = 1\n")).unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
    let err =
        Config::load(Some(Path::new("/no/such/file.toml")), Overrides::default()).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
}

#[test]
fn the_shipped_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("lr-agent.example.toml");
    let c = Config::load(Some(&path), Overrides::default()).unwrap();
    assert_eq!(c.brokers.len(), 3);
    assert_eq!(c.connection, ConnectionConfig::default());
}

#[test]
fn tags_are_ids_and_few() {
    let c =
        load(&GOOD.replace("state_dir =", "tags = [\"pci\", \"db-tier\"]\nstate_dir =")).unwrap();
    assert_eq!(c.tags, ["pci", "db-tier"]);
    assert!(load(GOOD).unwrap().tags.is_empty());
    expect_key(
        &GOOD.replace("state_dir =", "tags = [\"ok\", \"not ok\"]\nstate_dir ="),
        "tags[1]",
    );
    let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("\"t{i}\"")).collect();
    expect_key(
        &GOOD.replace(
            "state_dir =",
            &format!("tags = [{}]\nstate_dir =", many.join(", ")),
        ),
        "tags",
    );
}

#[test]
fn otlp_endpoint_is_optional_checked_and_overridable() {
    assert_eq!(load(GOOD).unwrap().tracing.otlp_endpoint, None);
    let with = |endpoint: &str| format!("{GOOD}\n[tracing]\notlp_endpoint = \"{endpoint}\"\n");
    let c = load(&with("http://127.0.0.1:4317")).unwrap();
    assert_eq!(
        c.tracing.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:4317")
    );
    match load(&with("collector:4317")).unwrap_err() {
        ConfigError::Invalid { key, reason } => {
            assert_eq!(key, "tracing.otlp_endpoint");
            assert!(reason.contains("http://"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let f = write(GOOD);
    let c = Config::load(
        Some(f.path()),
        Overrides {
            tracing: TracingOverrides {
                otlp_endpoint: Some("http://collector:4317".into()),
            },
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(
        c.tracing.otlp_endpoint.as_deref(),
        Some("http://collector:4317")
    );
}
