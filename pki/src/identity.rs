//! The identity an agent proves with its client certificate: the SAN URI `lr-agent://<tenant>/<device>`.
//!
//! Only the SAN URI counts; the common name (the device id in certificates from this crate) is for
//! people reading the certificate. Nothing here verifies the certificate: call
//! [`agent_identity`] only on one the TLS layer has already verified against the CA.

use std::fmt;

use x509_parser::extensions::GeneralName;

use crate::{PkiError, validate_id};

/// Scheme and separator that start an agent identity URI.
pub const AGENT_URI_SCHEME: &str = "lr-agent://";

/// Who an agent is: a device within a tenant. Both ids are checked by [`crate::validate_id`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentIdentity {
    pub tenant: String,
    pub device: String,
}

impl AgentIdentity {
    /// Checks both ids and builds the identity.
    pub fn new(tenant: &str, device: &str) -> Result<Self, PkiError> {
        validate_id("tenant", tenant)?;
        validate_id("device", device)?;
        Ok(Self {
            tenant: tenant.to_owned(),
            device: device.to_owned(),
        })
    }

    /// `lr-agent://<tenant>/<device>`
    pub fn uri(&self) -> String {
        format!("{AGENT_URI_SCHEME}{}/{}", self.tenant, self.device)
    }
}

impl fmt::Display for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{AGENT_URI_SCHEME}{}/{}", self.tenant, self.device)
    }
}

/// Reads the agent identity from a DER certificate, as tonic hands it over
/// (`request.peer_certs()`, leaf first).
///
/// Refuses a certificate without an `lr-agent://` SAN URI (a broker certificate, say), with a
/// malformed one, or with more than one.
pub fn agent_identity(cert_der: &[u8]) -> Result<AgentIdentity, PkiError> {
    let not_cert = |reason: String| PkiError::NotACertificate { reason };
    let (rest, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| not_cert(e.to_string()))?;
    if !rest.is_empty() {
        return Err(not_cert(format!(
            "{} bytes follow the certificate",
            rest.len()
        )));
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|e| not_cert(format!("bad subject alternative name extension ({e})")))?
        .ok_or(PkiError::NoAgentIdentity)?;

    let mut found: Option<&str> = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name
            && has_agent_scheme(uri)
        {
            if let Some(first) = found {
                return Err(PkiError::AmbiguousAgentIdentity {
                    first: first.to_owned(),
                    second: (*uri).to_owned(),
                });
            }
            found = Some(uri);
        }
    }
    parse_agent_uri(found.ok_or(PkiError::NoAgentIdentity)?)
}

/// URI schemes are case-insensitive (RFC 3986 §3.1).
fn has_agent_scheme(uri: &str) -> bool {
    uri.get(..AGENT_URI_SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(AGENT_URI_SCHEME))
}

fn parse_agent_uri(uri: &str) -> Result<AgentIdentity, PkiError> {
    let malformed = |reason: String| PkiError::MalformedAgentIdentity {
        uri: uri.to_owned(),
        reason,
    };
    let rest = &uri[AGENT_URI_SCHEME.len()..];
    let (tenant, device) = rest
        .split_once('/')
        .ok_or_else(|| malformed("it has no /<device> after the tenant".into()))?;
    AgentIdentity::new(tenant, device).map_err(|e| match e {
        PkiError::InvalidId {
            kind,
            value,
            reason,
        } => malformed(format!("its {kind} id {value:?} is invalid: {reason}")),
        other => other,
    })
}
