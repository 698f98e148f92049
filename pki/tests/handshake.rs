//! The issued certificates in real rustls (ring) mutual-TLS handshakes, as tonic runs them.

use std::sync::Arc;

use pki::{AgentIdentity, Ca, IssuedPem, agent_identity};
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

fn server_config(ca: &Ca, identity: &IssuedPem) -> ServerConfig {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
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

fn client_config(ca: &Ca, identity: &IssuedPem) -> ClientConfig {
    let (certs, key) = chain(identity);
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_client_auth_cert(certs, key)
        .unwrap()
}

/// Runs a handshake in memory; returns the client certificates the server accepted.
fn handshake(
    server: ServerConfig,
    client: ClientConfig,
    server_name: &str,
) -> Result<Vec<CertificateDer<'static>>, rustls::Error> {
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
            return Ok(server.peer_certificates().unwrap().to_vec());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn agent_reaches_broker_and_broker_learns_its_identity() {
    let ca = Ca::generate().unwrap();
    let broker = ca.issue_broker_pem("b1", &[]).unwrap();
    let agent = ca.issue_agent_pem("demo", "web-07").unwrap();

    let peer = handshake(
        server_config(&ca, &broker),
        client_config(&ca, &agent),
        "localhost",
    )
    .unwrap();
    assert_eq!(
        agent_identity(&peer[0]).unwrap(),
        AgentIdentity::new("demo", "web-07").unwrap()
    );
}

#[test]
fn brokers_authenticate_each_other_by_ip_and_extra_name() {
    let ca = Ca::generate().unwrap();
    let b1 = ca.issue_broker_pem("b1", &[]).unwrap();
    let b2 = ca
        .issue_broker_pem("b2", &["b2.lr.internal".to_owned()])
        .unwrap();
    for name in ["127.0.0.1", "::1", "localhost", "b2.lr.internal"] {
        let peer = handshake(server_config(&ca, &b2), client_config(&ca, &b1), name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(agent_identity(&peer[0]).is_err(), "a broker is no agent");
    }
    let err = handshake(
        server_config(&ca, &b2),
        client_config(&ca, &b1),
        "b3.lr.internal",
    )
    .unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
}

#[test]
fn certificates_from_another_ca_or_for_the_wrong_role_are_refused() {
    let ca = Ca::generate().unwrap();
    let broker = ca.issue_broker_pem("b1", &[]).unwrap();

    let stranger = Ca::generate().unwrap();
    let foreign_agent = stranger.issue_agent_pem("demo", "web-07").unwrap();
    let err = handshake(
        server_config(&ca, &broker),
        client_config(&ca, &foreign_agent),
        "localhost",
    )
    .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");

    // An agent certificate is for clients only (no serverAuth usage).
    let agent = ca.issue_agent_pem("demo", "web-07").unwrap();
    let err = handshake(
        server_config(&ca, &agent),
        client_config(&ca, &broker),
        "localhost",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not allow extended key usage for server authentication"),
        "{err}"
    );
}
