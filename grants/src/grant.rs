//! What the lease authority signs, and the rule for when it covers an order.

use serde::{Deserialize, Serialize};

use crate::keys::PublicKey;

/// One session's right to a device, as the lease authority granted or last renewed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub tenant: String,
    pub device: String,
    pub session: String,
    pub user: String,
    /// The lease's fencing token (the Raft log index of its grant).
    pub token: u64,
    /// The authority's stamp of the grant or renewal (milliseconds since the Unix epoch).
    pub issued_at_ms: u64,
    /// When the lease runs out unless renewed, on the authority's clock.
    pub expires_at_ms: u64,
    /// The key the session signs its orders with.
    pub session_key: PublicKey,
}

impl Grant {
    /// Whether an order stamped at `stamped_at_ms` by the session's broker falls inside this
    /// grant: no later than its expiry. Brokers' clocks are kept in step (NTP), so comparing the
    /// session node's stamp with the authority's expiry is sound to within their skew.
    pub fn covers(&self, stamped_at_ms: u64) -> bool {
        stamped_at_ms <= self.expires_at_ms
    }

    /// The bytes the authority signs: JSON, so a person can read a grant off the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A grant as it travels: the exact bytes signed, the signature, and which authority key made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedGrant {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
    pub key_id: String,
}
