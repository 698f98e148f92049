//! Checked tenant and transfer ids, and the only place chunk subjects and message ids are built.
//!
//! Ids pass the [`ids`] rules (`[A-Za-z0-9_-]`, 1 to 64 characters): no dots, wildcards or spaces
//! can reach a subject, so a transfer id can never address another tenant's or another
//! transfer's chunks.

use super::StoreError;

/// A tenant and a transfer whose ids have been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TransferKey {
    tenant: String,
    transfer: String,
}

impl TransferKey {
    pub(crate) fn new(tenant: &str, transfer: &str) -> Result<Self, StoreError> {
        ids::tenant(tenant)?;
        ids::transfer(transfer)?;
        Ok(Self {
            tenant: tenant.to_string(),
            transfer: transfer.to_string(),
        })
    }

    pub(crate) fn transfer(&self) -> &str {
        &self.transfer
    }

    pub(crate) fn tenant(&self) -> &str {
        &self.tenant
    }

    /// `lr.<tenant>.xfer.<transfer>.chunk.<index>`
    pub(crate) fn chunk_subject(&self, index: u64) -> String {
        format!("{}{index}", self.chunk_prefix())
    }

    /// Every chunk of this transfer and nothing else.
    pub(crate) fn chunks_filter(&self) -> String {
        format!("{}*", self.chunk_prefix())
    }

    /// The chunk index of a subject of this transfer.
    pub(crate) fn index_of(&self, subject: &str) -> Option<u64> {
        subject
            .strip_prefix(&self.chunk_prefix())?
            .parse::<u64>()
            .ok()
    }

    /// `Nats-Msg-Id` of a chunk. The duplicate window is stream-wide, so the id carries the tenant
    /// (the same transfer id in two tenants must not collide) and the chunk's checksum (a re-send
    /// with other content is not a duplicate of the first).
    pub(crate) fn msg_id(&self, index: u64, sha256: &Sha256Hex) -> String {
        format!(
            "{}:{}:{index}:{}",
            self.tenant,
            self.transfer,
            sha256.as_str()
        )
    }

    fn chunk_prefix(&self) -> String {
        format!("lr.{}.xfer.{}.chunk.", self.tenant, self.transfer)
    }
}

/// A SHA-256 as 64 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sha256Hex(String);

impl Sha256Hex {
    /// Reads a checksum given by a caller; upper case is accepted and folded.
    pub(crate) fn parse(value: &str) -> Result<Self, StoreError> {
        if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(value.to_ascii_lowercase()))
        } else {
            Err(StoreError::InvalidChecksum {
                value: value.chars().take(80).collect(),
            })
        }
    }

    pub(crate) fn from_digest(digest: &[u8]) -> Self {
        Self(hex::encode(digest))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}
