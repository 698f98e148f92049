//! The identities peers prove with their certificates, each a SAN URI: an agent's
//! `lr-agent://<tenant>/<device>`, a broker's `lr-broker://<cluster>/<node id>`.
//!
//! Only the SAN URI counts; the common name is for people reading the certificate. Nothing here
//! verifies the certificate: read an identity only from one the TLS layer has already verified
//! against the right CA (the agent issuing CA for agents, the cluster CA for brokers).

use std::fmt;

use x509_parser::extensions::GeneralName;

use crate::PkiError;

/// Scheme and separator that start an agent identity URI.
pub const AGENT_URI_SCHEME: &str = "lr-agent://";
/// Scheme and separator that start a broker identity URI.
pub const BROKER_URI_SCHEME: &str = "lr-broker://";

/// Who an agent is: a device within a tenant. Both ids are checked by [`ids`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentIdentity {
    pub tenant: String,
    pub device: String,
}

impl AgentIdentity {
    /// Checks both ids and builds the identity.
    pub fn new(tenant: &str, device: &str) -> Result<Self, PkiError> {
        ids::tenant(tenant)?;
        ids::device(device)?;
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

/// Who a broker is: a node of a named cluster. The cluster name is checked by [`ids`]; node ids
/// start at 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerIdentity {
    pub cluster: String,
    pub node: u64,
}

impl BrokerIdentity {
    /// Checks the cluster name and node id and builds the identity.
    pub fn new(cluster: &str, node: u64) -> Result<Self, PkiError> {
        ids::broker(cluster)?;
        if node == 0 {
            return Err(PkiError::MalformedIdentity {
                uri: format!("{BROKER_URI_SCHEME}{cluster}/0"),
                reason: "node ids start at 1".into(),
            });
        }
        Ok(Self {
            cluster: cluster.to_owned(),
            node,
        })
    }

    /// `lr-broker://<cluster>/<node>`
    pub fn uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for BrokerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{BROKER_URI_SCHEME}{}/{}", self.cluster, self.node)
    }
}

/// Reads the agent identity from a DER certificate, as tonic hands it over
/// (`request.peer_certs()`, leaf first).
///
/// Refuses a certificate without an `lr-agent://` SAN URI (a broker certificate, say), with a
/// malformed one, or with more than one.
pub fn agent_identity(cert_der: &[u8]) -> Result<AgentIdentity, PkiError> {
    let uri = identity_uri(cert_der, AGENT_URI_SCHEME)?;
    let (tenant, device) = split_uri(&uri, AGENT_URI_SCHEME, "tenant", "device")?;
    AgentIdentity::new(tenant, device).map_err(|e| malformed_id(&uri, e))
}

/// Reads the broker identity from a DER certificate; refuses one without exactly one well-formed
/// `lr-broker://` SAN URI (an agent certificate, say).
pub fn broker_identity(cert_der: &[u8]) -> Result<BrokerIdentity, PkiError> {
    let uri = identity_uri(cert_der, BROKER_URI_SCHEME)?;
    let (cluster, node) = split_uri(&uri, BROKER_URI_SCHEME, "cluster", "node id")?;
    let node = node
        .parse::<u64>()
        .ok()
        // `u64::from_str` also takes "+2" and "02": one node, one spelling.
        .filter(|n| n.to_string() == node)
        .ok_or_else(|| PkiError::MalformedIdentity {
            uri: uri.clone(),
            reason: format!("its node id {node:?} is not a number in plain decimal digits"),
        })?;
    BrokerIdentity::new(cluster, node).map_err(|e| malformed_id(&uri, e))
}

/// The one SAN URI of `cert_der` with `scheme`.
fn identity_uri(cert_der: &[u8], scheme: &'static str) -> Result<String, PkiError> {
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
        .ok_or(PkiError::NoIdentity { scheme })?;

    let mut found: Option<&str> = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name
            && has_scheme(uri, scheme)
        {
            if let Some(first) = found {
                return Err(PkiError::AmbiguousIdentity {
                    first: first.to_owned(),
                    second: (*uri).to_owned(),
                });
            }
            found = Some(uri);
        }
    }
    found
        .map(str::to_owned)
        .ok_or(PkiError::NoIdentity { scheme })
}

/// URI schemes are case-insensitive (RFC 3986 §3.1).
fn has_scheme(uri: &str, scheme: &str) -> bool {
    uri.get(..scheme.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
}

/// `<scheme><first>/<second>`
fn split_uri<'u>(
    uri: &'u str,
    scheme: &str,
    first: &str,
    second: &str,
) -> Result<(&'u str, &'u str), PkiError> {
    uri[scheme.len()..]
        .split_once('/')
        .ok_or_else(|| PkiError::MalformedIdentity {
            uri: uri.to_owned(),
            reason: format!("it has no /<{second}> after the {first}"),
        })
}

fn malformed_id(uri: &str, error: PkiError) -> PkiError {
    match error {
        PkiError::InvalidId(invalid) => PkiError::MalformedIdentity {
            uri: uri.to_owned(),
            reason: invalid.to_string(),
        },
        other => other,
    }
}
