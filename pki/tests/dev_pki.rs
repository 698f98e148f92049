//! The development PKI on disk and in memory: CA reuse, file names and modes, ids, identities,
//! and the split between the cluster CA and the agent CA.

use std::fs;
use std::path::Path;

use pki::{
    AGENT_URI_SCHEME, AgentIdentity, BROKER_URI_SCHEME, BrokerIdentity, Ca, CaRole, PkiError,
    agent_identity, broker_identity, ensure_ca,
};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

fn der(cert_pem: &str) -> Vec<u8> {
    parse_x509_pem(cert_pem.as_bytes()).unwrap().1.contents
}

fn broker(node: u64) -> BrokerIdentity {
    BrokerIdentity::new("local", node).unwrap()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
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
fn cas_are_created_once_then_reused_and_sign_every_leaf_of_their_role() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");

    let cluster = ensure_ca(&pki_dir, CaRole::Cluster).unwrap();
    let agents = ensure_ca(&pki_dir, CaRole::Agents).unwrap();
    assert_eq!(cluster.role(), CaRole::Cluster);
    assert_eq!(agents.role(), CaRole::Agents);
    for role in [CaRole::Cluster, CaRole::Agents] {
        assert!(pki_dir.join(role.cert_file()).is_file());
        #[cfg(unix)]
        assert_eq!(mode(&pki_dir.join(role.key_file())), 0o600);
    }
    let broker_paths = cluster.issue_broker(&pki_dir, &broker(1), &[]).unwrap();
    let server_paths = cluster.issue_server(&pki_dir, "nats-server", &[]).unwrap();
    let first = agents.issue_agent(&pki_dir, "demo", "web-07").unwrap();
    drop((cluster, agents));

    let cluster = ensure_ca(&pki_dir, CaRole::Cluster).unwrap();
    let agents = ensure_ca(&pki_dir, CaRole::Agents).unwrap();
    for (ca, file) in [(&cluster, "cluster-ca.pem"), (&agents, "agent-ca.pem")] {
        assert_eq!(
            ca.ca_pem(),
            fs::read_to_string(pki_dir.join(file)).unwrap(),
            "the existing {file} is reused, not replaced"
        );
    }
    let second = agents.issue_agent(&pki_dir, "demo", "db-01").unwrap();

    let cluster_der = der(cluster.ca_pem());
    let (_, cluster_cert) = x509_parser::parse_x509_certificate(&cluster_der).unwrap();
    let agent_der = der(agents.ca_pem());
    let (_, agent_cert) = x509_parser::parse_x509_certificate(&agent_der).unwrap();
    for (paths, signer, other) in [
        (&broker_paths, &cluster_cert, &agent_cert),
        (&server_paths, &cluster_cert, &agent_cert),
        (&first, &agent_cert, &cluster_cert),
        (&second, &agent_cert, &cluster_cert),
    ] {
        let leaf_der = der(&fs::read_to_string(&paths.cert).unwrap());
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        assert_eq!(leaf.issuer(), signer.subject());
        leaf.verify_signature(Some(signer.public_key()))
            .unwrap_or_else(|e| panic!("{} not signed by its ca: {e}", paths.cert.display()));
        assert!(
            leaf.verify_signature(Some(other.public_key())).is_err(),
            "{} signed by the other ca",
            paths.cert.display()
        );
        #[cfg(unix)]
        assert_eq!(mode(&paths.key), 0o600, "{}", paths.key.display());
    }
    assert_eq!(
        agent_identity(&der(&fs::read_to_string(&second.cert).unwrap())).unwrap(),
        AgentIdentity::new("demo", "db-01").unwrap()
    );
    assert_eq!(
        broker_identity(&der(&fs::read_to_string(&broker_paths.cert).unwrap())).unwrap(),
        broker(1)
    );
}

