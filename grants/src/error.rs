//! Why a grant, a key or a signature was refused.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GrantError {
    #[error(
        "the grant is signed with key {key_id}, which is not among this agent's authority keys; give the agent the lease authority's current public key"
    )]
    UnknownKey { key_id: String },
    #[error("the grant's signature does not verify with authority key {key_id}")]
    BadGrantSignature { key_id: String },
    #[error("the order's signature does not verify with its session's key")]
    BadOrderSignature,
    #[error("the grant cannot be read: {0}")]
    MalformedGrant(String),
    #[error("public key {text:?} is not an Ed25519 key written as ed25519:<64 hex digits>: {why}")]
    BadPublicKey { text: String, why: String },
    #[error("authority key {path}: {why}")]
    BadAuthorityKey { path: String, why: String },
    #[error("no session key could be generated: {0}")]
    KeyGeneration(String),
}
