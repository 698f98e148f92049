//! `LeaseService`: the handle the rest of the broker holds. It sends every request to the current
//! leader (itself or a peer over gRPC), retries only what surely did not reach a log, and bounds
//! every call by the request timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_proto::raft::raft_client::RaftClient;
use backon::{ExponentialBuilder, Retryable};
use grants::SignedGrant;

use crate::directory::{Directory, DirectoryOp, DirectoryOutcome, EnrolledDevice, EnrolmentToken};
use openraft::BasicNode;
use openraft::RaftMetrics;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::{ClusterError, ClusterReply, ClusterRequest, LeaderOps};
use crate::lease::{
    AcquireRequest, AdoptRequest, Lease, LeaseOp, LeaseOutcome, LeaseQuery, LeaseTable,
    QueryAnswer, TenantLimits,
};
use crate::network::NetworkFactory;
use crate::raft_types::{NodeId, Raft};

/// Pause between attempts while a leader is being elected or found.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Attempts follow leader changes until the request timeout (the attempts' count is not bounded,
/// their time is), at most [`RETRY_PAUSE`] apart: backon's jitter adds up to the delay again, so
/// 25 ms become 25 to 50 ms.
const LEADER_RETRIES: ExponentialBuilder = ExponentialBuilder::new()
    .with_jitter()
    .with_min_delay(Duration::from_millis(25))
    .with_max_delay(Duration::from_millis(25))
    .without_max_times();

/// A lease as granted or renewed, with the authority's signed grant when the request named a
/// session key and the leader holds the authority key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    pub lease: Lease,
    pub grant: Option<SignedGrant>,
}

#[derive(Clone)]
pub struct LeaseService {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    leader: LeaderOps,
    network: NetworkFactory,
    timeout: Duration,
    /// Channels to peers by id, with the address they were opened for.
    peers: Mutex<HashMap<NodeId, (String, RaftClient<Channel>)>>,
}