#[test]
fn files_are_named_after_node_server_and_device_and_replaced_on_reissue() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = ensure_ca(dir.path(), CaRole::Cluster).unwrap();
    let agents = ensure_ca(dir.path(), CaRole::Agents).unwrap();
    let broker_paths = cluster.issue_broker(dir.path(), &broker(2), &[]).unwrap();
    assert_eq!(broker_paths.cert, dir.path().join("broker-2.pem"));
    assert_eq!(broker_paths.key, dir.path().join("broker-2.key"));
    let server = cluster
        .issue_server(dir.path(), "nats-server", &[])
        .unwrap();
    assert_eq!(server.cert, dir.path().join("nats-server.pem"));
    assert_eq!(server.key, dir.path().join("nats-server.key"));
    let agent = agents.issue_agent(dir.path(), "demo", "web-07").unwrap();
    assert_eq!(agent.cert, dir.path().join("agent-web-07.pem"));
    assert_eq!(agent.key, dir.path().join("agent-web-07.key"));

    let before = fs::read_to_string(&agent.key).unwrap();
    agents.issue_agent(dir.path(), "demo", "web-07").unwrap();
    assert_ne!(before, fs::read_to_string(&agent.key).unwrap());
    let before = fs::read_to_string(&broker_paths.key).unwrap();
    cluster.issue_broker(dir.path(), &broker(2), &[]).unwrap();
    assert_ne!(before, fs::read_to_string(&broker_paths.key).unwrap());

    assert_eq!(
        file_names(dir.path()),
        [
            "agent-ca.key",
            "agent-ca.pem",
            "agent-web-07.key",
            "agent-web-07.pem",
            "broker-2.key",
            "broker-2.pem",
            "cluster-ca.key",
            "cluster-ca.pem",
            "nats-server.key",
            "nats-server.pem",
        ],
        "no temporary files left behind"
    );
}

