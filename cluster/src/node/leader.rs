//! What a node does with a client request when it believes it leads: stamp, propose, confirm, answer;
//! and the node's clock it stamps with.

use std::collections::BTreeSet;
#[cfg(feature = "fault-clock")]
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grants::{AuthorityKey, Grant, SignedGrant};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};

use super::{ClusterError, ClusterReply, ClusterRequest};
use crate::lease::{self, LeaseClock, LeaseOp, LeaseOutcome, Millis};
use crate::raft_types::{NodeId, Raft, Request};
use crate::store::StateReader;

/// The leader side of every client request. Any node may hold one; a non-leader answers `NotLeader`.
#[derive(Clone)]
pub struct LeaderOps {
    id: NodeId,
    raft: Raft,
    state: StateReader,
    timeout: Duration,
    authority: Option<Arc<AuthorityKey>>,
    clock: Arc<NodeClock>,
}

/// This node's lease time: its wall and monotonic clocks read into a [`LeaseClock`], so a jump of
/// the wall clock does not move it. One per node, shared by the leader's writes and the sweeper.
pub(crate) struct NodeClock {
    origin: Instant,
    clock: Mutex<LeaseClock>,
    /// A test's clock jump, added to the wall clock.
    #[cfg(feature = "fault-clock")]
    wall_offset_ms: AtomicI64,
}

impl NodeClock {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            clock: Mutex::new(LeaseClock::default()),
            #[cfg(feature = "fault-clock")]
            wall_offset_ms: AtomicI64::new(0),
        }
    }

    /// The stamp of an entry this node proposes as leader; `applied` is its table's clock.
    pub(crate) fn stamp(&self, applied: Millis) -> Millis {
        let mut clock = self.clock.lock().unwrap_or_else(PoisonError::into_inner);
        // Read under the lock, so readings reach the clock in the order they were taken.
        clock.stamp(self.wall(), self.origin.elapsed(), applied)
    }

    /// Lease time now. Every node reads it each sweep tick, leader or not.
    pub(crate) fn now(&self, applied: Millis) -> Millis {
        let mut clock = self.clock.lock().unwrap_or_else(PoisonError::into_inner);
        clock.read(self.wall(), self.origin.elapsed(), applied)
    }

    /// Sets how far this node's wall clock is off, as a jump of the system clock would.
    #[cfg(feature = "fault-clock")]
    pub(crate) fn set_wall_offset(&self, offset_ms: i64) {
        self.wall_offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    fn wall(&self) -> Millis {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        #[cfg(feature = "fault-clock")]
        let wall = wall.saturating_add_signed(self.wall_offset_ms.load(Ordering::Relaxed));
        wall
    }
}

impl LeaderOps {
    pub(crate) fn new(
        id: NodeId,
        raft: Raft,
        state: StateReader,
        timeout: Duration,
        authority: Option<Arc<AuthorityKey>>,
        clock: Arc<NodeClock>,
    ) -> Self {
        Self {
            id,
            raft,
            state,
            timeout,
            authority,
            clock,
        }
    }

    /// This node's replica of the lease table, whether or not it leads.
    pub(crate) fn local_state(&self) -> &StateReader {
        &self.state
    }

    pub async fn handle(&self, request: ClusterRequest) -> Result<ClusterReply, ClusterError> {
        match request {
            ClusterRequest::Write(op) => self.write(op).await,
            ClusterRequest::Read(query) => {
                self.raft
                    .ensure_linearizable()
                    .await
                    .map_err(|e| self.read_error(e))?;
                Ok(ClusterReply::Read(self.state.query(&query).await))
            }
            ClusterRequest::AddLearner { id, addr } => self.add_learner(id, addr).await,
            ClusterRequest::Promote { id } => {
                let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
                self.membership_changed(self.raft.change_membership(change, false).await)
            }
            ClusterRequest::Remove { id } => {
                let voters: BTreeSet<NodeId> = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .collect();
                let change = if voters.contains(&id) {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                };
                // retain = false: a removed voter does not linger as a learner.
                self.membership_changed(self.raft.change_membership(change, false).await)
            }
        }
    }

