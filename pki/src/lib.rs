//! Development PKI for brokers and agents, and the identities their certificates carry.
//!
//! - [`issue`]: two CAs, each kept in a directory and created once: the **cluster CA** issues
//!   broker certificates (identity `lr-broker://<cluster>/<node>`; TLS server and client: agent
//!   gRPC, HTTPS API, Raft, NATS) and nats-server's server certificate; the **agent CA** issues
//!   agent certificates (TLS client, identity `lr-agent://<tenant>/<device>`). Raft and NATS trust
//!   only the cluster CA, the agents' endpoint only the agent CA, so neither kind of certificate
//!   opens the other's doors.
//! - [`identity`]: reads those identities back from a verified peer certificate.
//!
//! Only [`ensure_ca`] and the `issue_*` methods that take a directory touch the disk (blocking);
//! everything else works on PEM strings and DER bytes.

#![forbid(unsafe_code)]

pub mod enrol;
pub mod identity;
pub mod issue;

use std::path::PathBuf;

pub use enrol::{
    BACKDATE, IssuedCertificate, NewRequest, Validity, certifies_key, fingerprint, new_request,
    pem_to_der, validity,
};
pub use identity::{
    AGENT_URI_SCHEME, AgentIdentity, BROKER_URI_SCHEME, BrokerIdentity, agent_identity,
    broker_identity,
};
pub use issue::{
    AUTHORITY_KEY_FILE, Ca, CaRole, IssuedPaths, IssuedPem, ensure_authority_key, ensure_ca,
    write_public, write_secret,
};

/// Everything that can go wrong issuing certificates or reading an identity from one.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(transparent)]
    InvalidId(#[from] ids::InvalidId),

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
        "cannot use the development {} ca: {reason}; restore {} and {}, or remove both to create a new ca (every certificate it issued must then be issued again)",
        role.name(),
        role.cert_file(),
        role.key_file()
    )]
    BadCa { role: CaRole, reason: String },

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
        "certificate has no {scheme} identity (a san uri); present a certificate issued for this role, for example by `lr-broker dev-certs`"
    )]
    NoIdentity { scheme: &'static str },

    #[error(
        "certificate has a malformed identity {uri:?}: {reason}; issue a certificate with {AGENT_URI_SCHEME}<tenant>/<device> or {BROKER_URI_SCHEME}<cluster>/<node>"
    )]
    MalformedIdentity { uri: String, reason: String },

    #[error(
        "certificate has more than one identity ({first:?}, {second:?}); issue a certificate with exactly one"
    )]
    AmbiguousIdentity { first: String, second: String },

    #[error(
        "the certificate request is refused: {reason}; send a pkcs#10 request signed by the device's new key"
    )]
    BadRequest { reason: String },

    #[error(
        "the {held} ca cannot issue {what}; {what} come from the {needed} ca, so that neither kind of certificate is trusted where the other is"
    )]
    WrongCa {
        held: &'static str,
        needed: &'static str,
        what: &'static str,
    },
}