#[test]
fn half_a_ca_or_a_foreign_key_is_refused_not_replaced() {
    for role in [CaRole::Cluster, CaRole::Agents] {
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join(role.cert_file());
        let key_path = dir.path().join(role.key_file());
        ensure_ca(dir.path(), role).unwrap();
        let key = fs::read_to_string(&key_path).unwrap();

        fs::remove_file(&key_path).unwrap();
        let err = ensure_ca(dir.path(), role).unwrap_err();
        assert!(matches!(err, PkiError::CaIncomplete { .. }), "{err}");
        assert!(err.to_string().contains(&role.key_file()), "{err}");
        assert!(!key_path.exists(), "no new key made up");

        let other = tempfile::tempdir().unwrap();
        ensure_ca(other.path(), role).unwrap();
        fs::copy(other.path().join(role.key_file()), &key_path).unwrap();
        let err = ensure_ca(dir.path(), role).unwrap_err();
        assert!(matches!(err, PkiError::BadCa { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("the ca key does not belong to the ca certificate"),
            "{err}"
        );
        assert!(
            err.to_string().contains(&role.cert_file())
                && err.to_string().contains(&role.key_file()),
            "names the files to restore: {err}"
        );

        // A leaf certificate is not a CA, even with its own key.
        let ca = Ca::from_pem(role, &fs::read_to_string(&cert_path).unwrap(), &key).unwrap();
        let leaf = match role {
            CaRole::Cluster => ca.issue_broker_pem(&broker(1), &[]).unwrap(),
            CaRole::Agents => ca.issue_agent_pem("demo", "web-07").unwrap(),
        };
        let err = Ca::from_pem(role, &leaf.cert_pem, &leaf.key_pem).unwrap_err();
        assert!(err.to_string().contains("not a ca certificate"), "{err}");
    }
}

#[test]
fn cluster_and_agent_cas_live_side_by_side_without_touching_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let read = |file: String| fs::read_to_string(dir.path().join(file)).unwrap();

    let cluster = ensure_ca(dir.path(), CaRole::Cluster).unwrap();
    assert_eq!(file_names(dir.path()), ["cluster-ca.key", "cluster-ca.pem"]);
    let cluster_files = (
        read(CaRole::Cluster.cert_file()),
        read(CaRole::Cluster.key_file()),
    );

    let agents = ensure_ca(dir.path(), CaRole::Agents).unwrap();
    assert_ne!(agents.ca_pem(), cluster.ca_pem(), "a ca of its own");
    assert_eq!(
        file_names(dir.path()),
        [
            "agent-ca.key",
            "agent-ca.pem",
            "cluster-ca.key",
            "cluster-ca.pem"
        ]
    );
    assert_eq!(
        (
            read(CaRole::Cluster.cert_file()),
            read(CaRole::Cluster.key_file())
        ),
        cluster_files,
        "creating the agent ca leaves the cluster ca alone"
    );

    let subject = |ca: &Ca| {
        let der = der(ca.ca_pem());
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        cert.subject().to_string()
    };
    assert!(
        subject(&cluster).contains("lr development cluster ca"),
        "{}",
        subject(&cluster)
    );
    assert!(
        subject(&agents).contains("lr development agent ca"),
        "{}",
        subject(&agents)
    );

    // Losing one CA's key breaks that CA only, and neither is rebuilt from the other's files.
    let agent_cert = read(CaRole::Agents.cert_file());
    fs::remove_file(dir.path().join(CaRole::Agents.key_file())).unwrap();
    let err = ensure_ca(dir.path(), CaRole::Agents).unwrap_err();
    assert!(err.to_string().contains("agent-ca.key"), "{err}");
    assert_eq!(
        ensure_ca(dir.path(), CaRole::Cluster).unwrap().ca_pem(),
        cluster.ca_pem()
    );
    assert_eq!(read(CaRole::Agents.cert_file()), agent_cert);
    assert_eq!(
        (
            read(CaRole::Cluster.cert_file()),
            read(CaRole::Cluster.key_file())
        ),
        cluster_files
    );
}

#[test]
fn each_ca_issues_only_the_certificates_of_its_role() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Ca::generate(CaRole::Cluster).unwrap();
    let agents = Ca::generate(CaRole::Agents).unwrap();

    let wrong = |err: PkiError, held: &str, needed: &str, what: &str| {
        assert!(
            matches!(
                err,
                PkiError::WrongCa { held: h, needed: n, what: w }
                    if h == held && n == needed && w == what
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("the {held} ca cannot issue {what}")),
            "{err}"
        );
    };
    wrong(
        cluster.issue_agent_pem("demo", "web-07").unwrap_err(),
        "cluster",
        "agent",
        "agent certificates",
    );
    wrong(
        cluster
            .issue_agent(dir.path(), "demo", "web-07")
            .unwrap_err(),
        "cluster",
        "agent",
        "agent certificates",
    );
    wrong(
        agents.issue_broker_pem(&broker(1), &[]).unwrap_err(),
        "agent",
        "cluster",
        "broker certificates",
    );
    wrong(
        agents
            .issue_broker(dir.path(), &broker(1), &[])
            .unwrap_err(),
        "agent",
        "cluster",
        "broker certificates",
    );
    wrong(
        agents.issue_server_pem("nats-server", &[]).unwrap_err(),
        "agent",
        "cluster",
        "server certificates",
    );
    wrong(
        agents
            .issue_server(dir.path(), "nats-server", &[])
            .unwrap_err(),
        "agent",
        "cluster",
        "server certificates",
    );
    assert_eq!(file_names(dir.path()), [] as [&str; 0], "nothing written");
}

fn names(cert_der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).unwrap();
    cert.subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => format!("uri:{u}"),
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
            other => panic!("unexpected name {other}"),
        })
        .collect()
}

fn common_name(cert_der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn broker_certificate_has_identity_local_and_extra_names_and_both_usages() {
    let ca = Ca::generate(CaRole::Cluster).unwrap();
    let extra = [
        "broker-1.lr.internal".to_owned(),
        "10.0.0.5".to_owned(),
        "localhost".to_owned(),
    ];
    let issued = ca.issue_broker_pem(&broker(1), &extra).unwrap();
    let der = der(&issued.cert_pem);
    assert_eq!(
        names(&der),
        [
            "uri:lr-broker://local/1",
            "localhost",
            "ip:[127, 0, 0, 1]",
            "ip:[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]",
            "broker-1.lr.internal",
            "ip:[10, 0, 0, 5]"
        ],
        "duplicates dropped"
    );
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!cert.is_ca());
    assert_eq!(common_name(&der), "broker-1");

    let err = ca
        .issue_broker_pem(&broker(1), &["".to_owned()])
        .unwrap_err();
    assert!(matches!(err, PkiError::InvalidSan { .. }), "{err}");
    let err = ca
        .issue_broker_pem(&broker(1), &["brøker".to_owned()])
        .unwrap_err();
    assert!(err.to_string().contains("\"brøker\""), "{err}");
}