    /// Adds a learner and waits until it holds the log up to its own addition. One that cannot
    /// be reached (wrong address, down, a certificate from another CA) is removed again, so a
    /// failed add changes nothing.
    async fn add_learner(&self, id: NodeId, addr: String) -> Result<ClusterReply, ClusterError> {
        let added = self
            .raft
            .add_learner(id, BasicNode::new(addr.clone()), false)
            .await;
        let reply = self.membership_changed(added)?;
        let ClusterReply::MembershipChanged { log_index, .. } = reply else {
            return Ok(reply);
        };
        // Half the request timeout, so the undo below still fits in the caller's deadline.
        let patience = self.timeout / 2;
        let caught_up = self
            .raft
            .wait(Some(patience))
            .metrics(
                |m| {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned().flatten());
                    matched.is_some_and(|log_id| log_id.index >= log_index)
                },
                "learner caught up",
            )
            .await;
        if caught_up.is_ok() {
            return Ok(reply);
        }
        let undo = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
        if let Err(error) = self.raft.change_membership(undo, false).await {
            tracing::warn!(node = self.id, learner = id, %error, "could not remove a learner that never caught up");
        }
        Err(ClusterError::Membership(format!(
            "node {id} did not receive the log at {addr} within {} ms, so it was not added; check that it runs, that the address is right and that its certificate is from the cluster CA",
            patience.as_millis()
        )))
    }

    async fn write(&self, op: LeaseOp) -> Result<ClusterReply, ClusterError> {
        // Malformed ops never reach the log.
        lease::validate(&op)?;
        let applied = self.state.clock().await;
        let request = Request {
            stamped_at: self.clock.stamp(applied),
            op,
        };
        let response = self
            .raft
            .client_write(request)
            .await
            .map_err(|e| self.write_error(e))?;
        let outcome = response.data.outcome.ok_or_else(|| {
            ClusterError::Protocol("a lease op was applied without an outcome".into())
        })?;
        let grant = self.sign(&outcome);
        Ok(ClusterReply::Written {
            log_index: response.log_id.index,
            outcome: Box::new(outcome),
            grant,
        })
    }

    /// The grant for a lease this leader just granted, renewed or moved to an adopter, issued at
    /// the time the state machine applied it. Only a lease naming a session key gets one.
    fn sign(&self, outcome: &LeaseOutcome) -> Option<SignedGrant> {
        let (LeaseOutcome::Granted(lease)
        | LeaseOutcome::Renewed(lease)
        | LeaseOutcome::Adopted(lease)) = outcome
        else {
            return None;
        };
        let authority = self.authority.as_ref()?;
        let grant = Grant {
            tenant: lease.tenant.clone(),
            device: lease.device.clone(),
            session: lease.session.clone(),
            user: lease.user.clone(),
            token: lease.token,
            issued_at_ms: lease.renewed_at,
            expires_at_ms: lease.expires_at,
            session_key: lease.session_key?,
        };
        Some(authority.sign(&grant))
    }

    fn membership_changed(
        &self,
        response: Result<
            openraft::raft::ClientWriteResponse<crate::raft_types::TypeConfig>,
            WriteError,
        >,
    ) -> Result<ClusterReply, ClusterError> {
        let response = response.map_err(|e| self.write_error(e))?;
        let voters = response
            .membership
            .map(|m| m.voter_ids().collect())
            .unwrap_or_default();
        Ok(ClusterReply::MembershipChanged {
            log_index: response.log_id.index,
            voters,
        })
    }

    fn write_error(&self, error: WriteError) -> ClusterError {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterError::NotLeader {
                node: self.id,
                leader: f.leader_id,
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                ClusterError::Membership(e.to_string())
            }
            RaftError::Fatal(f) => ClusterError::Fatal(f.to_string()),
        }
    }

    fn read_error(
        &self,
        error: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>,
    ) -> ClusterError {
        match error {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
                ClusterError::NotLeader {
                    node: self.id,
                    leader: f.leader_id,
                }
            }
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)) => ClusterError::NoQuorum {
                waited_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            },
            RaftError::Fatal(f) => ClusterError::Fatal(f.to_string()),
        }
    }
}

type WriteError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;
