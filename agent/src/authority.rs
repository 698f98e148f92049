//! Which orders the agent obeys, decided as a state machine: an order in, admitted or refused out;
//! no IO, no clock, no protobuf types ([`crate::convert`] reads those into a [`SignedOrder`]).
//!
//! Order of checks for an order:
//! 1. it carries a grant, and the grant verifies with one of the authority keys this agent trusts;
//! 2. the grant names this agent's tenant and device;
//! 3. the order's signature verifies over exactly its body bytes with the session key the grant
//!    names (a real grant copied onto someone else's order fails here);
//! 4. the session and fencing token the order claims are the grant's;
//! 5. the grant covers the order's stamp (stamped no later than the grant's expiry);
//! 6. commands and cancels only: the grant did not expire before the newest broker stamp this
//!    agent has already verified, less [`CLOCK_SKEW_MS`].
//!
//! Only an admitted order reaches the executor, so the fencing ledger sees verified tokens alone:
//! a forged order cannot raise the highest token and lock the real sessions out.
//!
//! Time: the agent never compares a grant with its own clock, which may be wrong or set back on
//! purpose. Expiry is judged on brokers' clocks: an order's own stamp (rule 5) and the newest stamp
//! of any admitted order (rule 6). Every admitted stamp is at most its grant's expiry, which the
//! authority signed, so the remembered stamp cannot be pushed past what the authority granted.
//! It lives in memory only; after a restart the first admitted orders set it again.
//! Getfile tickets and put offers skip rule 6: they are signed once when their transfer starts and
//! are shown again for as long as it runs, after their session may have ended.

use grants::{Grant, GrantError, SignedGrant, TrustedKeys, verify_signature};

/// How far two brokers' clocks may be apart (NTP keeps them within far less). Rule 6 compares the
/// expiry the authority stamped with a stamp from another broker, so a command of a live session
/// whose broker runs a little behind must not be refused for that difference alone.
pub const CLOCK_SKEW_MS: u64 = 10_000;

/// What an order asks for, as far as the authority's rules differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKind {
    Command,
    Cancel,
    /// What a getfile may read: shown with every chunk request of its transfer.
    GetTicket,
    PutOffer,
}

impl OrderKind {
    /// A transfer's order is shown again while the transfer runs, after its session may have
    /// ended, and so is its cancel (signed when the transfer started); they are not refused
    /// because a newer grant was seen since. A cancel can only stop what its session started.
    pub fn outlives_session(self) -> bool {
        !matches!(self, Self::Command)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Cancel => "cancel",
            Self::GetTicket => "getfile ticket",
            Self::PutOffer => "put offer",
        }
    }
}

/// What an order's body says about itself: read from the signed bytes, checked against its grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub kind: OrderKind,
    pub session_id: String,
    pub token: u64,
    /// When the session's broker signed it, on that broker's clock (ms since the Unix epoch).
    pub stamped_at_ms: u64,
}

/// An order as it came: the exact bytes signed, the session's signature, the authority's grant,
/// and what the bytes claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOrder {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
    pub grant: Option<SignedGrant>,
    pub claim: Claim,
}

/// Why an order was refused. Nothing of a refused order is done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "the order cannot be read ({why}); nothing was done; the broker may speak another protocol version than this agent"
    )]
    Malformed { why: String },
    #[error(
        "the order carries no grant from the lease authority; nothing was done; this agent obeys only orders of a session the lease authority granted"
    )]
    NoGrant,
    #[error(
        "the order's grant is signed with key {key_id}, which this agent does not trust (it trusts {trusted}); nothing was done; if the lease authority's key was rotated, add its new public key to authority_keys"
    )]
    UnknownKey { key_id: String, trusted: String },
    #[error(
        "the order's grant does not verify with authority key {key_id}: it was altered or forged; nothing was done"
    )]
    BadGrantSignature { key_id: String },
    #[error(
        "the order's grant verifies but cannot be read ({why}); nothing was done; the lease authority may be newer than this agent"
    )]
    MalformedGrant { why: String },
    #[error(
        "the order's grant is for device {device} of tenant {tenant}, not for this device ({our_device} of tenant {our_tenant}); nothing was done; the order was sent to the wrong device"
    )]
    OtherDevice {
        tenant: String,
        device: String,
        our_tenant: String,
        our_device: String,
    },
    #[error(
        "the order is not signed with the key its grant gives session {session}: it was altered, or a copied grant was put on another order; nothing was done"
    )]
    BadOrderSignature { session: String },
    #[error(
        "the order claims session {claimed} but its grant is for session {granted}; nothing was done"
    )]
    OtherSession { claimed: String, granted: String },
    #[error(
        "the order claims fencing token {claimed} but its grant gives token {granted}; nothing was done"
    )]
    OtherToken { claimed: u64, granted: u64 },
    #[error(
        "the order was stamped at {} but its grant expired at {}; nothing was done; the session's lease has run out: open a new session",
        at(*.stamped_at_ms), at(*.expires_at_ms)
    )]
    Expired {
        stamped_at_ms: u64,
        expires_at_ms: u64,
    },
    #[error(
        "the order's grant expired at {}, before {}, the newest broker stamp this agent has verified (allowing {} s of clock skew); nothing was done; the session's lease has run out: open a new session",
        at(*.expires_at_ms), at(*.newest_stamp_ms), CLOCK_SKEW_MS / 1000
    )]
    Superseded {
        expires_at_ms: u64,
        newest_stamp_ms: u64,
    },
}