#[test]
fn server_certificate_has_local_names_no_identity_and_serves_only() {
    let ca = Ca::generate(CaRole::Cluster).unwrap();
    let issued = ca
        .issue_server_pem("nats-server", &["nats.lr.internal".to_owned()])
        .unwrap();
    let der = der(&issued.cert_pem);
    assert_eq!(
        names(&der),
        [
            "localhost",
            "ip:[127, 0, 0, 1]",
            "ip:[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]",
            "nats.lr.internal"
        ]
    );
    assert_eq!(common_name(&der), "nats-server");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(matches!(
        broker_identity(&der),
        Err(PkiError::NoIdentity { .. })
    ));
    assert!(matches!(
        agent_identity(&der),
        Err(PkiError::NoIdentity { .. })
    ));
}

#[test]
fn agent_identity_round_trips_and_broker_or_ca_certificates_have_none() {
    let agents = Ca::generate(CaRole::Agents).unwrap();
    let agent = agents.issue_agent_pem("demo", "web-07").unwrap();
    let der_agent = der(&agent.cert_pem);
    let identity = agent_identity(&der_agent).unwrap();
    assert_eq!(identity.tenant, "demo");
    assert_eq!(identity.device, "web-07");
    assert_eq!(identity.to_string(), "lr-agent://demo/web-07");
    assert_eq!(identity.uri(), identity.to_string());

    assert_eq!(common_name(&der_agent), "web-07");
    assert_eq!(names(&der_agent), ["uri:lr-agent://demo/web-07"]);
    let (_, cert) = x509_parser::parse_x509_certificate(&der_agent).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);

    let cluster = Ca::generate(CaRole::Cluster).unwrap();
    let broker_pem = cluster.issue_broker_pem(&broker(1), &[]).unwrap();
    let err = agent_identity(&der(&broker_pem.cert_pem)).unwrap_err();
    assert!(
        matches!(err, PkiError::NoIdentity { scheme } if scheme == AGENT_URI_SCHEME),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("certificate has no lr-agent:// identity"),
        "{err}"
    );
    for ca in [&agents, &cluster] {
        let err = agent_identity(&der(ca.ca_pem())).unwrap_err();
        assert!(matches!(err, PkiError::NoIdentity { .. }), "{err}");
    }

    let err = agent_identity(b"not a certificate").unwrap_err();
    assert!(matches!(err, PkiError::NotACertificate { .. }), "{err}");
    let mut trailing = der_agent.clone();
    trailing.push(0);
    let err = agent_identity(&trailing).unwrap_err();
    assert!(matches!(err, PkiError::NotACertificate { .. }), "{err}");
}

