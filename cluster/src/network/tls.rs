//! TLS material for Raft RPC: one CA, this node's certificate and key; mutual TLS both ways.

use std::fmt;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// PEM-encoded trust root and identity of a node. Servers require client certificates from the same CA.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The name peers' certificates are checked against; the peer's host when unset.
    pub server_name: Option<String>,
}

impl TlsMaterial {
    pub(crate) fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }

    pub(crate) fn client_config(&self, peer_host: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(self.server_name.as_deref().unwrap_or(peer_host))
    }
}

impl fmt::Debug for TlsMaterial {
    // The private key never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}
