//! The agent's TLS material: the pinned cluster CA and the device's client certificate.

use std::fmt;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::config::{ConfigError, TlsPaths};

#[derive(Clone)]
pub struct TlsMaterial {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    server_name: String,
}

impl TlsMaterial {
    /// Reads the PEM files; an error names the config key of the file that failed.
    pub fn load(paths: &TlsPaths) -> Result<Self, ConfigError> {
        let read = |key: &str, path: &std::path::Path| {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                key: key.into(),
                reason: format!("cannot read '{}': {e}", path.display()),
            })?;
            if !text.contains("-----BEGIN ") {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    reason: format!("'{}' is not a PEM file", path.display()),
                });
            }
            Ok(text)
        };
        Ok(Self {
            ca_pem: read("tls.ca_cert", &paths.ca_cert)?,
            cert_pem: read("tls.cert", &paths.cert)?,
            key_pem: read("tls.key", &paths.key)?,
            server_name: paths.server_name.clone(),
        })
    }

    /// Only the cluster CA is trusted (no system roots): the agent pins its cluster.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(self.server_name.clone())
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
