//! The development PKI on disk and in memory: CA reuse, file names and modes, ids, identities.

use std::fs;
use std::path::Path;

use pki::{AgentIdentity, Ca, PkiError, agent_identity, ensure_ca};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

fn der(cert_pem: &str) -> Vec<u8> {
    parse_x509_pem(cert_pem.as_bytes()).unwrap().1.contents
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_can_be_shared_between_tasks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Ca>();
}

#[test]
fn ca_is_created_once_then_reused_and_signs_every_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");

    let ca = ensure_ca(&pki_dir).unwrap();
    assert!(pki_dir.join("ca.pem").is_file());
    #[cfg(unix)]
    assert_eq!(mode(&pki_dir.join("ca.key")), 0o600);
    let broker = ca.issue_broker(&pki_dir, "b1", &[]).unwrap();
    let first = ca.issue_agent(&pki_dir, "demo", "web-07").unwrap();
    drop(ca);

    let reloaded = ensure_ca(&pki_dir).unwrap();
    assert_eq!(
        reloaded.ca_pem(),
        fs::read_to_string(pki_dir.join("ca.pem")).unwrap(),
        "the existing ca is reused, not replaced"
    );
    let second = reloaded.issue_agent(&pki_dir, "demo", "db-01").unwrap();

    let ca_der = der(reloaded.ca_pem());
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    for paths in [&broker, &first, &second] {
        let leaf_der = der(&fs::read_to_string(&paths.cert).unwrap());
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        assert_eq!(leaf.issuer(), ca_cert.subject());
        leaf.verify_signature(Some(ca_cert.public_key()))
            .unwrap_or_else(|e| panic!("{} not signed by the ca: {e}", paths.cert.display()));
        #[cfg(unix)]
        assert_eq!(mode(&paths.key), 0o600, "{}", paths.key.display());
    }
    assert_eq!(
        agent_identity(&der(&fs::read_to_string(&second.cert).unwrap())).unwrap(),
        AgentIdentity::new("demo", "db-01").unwrap()
    );
}

#[test]
fn files_are_named_after_broker_and_device_and_replaced_on_reissue() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ensure_ca(dir.path()).unwrap();
    let broker = ca.issue_broker(dir.path(), "2", &[]).unwrap();
    assert_eq!(broker.cert, dir.path().join("broker-2.pem"));
    assert_eq!(broker.key, dir.path().join("broker-2.key"));
    let agent = ca.issue_agent(dir.path(), "demo", "web-07").unwrap();
    assert_eq!(agent.cert, dir.path().join("agent-web-07.pem"));
    assert_eq!(agent.key, dir.path().join("agent-web-07.key"));

    let before = fs::read_to_string(&agent.key).unwrap();
    ca.issue_agent(dir.path(), "demo", "web-07").unwrap();
    assert_ne!(before, fs::read_to_string(&agent.key).unwrap());

    let mut names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "agent-web-07.key",
            "agent-web-07.pem",
            "broker-2.key",
            "broker-2.pem",
            "ca.key",
            "ca.pem"
        ],
        "no temporary files left behind"
    );
}

#[test]
fn half_a_ca_or_a_foreign_key_is_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    ensure_ca(dir.path()).unwrap();
    let key = fs::read_to_string(dir.path().join("ca.key")).unwrap();

    fs::remove_file(dir.path().join("ca.key")).unwrap();
    let err = ensure_ca(dir.path()).unwrap_err();
    assert!(matches!(err, PkiError::CaIncomplete { .. }), "{err}");
    assert!(err.to_string().contains("ca.key"), "{err}");

    let other = tempfile::tempdir().unwrap();
    ensure_ca(other.path()).unwrap();
    fs::copy(other.path().join("ca.key"), dir.path().join("ca.key")).unwrap();
    let err = ensure_ca(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("the ca key does not belong to the ca certificate"),
        "{err}"
    );

    // A leaf certificate is not a CA, even with its own key.
    let ca = Ca::from_pem(
        &fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
        &key,
    )
    .unwrap();
    let leaf = ca.issue_broker_pem("b1", &[]).unwrap();
    let err = Ca::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
    assert!(err.to_string().contains("not a ca certificate"), "{err}");
}

#[test]
fn broker_certificate_has_local_and_extra_names_and_both_usages() {
    let ca = Ca::generate().unwrap();
    let extra = [
        "broker-1.lr.internal".to_owned(),
        "10.0.0.5".to_owned(),
        "localhost".to_owned(),
    ];
    let issued = ca.issue_broker_pem("b1", &extra).unwrap();
    let der = der(&issued.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();

    let names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
            other => panic!("unexpected name {other}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "localhost",
            "ip:[127, 0, 0, 1]",
            "ip:[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]",
            "broker-1.lr.internal",
            "ip:[10, 0, 0, 5]"
        ],
        "duplicates dropped"
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!cert.is_ca());
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "b1"
    );

    let err = ca.issue_broker_pem("b1", &["".to_owned()]).unwrap_err();
    assert!(matches!(err, PkiError::InvalidSan { .. }), "{err}");
    let err = ca
        .issue_broker_pem("b1", &["brøker".to_owned()])
        .unwrap_err();
    assert!(err.to_string().contains("\"brøker\""), "{err}");
}

