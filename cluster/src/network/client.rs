//! The sending side of Raft RPC: one lazily connected gRPC channel per peer.

use std::time::Duration;

use agent_proto::raft::raft_client::RaftClient;
use agent_proto::raft::{RaftPayload, SnapshotChunk};
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use super::SnapshotHeader;
use super::tls::TlsMaterial;
use crate::node::{ClusterError, ClusterReply, ClusterRequest};
use crate::raft_types::{NodeId, TypeConfig};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How this node reaches its peers; builds a client per peer for openraft.
#[derive(Clone, Debug)]
pub struct NetworkFactory {
    /// Mutual TLS against the cluster CA; `None` only in tests on loopback.
    pub tls: Option<TlsMaterial>,
    /// The largest message sent or accepted.
    pub max_message_bytes: usize,
}

impl NetworkFactory {
    /// Opens a lazily connected channel to a peer's Raft endpoint at `addr` (`host:port`), whose
    /// certificate must name that host.
    pub(crate) fn connect(&self, addr: &str) -> Result<RaftClient<Channel>, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("bad peer address {addr}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            endpoint = endpoint
                .tls_config(tls.client_config(host))
                .map_err(|e| format!("bad tls configuration for {addr}: {e}"))?;
        }
        Ok(RaftClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes))
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            client: self.connect(&node.addr),
        }
    }
}

/// The Raft RPC client to one peer.
pub struct PeerClient {
    target: NodeId,
    /// An address that cannot make a channel is reported on every call rather than panicking.
    client: Result<RaftClient<Channel>, String>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    fn client<E: std::error::Error>(
        &self,
    ) -> Result<RaftClient<Channel>, RPCError<NodeId, BasicNode, E>> {
        self.client.clone().map_err(|reason| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(reason)))
        })
    }

    /// Decodes a reply carrying the remote node's `Result<T, RaftError>`.
    fn decode<T, E>(&self, reply: RaftPayload) -> RpcResult<T, E>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let result: Result<T, RaftError<NodeId, E>> = serde_json::from_slice(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn encode<T: Serialize>(value: &T) -> Result<tonic::Request<RaftPayload>, serde_json::Error> {
    Ok(tonic::Request::new(RaftPayload {
        payload: serde_json::to_vec(value)?,
    }))
}

/// A transport failure: `Unavailable` means the peer could not be reached at all.
fn status_error<E: std::error::Error>(status: tonic::Status) -> RPCError<NodeId, BasicNode, E> {
    match status.code() {
        tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&status)),
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

fn with_ttl<T>(mut request: tonic::Request<T>, option: &RPCOption) -> tonic::Request<T> {
    request.set_timeout(option.hard_ttl());
    request
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let request = encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = self
            .client()?
            .append_entries(with_ttl(request, &option))
            .await
            .map_err(status_error)?;
        self.decode(reply.into_inner())
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let request = encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let reply = self
            .client()?
            .vote(with_ttl(request, &option))
            .await
            .map_err(status_error)?;
        self.decode(reply.into_inner())
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let header = SnapshotHeader {
            vote: rpc.vote,
            meta: rpc.meta,
            offset: rpc.offset,
            done: rpc.done,
        };
        let chunk = SnapshotChunk {
            header: serde_json::to_vec(&header)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?,
            data: rpc.data,
        };
        let reply = self
            .client()?
            .install_snapshot(with_ttl(tonic::Request::new(chunk), &option))
            .await
            .map_err(status_error)?;
        self.decode(reply.into_inner())
    }
}

/// Sends a client request to the node at `addr` (the leader) and returns its answer.
pub(crate) async fn forward(
    client: &mut RaftClient<Channel>,
    target: NodeId,
    request: &ClusterRequest,
    timeout: Duration,
) -> Result<ClusterReply, ClusterError> {
    let mut request = encode(request).map_err(|e| ClusterError::Protocol(e.to_string()))?;
    request.set_timeout(timeout);
    // The leader's handling joins the caller's trace (an API request opening a session).
    telemetry::inject(
        &tracing::Span::current(),
        &mut telemetry::Metadata(request.metadata_mut()),
    );
    let reply = client
        .forward(request)
        .await
        .map_err(|status| match status.code() {
            tonic::Code::Unavailable => ClusterError::Unreachable {
                node: target,
                reason: status.message().to_string(),
            },
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => ClusterError::NoQuorum {
                waited_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            },
            _ => ClusterError::Protocol(format!("node {target} answered {status}")),
        })?;
    serde_json::from_slice::<Result<ClusterReply, ClusterError>>(&reply.into_inner().payload)
        .map_err(|e| {
            ClusterError::Protocol(format!("undecodable answer from node {target}: {e}"))
        })?
}
