//! TLS material for Raft RPC: the cluster CA, this node's certificate and key; mutual TLS both ways.

use std::fmt;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// PEM-encoded trust root and identity of a node. The CA is the cluster CA alone: a certificate
/// from any other CA (an agent's, say) fails the handshake. A peer's server certificate is checked
/// against the host of its configured address; a caller's certificate must also carry the
/// `lr-broker://<cluster>/<node>` identity of a member (checked on every call, see `server.rs`).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
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
            .domain_name(peer_host)
    }
}

impl fmt::Debug for TlsMaterial {
    // The private key never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}