#[test]
fn broker_identity_round_trips_and_agent_or_ca_certificates_have_none() {
    let cluster = Ca::generate(CaRole::Cluster).unwrap();
    let agents = Ca::generate(CaRole::Agents).unwrap();
    let identity = broker(2);
    assert_eq!(identity.to_string(), "lr-broker://local/2");
    assert_eq!(identity.uri(), identity.to_string());

    let broker_der = der(&cluster.issue_broker_pem(&identity, &[]).unwrap().cert_pem);
    assert_eq!(broker_identity(&broker_der).unwrap(), identity);
    let err = agent_identity(&broker_der).unwrap_err();
    assert!(
        matches!(err, PkiError::NoIdentity { scheme } if scheme == AGENT_URI_SCHEME),
        "a broker is no agent: {err}"
    );

    let agent_der = der(&agents.issue_agent_pem("demo", "web-07").unwrap().cert_pem);
    assert_eq!(
        agent_identity(&agent_der).unwrap(),
        AgentIdentity::new("demo", "web-07").unwrap()
    );
    let err = broker_identity(&agent_der).unwrap_err();
    assert!(
        matches!(err, PkiError::NoIdentity { scheme } if scheme == BROKER_URI_SCHEME),
        "an agent is no broker: {err}"
    );
    assert!(
        err.to_string()
            .starts_with("certificate has no lr-broker:// identity"),
        "{err}"
    );
    for ca in [&agents, &cluster] {
        let err = broker_identity(&der(ca.ca_pem())).unwrap_err();
        assert!(matches!(err, PkiError::NoIdentity { .. }), "{err}");
    }
    let err = broker_identity(b"not a certificate").unwrap_err();
    assert!(matches!(err, PkiError::NotACertificate { .. }), "{err}");
}

#[test]
fn broker_identity_is_checked_before_issuing() {
    let cluster = Ca::generate(CaRole::Cluster).unwrap();
    let err = BrokerIdentity::new("local", 0).unwrap_err();
    assert!(err.to_string().contains("node ids start at 1"), "{err}");
    let err = BrokerIdentity::new("acme.eu", 1).unwrap_err();
    assert!(
        matches!(&err, PkiError::InvalidId(e) if e.kind == ids::Kind::Broker),
        "{err}"
    );

    // The fields are public: a hand-built identity must not slip past the checks into a
    // certificate that `broker_identity` would then refuse.
    let dir = tempfile::tempdir().unwrap();
    for (cluster_name, node) in [("acme.eu", 1), ("local", 0), ("a/b", 1)] {
        let hand_built = BrokerIdentity {
            cluster: cluster_name.to_owned(),
            node,
        };
        assert!(
            cluster.issue_broker_pem(&hand_built, &[]).is_err(),
            "{hand_built}"
        );
        assert!(cluster.issue_broker(dir.path(), &hand_built, &[]).is_err());
    }
    assert_eq!(file_names(dir.path()), [] as [&str; 0], "nothing written");
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
        "lr-broker://local/1",
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
        "lr-agent://acme.eu/d1",
        "lr-agent://t1/web.07",
    ] {
        let err = agent_identity(&cert_with_uris(&[uri])).unwrap_err();
        assert!(
            matches!(err, PkiError::MalformedIdentity { .. }),
            "{uri}: {err}"
        );
        assert!(err.to_string().contains(uri), "{err}");
    }

    let err =
        agent_identity(&cert_with_uris(&["lr-agent://t1/d1", "lr-agent://t2/d2"])).unwrap_err();
    assert!(matches!(err, PkiError::AmbiguousIdentity { .. }), "{err}");

    let err =
        agent_identity(&cert_with_uris(&["https://example.org/lr-agent://t1/d1"])).unwrap_err();
    assert!(matches!(err, PkiError::NoIdentity { .. }), "{err}");
}

