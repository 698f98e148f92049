//! Opening a session (idempotent with a client's key) and ending one whose node is gone.

use cluster::lease::{AcquireRequest, Lease, LeaseError};
use cluster::{ClusterError, Granted, LeaseService};
use grants::SessionKey;
use ractor::{Actor, ActorCell, SpawnErr};
use sha2::{Digest, Sha256};

use super::{SessionActor, SessionArgs};
use crate::bus::Bus;
use crate::config::SessionsSection;
use crate::orders::Signer;
use crate::transfer::TransferContext;

/// Who opens a session, and on what.
pub struct OpenRequest {
    pub tenant: String,
    pub user: String,
    pub device: String,
    /// The client's idempotency key: the same key opens at most one live session.
    pub key: Option<String>,
}

impl OpenRequest {
    /// A fresh time-ordered id, or with a key, the one id that key (of this analyst) names.
    fn session_id(&self) -> String {
        match &self.key {
            None => uuid::Uuid::now_v7().to_string(),
            Some(key) => {
                let digest = Sha256::new()
                    .chain_update(self.tenant.as_bytes())
                    .chain_update([0])
                    .chain_update(self.user.as_bytes())
                    .chain_update([0])
                    .chain_update(key.as_bytes())
                    .finalize();
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(&digest[..16]);
                uuid::Uuid::new_v8(bytes).to_string()
            }
        }
    }
}

/// What a node needs to open sessions.
#[derive(Clone)]
pub struct SessionContext {
    pub node_id: u64,
    pub bus: Bus,
    pub leases: LeaseService,
    pub settings: SessionsSection,
    pub transfers: TransferContext,
    /// The supervisor session actors run under.
    pub supervisor: ActorCell,
    /// Whether this node may act for its sessions.
    pub liveness: crate::liveness::Liveness,
}

/// A session as [`open`] left it.
pub struct Opened {
    pub lease: Lease,
    /// The request's key had opened it before: nothing new was opened.
    pub replayed: bool,
}

/// The live session `request`'s key opened before, if it has a key and there is one. A session of
/// the same analyst for another device under the same key is refused as `SessionIdInUse`.
pub async fn find_opened(
    leases: &LeaseService,
    request: &OpenRequest,
) -> Result<Option<Lease>, ClusterError> {
    if request.key.is_none() {
        return Ok(None);
    }
    let session = request.session_id();
    match leases.get(&request.tenant, &session).await? {
        Some(lease) if lease.user == request.user && lease.device == request.device => {
            Ok(Some(lease))
        }
        Some(_) => Err(ClusterError::Rejected(LeaseError::SessionIdInUse {
            session,
        })),
        None => Ok(None),
    }
}

/// Acquires the lease and starts the session's actor, or answers the session the request's key
/// opened before (on this node or another).
pub async fn open(request: OpenRequest, context: SessionContext) -> Result<Opened, ClusterError> {
    let opened = start(request, context).await;
    match &opened {
        Ok(Opened {
            replayed: false, ..
        }) => metrics::counter!(crate::metrics::SESSIONS_OPENED).increment(1),
        Ok(_) => {}
        Err(error) => crate::metrics::session_refused(crate::metrics::refusal_reason(error)),
    }
    opened
}

async fn start(request: OpenRequest, context: SessionContext) -> Result<Opened, ClusterError> {
    // The session's own key: the authority names it in the grant, the agent checks every order
    // against it. It lives in the session actor's memory only.
    let key = SessionKey::generate().map_err(|e| ClusterError::Fatal(e.to_string()))?;
    let acquired = context
        .leases
        .acquire(AcquireRequest {
            session: request.session_id(),
            tenant: request.tenant.clone(),
            user: request.user.clone(),
            device: request.device.clone(),
            node: context.node_id,
            ttl_ms: context.settings.lease_ttl_ms,
            session_key: Some(key.public()),
        })
        .await;
    let (lease, grant) = match acquired {
        Ok(Granted {
            lease,
            grant: Some(grant),
        }) => (lease, grant),
        Ok(Granted { lease, grant: None }) => {
            let _ = context
                .leases
                .release(&lease.tenant, &lease.session, lease.token)
                .await;
            return Err(ClusterError::Fatal(
                "the lease authority granted the lease without a signed grant, so the device would refuse every command; give every broker raft.authority_key".into(),
            ));
        }
        // Another node opened it for a retry of this request meanwhile.
        Err(ClusterError::Rejected(LeaseError::SessionIdInUse { .. })) => {
            return match find_opened(&context.leases, &request).await? {
                Some(lease) => Ok(Opened {
                    lease,
                    replayed: true,
                }),
                None => Err(ClusterError::Rejected(LeaseError::SessionIdInUse {
                    session: request.session_id(),
                })),
            };
        }
        Err(e) => return Err(e),
    };
    let args = SessionArgs {
        node_id: context.node_id,
        lease: lease.clone(),
        liveness: context.liveness.clone(),
        resume: None,
        signer: Signer::new(key, grant),
        bus: context.bus,
        leases: context.leases.clone(),
        settings: context.settings,
        transfers: context.transfers,
    };
    // Named by the session id, so a retry on this node finds the actor running instead of
    // starting a second one.
    let name = super::actor_name(&lease.session);
    match Actor::spawn_linked(Some(name), SessionActor, args, context.supervisor).await {
        Ok(_) => Ok(Opened {
            lease,
            replayed: false,
        }),
        Err(SpawnErr::ActorAlreadyRegistered(_)) => Ok(Opened {
            lease,
            replayed: true,
        }),
        Err(error) => {
            tracing::error!(session = %lease.session, %error, "cannot start a session actor; releasing its lease");
            let _ = context
                .leases
                .release(&lease.tenant, &lease.session, lease.token)
                .await;
            Err(ClusterError::Fatal(format!(
                "cannot start the session: {error}"
            )))
        }
    }
}

/// Ends `user`'s session `session` whose node is gone, by releasing its lease; false when there is
/// no such live session of theirs.
pub async fn end_orphan(
    leases: &LeaseService,
    tenant: &str,
    user: &str,
    session: &str,
) -> Result<bool, ClusterError> {
    match leases.get(tenant, session).await? {
        Some(lease) if lease.user == user => {
            leases.release(tenant, session, lease.token).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}
