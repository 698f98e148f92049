//! The receiving side of Raft RPC: admits only members of this cluster, then hands peers'
//! messages to the local Raft, and forwarded client requests to the leader logic.
//!
//! TLS already proved the caller holds a certificate of the cluster CA; every call also checks
//! that the certificate names a broker of this cluster (`lr-broker://<cluster>/<node>`) that is a
//! voter or learner here. A node that has no membership yet (it is joining) admits any broker of
//! its cluster, which is how the leader reaches a learner it is adding.

use agent_proto::raft::raft_server::Raft as RaftRpc;
use agent_proto::raft::{RaftPayload, SnapshotChunk};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};
use tracing::{Instrument, Span};

use super::SnapshotHeader;
use crate::node::{ClusterRequest, LeaderOps};
use crate::raft_types::{NodeId, Raft, TypeConfig};

/// The tonic service of one node.
pub struct RaftService {
    raft: Raft,
    leader: LeaderOps,
    /// The cluster whose members may call; `None` without TLS (tests on loopback), where nobody
    /// can be told apart.
    cluster: Option<String>,
}

impl RaftService {
    pub(crate) fn new(raft: Raft, leader: LeaderOps, cluster: Option<String>) -> Self {
        Self {
            raft,
            leader,
            cluster,
        }
    }

    /// Refuses, with `PermissionDenied`, a caller that is not a member broker of this cluster.
    fn admit<T>(&self, request: &Request<T>, rpc: &'static str) -> Result<(), Status> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let denied = |reason: String| {
            tracing::warn!(rpc, %reason, "refused a raft call");
            Status::permission_denied(format!(
                "{reason}; only member brokers of cluster {cluster} may call {rpc}"
            ))
        };
        let certs = request
            .peer_certs()
            .ok_or_else(|| denied("the caller presented no client certificate".into()))?;
        let leaf = certs
            .first()
            .ok_or_else(|| denied("the caller presented no client certificate".into()))?;
        let identity = pki::broker_identity(leaf.as_ref())
            .map_err(|e| denied(format!("the caller is not a broker: {e}")))?;
        if identity.cluster != *cluster {
            return Err(denied(format!("{identity} belongs to another cluster")));
        }
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let mut members = membership.nodes().map(|(id, _)| *id).peekable();
        let joining = members.peek().is_none();
        if joining || members.any(|id| id == identity.node) {
            Ok(())
        } else {
            Err(denied(format!("{identity} is not a member")))
        }
    }
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(payload)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let payload = serde_json::to_vec(value)
        .map_err(|e| Status::internal(format!("unencodable raft reply: {e}")))?;
    Ok(Response::new(RaftPayload { payload }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.admit(&request, "append_entries")?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&request.into_inner().payload)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.admit(&request, "vote")?;
        let rpc: VoteRequest<NodeId> = decode(&request.into_inner().payload)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<SnapshotChunk>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.admit(&request, "install_snapshot")?;
        let chunk = request.into_inner();
        let header: SnapshotHeader = decode(&chunk.header)?;
        let rpc = InstallSnapshotRequest::<TypeConfig> {
            vote: header.vote,
            meta: header.meta,
            offset: header.offset,
            data: chunk.data,
            done: header.done,
        };
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn forward(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.admit(&request, "forward")?;
        let span = forwarded_span(request.metadata());
        let request: ClusterRequest = decode(&request.into_inner().payload)?;
        reply(&self.leader.handle(request).instrument(span).await)
    }
}

/// The span a forwarded request is handled in on the leader: a child of the caller's when the
/// call carries trace context, else none.
fn forwarded_span(metadata: &tonic::metadata::MetadataMap) -> Span {
    if metadata.get("traceparent").is_none() {
        return Span::none();
    }
    let span = tracing::info_span!("lease forward");
    telemetry::follow(&span, &telemetry::ReceivedMetadata(metadata));
    span
}
