use super::*;

const HEX: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

fn options() -> EnrolOptions {
    EnrolOptions {
        broker: "broker.example:7501".into(),
        token: "lre_1_secret".into(),
        ca_fingerprint: HEX.into(),
        device_id: "web-07".into(),
        tenant: None,
        state_dir: DEFAULT_STATE_DIR.into(),
        config: DEFAULT_CONFIG.into(),
        server_name: None,
        tags: Vec::new(),
    }
}

fn refused(o: EnrolOptions) -> (&'static str, String) {
    match Plan::new(&o) {
        Err(EnrolError::Invalid { option, reason }) => (option, reason),
        Err(other) => panic!("expected an invalid option, got {other}"),
        Ok(_) => panic!("expected an invalid option, got none"),
    }
}

#[test]
fn fingerprints_are_read_in_the_forms_operators_paste() {
    let colons = HEX
        .as_bytes()
        .chunks(2)
        .map(|b| std::str::from_utf8(b).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    for text in [
        HEX.to_owned(),
        HEX.to_uppercase(),
        format!("sha256:{HEX}"),
        format!("SHA256:{colons}"),
        format!("  {colons}\n"),
    ] {
        assert_eq!(pin::parse_fingerprint(&text).as_deref(), Ok(HEX), "{text}");
    }
}

#[test]
fn anything_but_64_hex_digits_is_refused() {
    for text in [
        "",
        &HEX[..62],
        &format!("{HEX}00"),
        &format!("md5:{HEX}"),
        &HEX.replace('a', "g"),
        "ééééééé",
    ] {
        let why = pin::parse_fingerprint(text).unwrap_err();
        assert!(why.contains("64 hex digits"), "{why}");
    }
    let (option, _) = refused(EnrolOptions {
        ca_fingerprint: "sha1:abcd".into(),
        ..options()
    });
    assert_eq!(option, "ca-fingerprint");
}

#[test]
fn defaults_are_filled_in_and_paths_made_absolute() {
    let plan = Plan::new(&EnrolOptions {
        state_dir: "state".into(),
        ca_fingerprint: format!("sha256:{}", HEX.to_uppercase()),
        ..options()
    })
    .unwrap();
    assert_eq!(plan.fingerprint, HEX);
    assert_eq!(plan.server_name, "broker.example");
    assert!(plan.state_dir.is_absolute() && plan.state_dir.ends_with("state"));
    assert_eq!(plan.config_path, Path::new(DEFAULT_CONFIG));

    assert_eq!(host_of("[::1]:7501"), "::1");
    assert_eq!(host_of("10.0.0.1:7501"), "10.0.0.1");
    let plan = Plan::new(&EnrolOptions {
        broker: "[::1]:7501".into(),
        ..options()
    })
    .unwrap();
    assert_eq!(plan.server_name, "::1");
}

#[test]
fn bad_options_name_the_flag() {
    let cases = [
        (
            EnrolOptions {
                broker: "https://b:7501".into(),
                ..options()
            },
            "broker",
        ),
        (
            EnrolOptions {
                token: " ".into(),
                ..options()
            },
            "token",
        ),
        (
            EnrolOptions {
                device_id: "web.07".into(),
                ..options()
            },
            "device-id",
        ),
        (
            EnrolOptions {
                tenant: Some("a b".into()),
                ..options()
            },
            "tenant",
        ),
        (
            EnrolOptions {
                tags: vec!["pci".into(), "db tier".into()],
                ..options()
            },
            "tag",
        ),
        (
            EnrolOptions {
                server_name: Some("not a name".into()),
                ..options()
            },
            "server-name",
        ),
    ];
    for (o, flag) in cases {
        assert_eq!(refused(o).0, flag);
    }
}

#[test]
fn the_token_stays_out_of_debug_output() {
    let text = format!("{:?}", options());
    assert!(!text.contains("secret"), "{text}");
}