/// A broker stamp for a person: RFC 3339 in UTC.
fn at(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(
            || format!("{ms} ms after the Unix epoch"),
            |t| t.to_string(),
        )
}

/// The authority keys this agent trusts, who it is, and the newest broker stamp it has verified.
#[derive(Debug, Clone)]
pub struct Authority {
    trusted: TrustedKeys,
    tenant: String,
    device: String,
    newest_stamp_ms: u64,
}

impl Authority {
    pub fn new(trusted: TrustedKeys, tenant: impl Into<String>, device: impl Into<String>) -> Self {
        Self {
            trusted,
            tenant: tenant.into(),
            device: device.into(),
            newest_stamp_ms: 0,
        }
    }

    /// The newest stamp of an admitted order (0 before the first).
    pub fn newest_stamp_ms(&self) -> u64 {
        self.newest_stamp_ms
    }

    /// Decides whether `order` is obeyed and, if so, remembers its stamp; the grant it was
    /// admitted under comes back.
    pub fn admit(&mut self, order: &SignedOrder) -> Result<Grant, Refused> {
        let grant = self.check(order)?;
        self.newest_stamp_ms = self.newest_stamp_ms.max(order.claim.stamped_at_ms);
        Ok(grant)
    }

    /// The decision alone, in the order the module documents.
    pub fn check(&self, order: &SignedOrder) -> Result<Grant, Refused> {
        let signed = order.grant.as_ref().ok_or(Refused::NoGrant)?;
        let grant = self
            .trusted
            .verify(signed)
            .map_err(|e| self.grant_error(e))?;
        if grant.tenant != self.tenant || grant.device != self.device {
            return Err(Refused::OtherDevice {
                tenant: grant.tenant,
                device: grant.device,
                our_tenant: self.tenant.clone(),
                our_device: self.device.clone(),
            });
        }
        if !verify_signature(&grant.session_key, &order.body, &order.signature) {
            return Err(Refused::BadOrderSignature {
                session: grant.session,
            });
        }
        let claim = &order.claim;
        if claim.session_id != grant.session {
            return Err(Refused::OtherSession {
                claimed: claim.session_id.clone(),
                granted: grant.session,
            });
        }
        if claim.token != grant.token {
            return Err(Refused::OtherToken {
                claimed: claim.token,
                granted: grant.token,
            });
        }
        if !grant.covers(claim.stamped_at_ms) {
            return Err(Refused::Expired {
                stamped_at_ms: claim.stamped_at_ms,
                expires_at_ms: grant.expires_at_ms,
            });
        }
        if !claim.kind.outlives_session()
            && grant.expires_at_ms.saturating_add(CLOCK_SKEW_MS) < self.newest_stamp_ms
        {
            return Err(Refused::Superseded {
                expires_at_ms: grant.expires_at_ms,
                newest_stamp_ms: self.newest_stamp_ms,
            });
        }
        Ok(grant)
    }

    fn grant_error(&self, e: GrantError) -> Refused {
        match e {
            GrantError::UnknownKey { key_id } => Refused::UnknownKey {
                key_id,
                trusted: self
                    .trusted
                    .keys()
                    .iter()
                    .map(|k| k.key_id())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            GrantError::BadGrantSignature { key_id } => Refused::BadGrantSignature { key_id },
            GrantError::MalformedGrant(why) => Refused::MalformedGrant { why },
            other => Refused::MalformedGrant {
                why: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests;
