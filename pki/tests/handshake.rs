//! The issued certificates in real rustls (ring) mutual-TLS handshakes, as tonic runs them: each
//! endpoint trusts one CA for its peers, so a certificate opens only the doors of its role.

use std::sync::Arc;

use pki::{AgentIdentity, BrokerIdentity, Ca, CaRole, IssuedPem, agent_identity, broker_identity};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Ca) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.ca_pem().as_bytes()).unwrap())
        .unwrap();
    Arc::new(roots)
}

fn chain(issued: &IssuedPem) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
    )
}

/// A server presenting `identity` that accepts only clients certified by `clients_ca`.
fn server_config(clients_ca: &Ca, identity: &IssuedPem) -> ServerConfig {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(clients_ca), provider())
        .build()
        .unwrap();
    let (certs, key) = chain(identity);
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap()
}

/// A client presenting `identity` that accepts only servers certified by `servers_ca`.
fn client_config(servers_ca: &Ca, identity: &IssuedPem) -> ClientConfig {
    let (certs, key) = chain(identity);
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(servers_ca))
        .with_client_auth_cert(certs, key)
        .unwrap()
}

/// The leaf certificates each side accepted from the other.
struct Peers {
    client_leaf: CertificateDer<'static>,
    server_leaf: CertificateDer<'static>,
}

/// Runs a handshake in memory.
fn handshake(
    server: ServerConfig,
    client: ClientConfig,
    server_name: &str,
) -> Result<Peers, rustls::Error> {
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut client = ClientConnection::new(Arc::new(client), name)?;
    let mut server = ServerConnection::new(Arc::new(server))?;
    for _ in 0..10 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets()?;

        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets()?;

        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(Peers {
                client_leaf: server.peer_certificates().unwrap()[0].clone(),
                server_leaf: client.peer_certificates().unwrap()[0].clone(),
            });
        }
    }
    panic!("handshake did not finish");
}

fn broker(node: u64) -> BrokerIdentity {
    BrokerIdentity::new("local", node).unwrap()
}

#[test]
fn agent_reaches_broker_through_the_cluster_ca_and_broker_learns_its_identity() {
    let cluster = Ca::generate(CaRole::Cluster).unwrap();
    let agents = Ca::generate(CaRole::Agents).unwrap();
    let broker_pem = cluster.issue_broker_pem(&broker(1), &[]).unwrap();
    let agent = agents.issue_agent_pem("demo", "web-07").unwrap();

    // The agents' endpoint trusts the agent CA; the agent trusts the cluster CA.
    let peers = handshake(
        server_config(&agents, &broker_pem),
        client_config(&cluster, &agent),
        "localhost",
    )
    .unwrap();
    assert_eq!(
        agent_identity(&peers.client_leaf).unwrap(),
        AgentIdentity::new("demo", "web-07").unwrap()
    );
    assert_eq!(broker_identity(&peers.server_leaf).unwrap(), broker(1));
}

