//! Session grants: the lease authority's signed statement that a session holds a device, and the
//! session's signature on every order it sends that device.
//!
//! The lease authority (the Raft leader, holding the authority key) signs a [`Grant`] when it grants
//! or renews a lease: tenant, device, session, user, fencing token, expiry, and the session's own
//! public key. The session's node signs each order (command, cancel, transfer ticket) with that
//! session key. An agent pins the authority's public keys ([`TrustedKeys`]) and checks both
//! signatures, so neither a copied grant nor a NATS client can put its own order in front of it.
//!
//! Time rule: a grant covers an order whose broker stamp is no later than the grant's expiry
//! ([`Grant::covers`]); both times are brokers' clocks, never the agent's alone.

#![forbid(unsafe_code)]

mod error;
mod grant;
mod keys;

pub use error::GrantError;
pub use grant::{Grant, SignedGrant};
pub use keys::{AuthorityKey, PublicKey, SessionKey, TrustedKeys, verify_signature};