#[test]
fn agent_identity_round_trips_and_broker_or_ca_certificates_have_none() {
    let ca = Ca::generate().unwrap();
    let agent = ca.issue_agent_pem("demo", "web-07").unwrap();
    let der_agent = der(&agent.cert_pem);
    let identity = agent_identity(&der_agent).unwrap();
    assert_eq!(identity.tenant, "demo");
    assert_eq!(identity.device, "web-07");
    assert_eq!(identity.to_string(), "lr-agent://demo/web-07");

    let (_, cert) = x509_parser::parse_x509_certificate(&der_agent).unwrap();
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "web-07"
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);

    let broker = ca.issue_broker_pem("b1", &[]).unwrap();
    let err = agent_identity(&der(&broker.cert_pem)).unwrap_err();
    assert!(matches!(err, PkiError::NoAgentIdentity), "{err}");
    assert!(
        err.to_string()
            .starts_with("certificate has no lr-agent identity"),
        "{err}"
    );
    let err = agent_identity(&der(ca.ca_pem())).unwrap_err();
    assert!(matches!(err, PkiError::NoAgentIdentity), "{err}");

    let err = agent_identity(b"not a certificate").unwrap_err();
    assert!(matches!(err, PkiError::NotACertificate { .. }), "{err}");
    let mut trailing = der_agent.clone();
    trailing.push(0);
    let err = agent_identity(&trailing).unwrap_err();
    assert!(matches!(err, PkiError::NotACertificate { .. }), "{err}");
}

/// Certificates not from this crate: a foreign PKI may put anything in a SAN URI.
fn cert_with_uris(uris: &[&str]) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(vec!["example.org".to_owned()]).unwrap();
    for uri in uris {
        params
            .subject_alt_names
            .push(rcgen::SanType::URI((*uri).try_into().unwrap()));
    }
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn malformed_or_ambiguous_agent_uris_are_refused() {
    let ok = agent_identity(&cert_with_uris(&[
        "https://example.org/x",
        "LR-Agent://t1/d1",
    ]))
    .unwrap();
    assert_eq!(ok, AgentIdentity::new("t1", "d1").unwrap());

    for uri in [
        "lr-agent://t1",
        "lr-agent://t1/",
        "lr-agent:///d1",
        "lr-agent://t1/d1/extra",
        "lr-agent://t1/d1?x=1",
        "lr-agent://t%2F1/d1",
    ] {
        let err = agent_identity(&cert_with_uris(&[uri])).unwrap_err();
        assert!(
            matches!(err, PkiError::MalformedAgentIdentity { .. }),
            "{uri}: {err}"
        );
        assert!(err.to_string().contains(uri), "{err}");
    }

    let err =
        agent_identity(&cert_with_uris(&["lr-agent://t1/d1", "lr-agent://t2/d2"])).unwrap_err();
    assert!(
        matches!(err, PkiError::AmbiguousAgentIdentity { .. }),
        "{err}"
    );

    let err =
        agent_identity(&cert_with_uris(&["https://example.org/lr-agent://t1/d1"])).unwrap_err();
    assert!(matches!(err, PkiError::NoAgentIdentity), "{err}");
}

#[test]
fn invalid_ids_are_refused_naming_the_value() {
    let ca = Ca::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let long = "a".repeat(129);
    for (tenant, device, bad) in [
        ("", "web-07", ""),
        ("demo", "", ""),
        ("demo", long.as_str(), long.as_str()),
        ("demo", "web/07", "web/07"),
        ("de mo", "web-07", "de mo"),
        ("demo", "wéb", "wéb"),
        ("demo", "../etc", "../etc"),
    ] {
        let err = ca.issue_agent_pem(tenant, device).unwrap_err();
        assert!(matches!(err, PkiError::InvalidId { .. }), "{err}");
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        assert!(ca.issue_agent(dir.path(), tenant, device).is_err());
    }
    let err = ca.issue_broker(dir.path(), "b/1", &[]).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid broker id \"b/1\""),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );

    let longest = "Z".repeat(128);
    let issued = ca.issue_agent_pem("t_1.x", &longest).unwrap();
    assert_eq!(
        agent_identity(&der(&issued.cert_pem)).unwrap().device,
        longest
    );
}
