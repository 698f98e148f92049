//! Development PKI for brokers and agents, and the agent identity carried in a client certificate.
//!
//! - [`issue`]: a CA kept in a directory (`ca.pem`, `ca.key`, created once and reused) that issues
//!   broker certificates (TLS server and client: agent gRPC, HTTPS API, broker↔broker Raft mTLS)
//!   and agent certificates (TLS client, identity `lr-agent://<tenant>/<device>`).
//! - [`identity`]: reads that identity back from a verified peer certificate.
//!
//! Only [`ensure_ca`] and the `issue_*` methods that take a directory touch the disk (blocking);
//! everything else works on PEM strings and DER bytes.

#![forbid(unsafe_code)]

pub mod identity;
pub mod issue;

use std::path::PathBuf;

pub use identity::{AGENT_URI_SCHEME, AgentIdentity, agent_identity};
pub use issue::{CA_CERT_FILE, CA_KEY_FILE, Ca, IssuedPaths, IssuedPem, ensure_ca};

/// Longest tenant, device or broker id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Everything that can go wrong issuing certificates or reading an identity from one.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(
        "invalid {kind} id {value:?}: {reason}; use 1 to {MAX_ID_LEN} characters from A-Z a-z 0-9 . _ -"
    )]
    InvalidId {
        kind: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error(
        "invalid subject alternative name {value:?}: {reason}; give a dns name or an ip address"
    )]
    InvalidSan { value: String, reason: String },

    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "found {} but not {}; restore the missing file, or remove both to create a new development ca (every certificate it issued must then be issued again)",
        present.display(),
        missing.display()
    )]
    CaIncomplete { present: PathBuf, missing: PathBuf },

    #[error(
        "cannot use the development ca: {reason}; restore ca.pem and ca.key, or remove both to create a new ca (every certificate it issued must then be issued again)"
    )]
    BadCa { reason: String },

    #[error(
        "cannot generate {what}: {source}; this is a bug in the pki crate or its rcgen version"
    )]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },

    #[error(
        "cannot parse the peer certificate: {reason}; the tls layer should hand over x.509 certificates in der"
    )]
    NotACertificate { reason: String },

    #[error(
        "certificate has no lr-agent identity (a san uri {AGENT_URI_SCHEME}<tenant>/<device>); agents must present a certificate issued for them, for example by `lr-broker dev-certs`"
    )]
    NoAgentIdentity,

    #[error(
        "certificate has a malformed lr-agent identity {uri:?}: {reason}; issue the agent a certificate with {AGENT_URI_SCHEME}<tenant>/<device>"
    )]
    MalformedAgentIdentity { uri: String, reason: String },

    #[error(
        "certificate has more than one lr-agent identity ({first:?}, {second:?}); issue the agent a certificate with exactly one"
    )]
    AmbiguousAgentIdentity { first: String, second: String },
}

/// Checks a tenant, device or broker id: non-empty, at most [`MAX_ID_LEN`] characters, only
/// `[A-Za-z0-9._-]`. The ids end up in file names and in `lr-agent://` URIs, so nothing that could
/// separate a path or a URI is allowed.
pub fn validate_id(kind: &'static str, value: &str) -> Result<(), PkiError> {
    let reason = if value.is_empty() {
        "it is empty"
    } else if value.len() > MAX_ID_LEN {
        "it is too long"
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "it has a character outside A-Z a-z 0-9 . _ -"
    } else {
        return Ok(());
    };
    Err(PkiError::InvalidId {
        kind,
        value: value.to_owned(),
        reason,
    })
}
