//! The agent's TLS material: the pinned cluster CA and the device's client certificate, read
//! afresh for every dial so that a renewed certificate is presented from the next one on.

use std::fmt;

use pki::Validity;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::config::{ConfigError, TlsPaths};
use crate::credentials::{self, rfc3339};

#[derive(Clone)]
pub struct TlsMaterial {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    server_name: String,
    validity: Validity,
}

/// The device's certificate has expired: no broker will take it, and renewal needs a working
/// stream, so only a new enrolment helps.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the device's certificate expired at {}; enrol again with `lr-agent enroll --broker <host:port> --ca-fingerprint <sha256>` and a new token (an agent offline past its certificate's expiry must enrol again)",
    rfc3339(*.not_after_ms)
)]
pub struct CertificateExpired {
    pub not_after_ms: u64,
}

impl TlsMaterial {
    /// Finishes a replacement of the key and certificate a crash interrupted, then reads the PEM
    /// files; an error names the config key of the file that failed. Blocking.
    pub fn load(paths: &TlsPaths) -> Result<Self, ConfigError> {
        credentials::finish_pending(&paths.key, &paths.cert).map_err(|e| ConfigError::Invalid {
            key: "tls.cert".into(),
            reason: format!("cannot finish replacing the certificate and its key: {e}"),
        })?;
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
        let ca_pem = read("tls.ca_cert", &paths.ca_cert)?;
        let cert_pem = read("tls.cert", &paths.cert)?;
        let validity = pki::pem_to_der(&cert_pem)
            .and_then(|der| pki::validity(&der))
            .map_err(|e| ConfigError::Invalid {
                key: "tls.cert".into(),
                reason: format!(
                    "'{}' holds no usable certificate: {e}",
                    paths.cert.display()
                ),
            })?;
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem: read("tls.key", &paths.key)?,
            server_name: paths.server_name.clone(),
            validity,
        })
    }

    /// When the device's certificate is valid.
    pub fn validity(&self) -> Validity {
        self.validity
    }

    /// Refuses a certificate whose `notAfter` has passed at `now_ms`.
    pub fn check_expiry(&self, now_ms: u64) -> Result<(), CertificateExpired> {
        if now_ms > self.validity.not_after_ms {
            return Err(CertificateExpired {
                not_after_ms: self.validity.not_after_ms,
            });
        }
        Ok(())
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
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}