impl LeaseService {
    pub(crate) fn new(
        id: NodeId,
        raft: Raft,
        leader: LeaderOps,
        network: NetworkFactory,
        timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                id,
                raft,
                leader,
                network,
                timeout,
                peers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Grants a lease, or refuses it naming the invariant and the holder. Retrying with the same
    /// session id after an unknown outcome is safe: an identical acquire returns the same lease.
    /// Takes a lease; with a session key in the request, the answer carries the authority's grant.
    pub async fn acquire(&self, request: AcquireRequest) -> Result<Granted, ClusterError> {
        match self.write(LeaseOp::Acquire(request)).await? {
            (LeaseOutcome::Granted(lease), grant) => Ok(Granted { lease, grant }),
            (other, _) => Err(unexpected(other)),
        }
    }

    pub async fn renew(
        &self,
        tenant: &str,
        session: &str,
        token: u64,
    ) -> Result<Granted, ClusterError> {
        let op = LeaseOp::Renew {
            tenant: tenant.into(),
            session: session.into(),
            token,
        };
        match self.write(op).await? {
            (LeaseOutcome::Renewed(lease), grant) => Ok(Granted { lease, grant }),
            (other, _) => Err(unexpected(other)),
        }
    }

    pub async fn release(
        &self,
        tenant: &str,
        session: &str,
        token: u64,
    ) -> Result<Lease, ClusterError> {
        let op = LeaseOp::Release {
            tenant: tenant.into(),
            session: session.into(),
            token,
        };
        match self.write(op).await? {
            (LeaseOutcome::Released(lease), _) => Ok(lease),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// Records that node `node` is alive for `ttl` from the leader's stamp; answers the log
    /// index of that record.
    pub async fn node_alive(&self, node: NodeId, ttl: Duration) -> Result<u64, ClusterError> {
        let op = LeaseOp::NodeAlive {
            node,
            ttl_ms: millis(ttl),
        };
        match self.call(ClusterRequest::Write(op)).await? {
            ClusterReply::Written {
                log_index, outcome, ..
            } if matches!(*outcome, LeaseOutcome::NodeAlive { .. }) => Ok(log_index),
            other => Err(ClusterError::Protocol(format!(
                "unexpected answer to a node's liveness: {other:?}"
            ))),
        }
    }

    /// The last log index this node's replica applied.
    pub async fn local_applied(&self) -> u64 {
        let state = self.inner.leader.local_state();
        state.last_applied().await.map_or(0, |id| id.index)
    }

    /// Moves a live lease to the requesting node under a new token; the answer carries the
    /// authority's grant for the adopter's session key. Refused ([`ClusterError::Rejected`]) when
    /// the token is no longer the lease's (another node adopted it first, or it ended) or, for
    /// [`crate::lease::Takeover::HolderGone`], when its node is still alive.
    pub async fn adopt(&self, request: AdoptRequest) -> Result<Granted, ClusterError> {
        match self.write(LeaseOp::Adopt(request)).await? {
            (LeaseOutcome::Adopted(lease), grant) => Ok(Granted { lease, grant }),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// Removes every lease whose TTL has run out by the leader's stamped time.
    pub async fn expire_sweep(&self) -> Result<Vec<Lease>, ClusterError> {
        match self.write(LeaseOp::ExpireSweep).await? {
            (LeaseOutcome::Expired(leases), _) => Ok(leases),
            (other, _) => Err(unexpected(other)),
        }
    }

    pub async fn set_tenant_limits(
        &self,
        tenant: &str,
        limits: TenantLimits,
    ) -> Result<TenantLimits, ClusterError> {
        let op = LeaseOp::SetTenantLimits {
            tenant: tenant.into(),
            limits,
        };
        match self.write(op).await? {
            (LeaseOutcome::LimitsSet { limits, .. }, _) => Ok(limits),
            (other, _) => Err(unexpected(other)),
        }
    }

    pub async fn get(&self, tenant: &str, session: &str) -> Result<Option<Lease>, ClusterError> {
        let query = LeaseQuery::Session {
            tenant: tenant.into(),
            session: session.into(),
        };
        Ok(self.leases(query).await?.pop())
    }

    pub async fn by_device(
        &self,
        tenant: &str,
        device: &str,
    ) -> Result<Option<Lease>, ClusterError> {
        let query = LeaseQuery::Device {
            tenant: tenant.into(),
            device: device.into(),
        };
        Ok(self.leases(query).await?.pop())
    }

    /// Changes the directory through the leader.
    pub async fn change_directory(
        &self,
        op: DirectoryOp,
    ) -> Result<DirectoryOutcome, ClusterError> {
        match self.write(LeaseOp::Directory(op)).await? {
            (LeaseOutcome::Directory(outcome), _) => Ok(outcome),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// The directory as the leader has it (linearizable): what administration reads.
    pub async fn directory(&self) -> Result<Directory, ClusterError> {
        match self
            .call(ClusterRequest::Read(LeaseQuery::Directory))
            .await?
        {
            ClusterReply::Read(QueryAnswer::Directory(directory)) => Ok(*directory),
            other => Err(ClusterError::Protocol(format!(
                "unexpected answer to a directory read: {other:?}"
            ))),
        }
    }

    /// An enrolment token as the leader has it (linearizable), without copying the directory.
    pub async fn enrolment_token(&self, id: &str) -> Result<Option<EnrolmentToken>, ClusterError> {
        match self
            .call(ClusterRequest::Read(LeaseQuery::EnrolmentToken {
                id: id.into(),
            }))
            .await?
        {
            ClusterReply::Read(QueryAnswer::EnrolmentToken(token)) => Ok(token),
            other => Err(ClusterError::Protocol(format!(
                "unexpected answer to an enrolment token read: {other:?}"
            ))),
        }
    }

    /// A device's enrolment as the leader has it (linearizable).
    pub async fn enrolled_device(
        &self,
        tenant: &str,
        device: &str,
    ) -> Result<Option<EnrolledDevice>, ClusterError> {
        let query = LeaseQuery::EnrolledDevice {
            tenant: tenant.into(),
            device: device.into(),
        };
        match self.call(ClusterRequest::Read(query)).await? {
            ClusterReply::Read(QueryAnswer::EnrolledDevice(device)) => Ok(device),
            other => Err(ClusterError::Protocol(format!(
                "unexpected answer to an enrolled device read: {other:?}"
            ))),
        }
    }

    /// Runs `f` on this node's replica of the directory: no quorum, possibly a little behind
    /// the leader. What authenticates every API request; keep `f` short.
    pub async fn with_local_directory<R>(&self, f: impl FnOnce(&Directory) -> R) -> R {
        self.inner
            .leader
            .local_state()
            .with_table(|t| f(t.directory()))
            .await
    }

    /// Runs `f` on this node's replica of the lease table: no quorum, possibly a little behind
    /// the leader, never ahead. Keep `f` short.
    pub async fn with_local_table<R>(&self, f: impl FnOnce(&LeaseTable) -> R) -> R {
        self.inner.leader.local_state().with_table(f).await
    }

    /// Session `session`'s lease as this node's replica has it (possibly a little behind).
    pub async fn local_get(&self, tenant: &str, session: &str) -> Option<Lease> {
        let query = LeaseQuery::Session {
            tenant: tenant.into(),
            session: session.into(),
        };
        match self.inner.leader.local_state().query(&query).await {
            QueryAnswer::Leases(mut leases) => leases.pop(),
            _ => None,
        }
    }

    /// `device`'s lease as this node's replica has it, and the last log index the replica
    /// applied (no fencing token above it was ever granted). A replica may be behind the
    /// leader, never ahead: a caller that finds no match confirms with [`Self::by_device`].
    pub async fn local_by_device(&self, tenant: &str, device: &str) -> (Option<Lease>, u64) {
        let state = self.inner.leader.local_state();
        let query = LeaseQuery::Device {
            tenant: tenant.into(),
            device: device.into(),
        };
        let lease = match state.query(&query).await {
            QueryAnswer::Leases(mut leases) => leases.pop(),
            _ => None,
        };
        let applied = state.last_applied().await.map_or(0, |id| id.index);
        (lease, applied)
    }

    pub async fn by_user(&self, tenant: &str, user: &str) -> Result<Vec<Lease>, ClusterError> {
        self.leases(LeaseQuery::User {
            tenant: tenant.into(),
            user: user.into(),
        })
        .await
    }

    pub async fn list(&self, tenant: &str) -> Result<Vec<Lease>, ClusterError> {
        self.leases(LeaseQuery::Tenant {
            tenant: tenant.into(),
        })
        .await
    }

    /// Every live lease of every tenant; for operators and invariant checks.
    pub async fn list_all(&self) -> Result<Vec<Lease>, ClusterError> {
        self.leases(LeaseQuery::All).await
    }

    pub async fn limits(&self, tenant: &str) -> Result<TenantLimits, ClusterError> {
        match self
            .call(ClusterRequest::Read(LeaseQuery::Limits {
                tenant: tenant.into(),
            }))
            .await?
        {
            ClusterReply::Read(QueryAnswer::Limits(limits)) => Ok(limits),
            other => Err(ClusterError::Protocol(format!(
                "unexpected answer to a limits read: {other:?}"
            ))),
        }
    }

    /// Adds a node as a learner and waits until it has caught up with the log.
    pub async fn add_learner(&self, id: NodeId, addr: &str) -> Result<(), ClusterError> {
        self.call(ClusterRequest::AddLearner {
            id,
            addr: addr.into(),
        })
        .await
        .map(drop)
    }

    pub async fn promote(&self, id: NodeId) -> Result<(), ClusterError> {
        self.call(ClusterRequest::Promote { id }).await.map(drop)
    }

    pub async fn remove(&self, id: NodeId) -> Result<(), ClusterError> {
        self.call(ClusterRequest::Remove { id }).await.map(drop)
    }

    /// The leader as this node last heard of it.
    pub fn leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// Raft state of this node: term, leader, log and applied indexes, membership.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        self.inner.raft.metrics()
    }

    /// Waits until this node knows a leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ClusterError> {
        let mut metrics = self.metrics();
        let found = tokio::time::timeout(timeout, async {
            loop {
                if let Some(leader) = metrics.borrow_and_update().current_leader {
                    return Ok(leader);
                }
                metrics
                    .changed()
                    .await
                    .map_err(|_| ClusterError::Fatal("raft node stopped".into()))?;
            }
        })
        .await;
        found.unwrap_or(Err(ClusterError::NoLeader {
            waited_ms: millis(timeout),
        }))
    }

    async fn write(
        &self,
        op: LeaseOp,
    ) -> Result<(LeaseOutcome, Option<SignedGrant>), ClusterError> {
        match self.call(ClusterRequest::Write(op)).await? {
            ClusterReply::Written { outcome, grant, .. } => match *outcome {
                LeaseOutcome::Refused(refusal) => Err(ClusterError::Refused(refusal)),
                LeaseOutcome::Rejected(error) => Err(ClusterError::Rejected(error)),
                LeaseOutcome::DirectoryRefused(error) => Err(ClusterError::Directory(error)),
                outcome => Ok((outcome, grant)),
            },
            other => Err(ClusterError::Protocol(format!(
                "unexpected answer to a write: {other:?}"
            ))),
        }
    }

    async fn leases(&self, query: LeaseQuery) -> Result<Vec<Lease>, ClusterError> {
        match self.call(ClusterRequest::Read(query)).await? {
            ClusterReply::Read(QueryAnswer::Leases(leases)) => Ok(leases),
            other => Err(ClusterError::Protocol(format!(
                "unexpected answer to a read: {other:?}"
            ))),
        }
    }

    /// Sends a request to the leader, following leader changes until the request timeout.
    async fn call(&self, request: ClusterRequest) -> Result<ClusterReply, ClusterError> {
        let deadline = Instant::now() + self.inner.timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let attempt = || self.call_leader(&request, left());
        let answer = attempt
            .retry(LEADER_RETRIES)
            .when(|error| error.is_retryable() && !left().is_zero())
            // No pause runs past the deadline: the last attempt gets what is left.
            .adjust(|_, pause| pause.map(|pause| pause.min(left())))
            .notify(|error, _| {
                tracing::debug!(node = self.inner.id, leader = ?self.leader(), %error, "retrying on the next leader")
            })
            .await;
        answer.map_err(|error| match error {
            ClusterError::Unreachable { .. } | ClusterError::NotLeader { .. } => {
                ClusterError::NoLeader {
                    waited_ms: millis(self.inner.timeout),
                }
            }
            other => other,
        })
    }

    /// One attempt: to the leader this node knows (after waiting briefly for one to be elected),
    /// within `remaining`.
    async fn call_leader(
        &self,
        request: &ClusterRequest,
        remaining: Duration,
    ) -> Result<ClusterReply, ClusterError> {
        let leader = match self.leader() {
            Some(leader) => leader,
            None => {
                // Wake on the first metrics change (a leader elected) or after a pause.
                let mut metrics = self.metrics();
                let _ =
                    tokio::time::timeout(remaining.min(RETRY_PAUSE * 4), metrics.changed()).await;
                self.leader().ok_or(ClusterError::NotLeader {
                    node: self.inner.id,
                    leader: None,
                })?
            }
        };
        if remaining.is_zero() {
            return Err(ClusterError::NotLeader {
                node: self.inner.id,
                leader: Some(leader),
            });
        }
        if leader == self.inner.id {
            tokio::time::timeout(remaining, self.inner.leader.handle(request.clone()))
                .await
                .unwrap_or(Err(ClusterError::NoQuorum {
                    waited_ms: millis(self.inner.timeout),
                }))
        } else {
            let mut client = self.peer(leader)?;
            crate::network::forward(&mut client, leader, request, remaining).await
        }
    }

    /// A channel to a peer at the address the current membership gives it.
    fn peer(&self, id: NodeId) -> Result<RaftClient<Channel>, ClusterError> {
        let addr = self
            .inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|node| node.addr.clone())
            .ok_or_else(|| ClusterError::Unreachable {
                node: id,
                reason: "not in this node's view of the membership".into(),
            })?;
        let mut peers = self
            .inner
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((known, client)) = peers.get(&id)
            && *known == addr
        {
            return Ok(client.clone());
        }
        let client = self
            .inner
            .network
            .connect(&addr)
            .map_err(|reason| ClusterError::Unreachable { node: id, reason })?;
        peers.insert(id, (addr, client.clone()));
        Ok(client)
    }
}

fn unexpected(outcome: LeaseOutcome) -> ClusterError {
    ClusterError::Protocol(format!("unexpected lease outcome: {outcome:?}"))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
