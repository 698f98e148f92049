//! The receiving side of Raft RPC: hands peers' messages to the local Raft, and forwarded client requests to the leader logic.

use agent_proto::raft::raft_server::Raft as RaftRpc;
use agent_proto::raft::{RaftPayload, SnapshotChunk};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::SnapshotHeader;
use crate::node::{ClusterRequest, LeaderOps};
use crate::raft_types::{NodeId, Raft, TypeConfig};

/// The tonic service of one node.
pub struct RaftService {
    raft: Raft,
    leader: LeaderOps,
}

impl RaftService {
    pub(crate) fn new(raft: Raft, leader: LeaderOps) -> Self {
        Self { raft, leader }
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
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&request.into_inner().payload)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&request.into_inner().payload)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<SnapshotChunk>,
    ) -> Result<Response<RaftPayload>, Status> {
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
        let request: ClusterRequest = decode(&request.into_inner().payload)?;
        reply(&self.leader.handle(request).await)
    }
}