#[test]
fn malformed_or_ambiguous_broker_uris_are_refused() {
    let ok = broker_identity(&cert_with_uris(&[
        "https://example.org/x",
        "lr-agent://t1/d1",
        "LR-Broker://local/2",
    ]))
    .unwrap();
    assert_eq!(ok, broker(2));

    let max = format!("lr-broker://local/{}", u64::MAX);
    assert_eq!(
        broker_identity(&cert_with_uris(&[&max])).unwrap(),
        broker(u64::MAX)
    );

    let too_big = format!("lr-broker://local/{}0", u64::MAX);
    for (uri, reason) in [
        ("lr-broker://local/x", "\"x\" is not a number"),
        ("lr-broker://local/", "\"\" is not a number"),
        ("lr-broker://local/-1", "\"-1\" is not a number"),
        ("lr-broker://local/+2", "\"+2\" is not a number"),
        ("lr-broker://local/02", "\"02\" is not a number"),
        ("lr-broker://local/ 2", "\" 2\" is not a number"),
        ("lr-broker://local/2/extra", "\"2/extra\" is not a number"),
        ("lr-broker://local/2?x=1", "\"2?x=1\" is not a number"),
        (too_big.as_str(), "is not a number"),
        ("lr-broker://local/0", "node ids start at 1"),
        ("lr-broker://acme.eu/1", "invalid broker id \"acme.eu\""),
        ("lr-broker:///1", "invalid broker id \"\""),
        (
            "lr-broker://local",
            "it has no /<node id> after the cluster",
        ),
        ("lr-broker://", "it has no /<node id> after the cluster"),
    ] {
        let err = broker_identity(&cert_with_uris(&[uri])).unwrap_err();
        assert!(
            matches!(err, PkiError::MalformedIdentity { .. }),
            "{uri}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains(&format!("{uri:?}")), "{text}");
        assert!(text.contains(reason), "{uri}: {text}");
    }
    let err = broker_identity(&cert_with_uris(&["lr-broker://acme.eu/1"])).unwrap_err();
    assert!(
        err.to_string().contains(ids::Kind::Broker.rule()),
        "names the rule: {err}"
    );

    let err = broker_identity(&cert_with_uris(&[
        "lr-broker://local/1",
        "lr-broker://local/2",
    ]))
    .unwrap_err();
    assert!(matches!(err, PkiError::AmbiguousIdentity { .. }), "{err}");

    let err = broker_identity(&cert_with_uris(&[
        "https://example.org/lr-broker://local/1",
    ]))
    .unwrap_err();
    assert!(matches!(err, PkiError::NoIdentity { .. }), "{err}");
}

#[test]
fn invalid_ids_are_refused_naming_the_value() {
    let agents = Ca::generate(CaRole::Agents).unwrap();
    let cluster = Ca::generate(CaRole::Cluster).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let long = "a".repeat(ids::MAX_TOKEN_LEN + 1);
    for (tenant, device, bad) in [
        ("", "web-07", ""),
        ("demo", "", ""),
        ("demo", long.as_str(), long.as_str()),
        ("demo", "web/07", "web/07"),
        ("demo", "web.07", "web.07"),
        ("de mo", "web-07", "de mo"),
        ("demo", "wéb", "wéb"),
        ("demo", "../etc", "../etc"),
    ] {
        let err = agents.issue_agent_pem(tenant, device).unwrap_err();
        assert!(matches!(err, PkiError::InvalidId(_)), "{err}");
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        assert!(agents.issue_agent(dir.path(), tenant, device).is_err());
        assert!(AgentIdentity::new(tenant, device).is_err());
    }
    let err = BrokerIdentity::new("b/1", 1).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid broker id \"b/1\""),
        "{err}"
    );
    let err = cluster
        .issue_server(dir.path(), "../nats", &[])
        .unwrap_err();
    assert!(matches!(err, PkiError::InvalidId(_)), "{err}");
    assert!(err.to_string().contains("\"../nats\""), "{err}");
    assert_eq!(file_names(dir.path()), [] as [&str; 0], "nothing written");

    let longest = "Z".repeat(ids::MAX_TOKEN_LEN);
    let issued = agents.issue_agent_pem("t_1-x", &longest).unwrap();
    assert_eq!(
        agent_identity(&der(&issued.cert_pem)).unwrap().device,
        longest
    );
}

#[test]
fn a_dotted_tenant_is_refused_naming_the_rule() {
    let agents = Ca::generate(CaRole::Agents).unwrap();
    let err = agents.issue_agent_pem("acme.eu", "web-07").unwrap_err();
    let PkiError::InvalidId(invalid) = &err else {
        panic!("not an invalid id: {err}");
    };
    assert_eq!(invalid.kind, ids::Kind::Tenant);
    assert_eq!(invalid.value, "acme.eu");
    let text = err.to_string();
    assert!(text.starts_with("invalid tenant id \"acme.eu\""), "{text}");
    assert!(text.contains("NATS subject"), "says why: {text}");
    assert!(
        text.contains(ids::Kind::Tenant.rule()),
        "names the rule: {text}"
    );
    assert!(text.contains("no dots"), "{text}");
}