#[test]
fn agent_trusting_the_agent_ca_refuses_the_broker() {
    // An agent configured with the agent CA as its server root cannot verify a broker: the
    // broker's certificate comes from the cluster CA.
    let cluster = Ca::generate(CaRole::Cluster).unwrap();
    let agents = Ca::generate(CaRole::Agents).unwrap();
    let broker_pem = cluster.issue_broker_pem(&broker(1), &[]).unwrap();
    let agent = agents.issue_agent_pem("demo", "web-07").unwrap();

    let err = handshake(
        server_config(&agents, &broker_pem),
        client_config(&agents, &agent),
        "localhost",
    )
    .err()
    .expect("the agent must not accept the broker");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[test]
fn brokers_authenticate_each_other_by_ip_and_extra_name() {
    let cluster = Ca::generate(CaRole::Cluster).unwrap();
    let b1 = cluster.issue_broker_pem(&broker(1), &[]).unwrap();
    let b2 = cluster
        .issue_broker_pem(&broker(2), &["b2.lr.internal".to_owned()])
        .unwrap();
    for name in ["127.0.0.1", "::1", "localhost", "b2.lr.internal"] {
        let peers = handshake(
            server_config(&cluster, &b2),
            client_config(&cluster, &b1),
            name,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(broker_identity(&peers.client_leaf).unwrap(), broker(1));
        assert_eq!(broker_identity(&peers.server_leaf).unwrap(), broker(2));
        assert!(
            agent_identity(&peers.client_leaf).is_err(),
            "a broker is no agent"
        );
    }
    let err = handshake(
        server_config(&cluster, &b2),
        client_config(&cluster, &b1),
        "b3.lr.internal",
    )
    .err()
    .expect("b2 is not b3");
    assert!(err.to_string().contains("not valid for name"), "{err}");
}

#[test]
fn agents_endpoint_refuses_a_broker_certificate() {
    let cluster = Ca::generate(CaRole::Cluster).unwrap();
    let agents = Ca::generate(CaRole::Agents).unwrap();
    let b1 = cluster.issue_broker_pem(&broker(1), &[]).unwrap();
    let b2 = cluster.issue_broker_pem(&broker(2), &[]).unwrap();

    // b2 trusts only the agent CA for clients; b1 poses as an agent with its cluster certificate,
    // itself trusting b2's server certificate.
    let err = handshake(
        server_config(&agents, &b2),
        client_config(&cluster, &b1),
        "localhost",
    )
    .err()
    .expect("a broker certificate must not pass as an agent");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[test]
fn cluster_endpoints_refuse_an_agent_certificate() {
    let cluster = Ca::generate(CaRole::Cluster).unwrap();
    let agents = Ca::generate(CaRole::Agents).unwrap();
    let b1 = cluster.issue_broker_pem(&broker(1), &[]).unwrap();
    let nats = cluster.issue_server_pem("nats-server", &[]).unwrap();
    let agent = agents.issue_agent_pem("demo", "web-07").unwrap();

    // Raft (a broker) and NATS (nats-server) trust only the cluster CA for clients.
    for server in [&b1, &nats] {
        let err = handshake(
            server_config(&cluster, server),
            client_config(&cluster, &agent),
            "localhost",
        )
        .err()
        .expect("an agent certificate must not join the cluster");
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    }
}

#[test]
fn nats_server_certificate_serves_brokers_but_is_no_client() {
    let cluster = Ca::generate(CaRole::Cluster).unwrap();
    let b1 = cluster.issue_broker_pem(&broker(1), &[]).unwrap();
    let nats = cluster.issue_server_pem("nats-server", &[]).unwrap();

    let peers = handshake(
        server_config(&cluster, &nats),
        client_config(&cluster, &b1),
        "localhost",
    )
    .unwrap();
    assert_eq!(broker_identity(&peers.client_leaf).unwrap(), broker(1));

    let err = handshake(
        server_config(&cluster, &b1),
        client_config(&cluster, &nats),
        "localhost",
    )
    .err()
    .expect("a server certificate has no client usage");
    assert!(
        err.to_string()
            .contains("does not allow extended key usage for client authentication"),
        "{err}"
    );
}

#[test]
fn certificates_from_another_ca_or_for_the_wrong_role_are_refused() {
    let cluster = Ca::generate(CaRole::Cluster).unwrap();
    let agents = Ca::generate(CaRole::Agents).unwrap();
    let broker_pem = cluster.issue_broker_pem(&broker(1), &[]).unwrap();

    let stranger = Ca::generate(CaRole::Agents).unwrap();
    let foreign_agent = stranger.issue_agent_pem("demo", "web-07").unwrap();
    let err = handshake(
        server_config(&agents, &broker_pem),
        client_config(&cluster, &foreign_agent),
        "localhost",
    )
    .err()
    .expect("an agent certificate from another agent ca must be refused");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // An agent certificate is for clients only (no serverAuth usage), even to a client that
    // trusts its CA.
    let agent = agents.issue_agent_pem("demo", "web-07").unwrap();
    let err = handshake(
        server_config(&agents, &agent),
        client_config(&agents, &agent),
        "localhost",
    )
    .err()
    .expect("an agent certificate cannot serve");
    assert!(
        err.to_string()
            .contains("does not allow extended key usage for server authentication"),
        "{err}"
    );
}
