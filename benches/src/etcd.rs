//! The same workload against an etcd v3.4 cluster, through its JSON gRPC-gateway over plain
//! HTTP/1.1 on loopback (keep-alive connections, pooled per endpoint).
//!
//! A session lease maps onto etcd as: acquire = grant an etcd lease with the TTL, then a txn that
//! puts the device key with that lease only if the key does not exist (`create_revision == 0`);
//! release = delete the key, then revoke the lease.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::workload::Target;

/// Same TTL as the cluster's leases; long enough that none expires during a run.
const TTL_SECONDS: u64 = 60;
/// Bounds every HTTP call, so a stuck member cannot stall a client past the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How session leases map onto etcd leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LeaseMode {
    /// An etcd lease per session: grant+txn, delete+revoke; 4 writes per pair.
    PerSession,
    /// One etcd lease per client, granted up front: txn, delete; 2 writes per pair, the same count
    /// as the cluster, but TTLs are no longer per session.
    PerClient,
}

impl LeaseMode {
    pub fn label(self) -> &'static str {
        match self {
            LeaseMode::PerSession => "etcd",
            LeaseMode::PerClient => "etcd-client-lease",
        }
    }

    pub fn writes_per_pair(self) -> u32 {
        match self {
            LeaseMode::PerSession => 4,
            LeaseMode::PerClient => 2,
        }
    }
}

/// A pooled HTTP client to the members' gateways.
#[derive(Clone)]
pub struct Gateway {
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Gateway {
    fn default() -> Self {
        Self::new()
    }
}

impl Gateway {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        // Small request-reply messages: Nagle would add delay to every one of them.
        connector.set_nodelay(true);
        Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// POSTs a JSON body to `endpoint` + `path` and returns the JSON reply, failing on a gateway
    /// error.
    pub async fn call(&self, endpoint: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let request = hyper::Request::post(format!("{endpoint}{path}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
        let exchange = async {
            let response = self.http.request(request).await?;
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow!("{path} on {endpoint} took over {REQUEST_TIMEOUT:?}"))?
            .with_context(|| format!("{path} on {endpoint} failed"))?;
        let reply: Value = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{path} on {endpoint} answered {status} with non-json: {}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        if !status.is_success() || reply.get("error").is_some() {
            bail!("{path} on {endpoint} answered {status}: {reply}");
        }
        Ok(reply)
    }

    /// Grants an etcd lease and returns its id, as the decimal string the gateway uses for int64.
    async fn grant(&self, endpoint: &str) -> anyhow::Result<String> {
        let reply = self
            .call(endpoint, "/v3/lease/grant", &json!({ "TTL": TTL_SECONDS }))
            .await?;
        match &reply["ID"] {
            Value::String(id) => Ok(id.clone()),
            Value::Number(id) => Ok(id.to_string()),
            _ => bail!("lease grant answered without an id: {reply}"),
        }
    }

    /// The index in `endpoints` of the member that is the leader, as every member reports it.
    pub async fn leader(&self, endpoints: &[String]) -> anyhow::Result<usize> {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for endpoint in endpoints {
            let status = self
                .call(endpoint, "/v3/maintenance/status", &json!({}))
                .await?;
            ids.push(status["header"]["member_id"].clone());
            leaders.push(status["leader"].clone());
        }
        if leaders.iter().any(|l| *l != leaders[0]) {
            bail!("etcd members disagree on the leader: {leaders:?}");
        }
        ids.iter()
            .position(|id| *id == leaders[0])
            .ok_or_else(|| anyhow!("the etcd leader {} is not among the endpoints", leaders[0]))
    }
}

pub struct EtcdTarget {
    gateway: Gateway,
    /// Member client URLs, e.g. `http://127.0.0.1:23791`.
    endpoints: Vec<String>,
    /// `None`: round-robin over every member; `Some(i)`: always `endpoints[i]`, the leader.
    leader: Option<usize>,
    mode: LeaseMode,
    tag: String,
}

impl EtcdTarget {
    pub fn new(
        gateway: Gateway,
        endpoints: Vec<String>,
        leader: Option<usize>,
        mode: LeaseMode,
        tag: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            gateway,
            endpoints,
            leader,
            mode,
            tag,
        })
    }
}

pub struct EtcdClient {
    index: usize,
    identity: u64,
    pairs: u64,
    /// The lease every key of this client is put with, in `LeaseMode::PerClient`.
    client_lease: Option<String>,
}

/// What release needs: the member the acquire used, the key and the lease.
pub struct EtcdHeld {
    endpoint: usize,
    key: String,
    lease: String,
}

impl Target for EtcdTarget {
    type Client = EtcdClient;
    type Held = EtcdHeld;

    async fn client(&self, index: usize) -> anyhow::Result<EtcdClient> {
        let client_lease = match self.mode {
            LeaseMode::PerSession => None,
            LeaseMode::PerClient => Some(
                self.gateway
                    .grant(&self.endpoints[self.leader.unwrap_or(0)])
                    .await?,
            ),
        };
        Ok(EtcdClient {
            index,
            identity: 0,
            pairs: 0,
            client_lease,
        })
    }

    async fn acquire(&self, client: &mut EtcdClient) -> anyhow::Result<EtcdHeld> {
        let at = self.leader.unwrap_or_else(|| {
            ((client.index as u64 + client.pairs) % self.endpoints.len() as u64) as usize
        });
        client.pairs += 1;
        let endpoint = &self.endpoints[at];
        let lease = match &client.client_lease {
            Some(lease) => lease.clone(),
            None => self.gateway.grant(endpoint).await?,
        };
        // The device key; its value names the session, as the cluster's lease would.
        let who = format!("{}-c{}-i{}", self.tag, client.index, client.identity);
        let key = BASE64.encode(format!("/leases/bench/device-{who}"));
        let value = BASE64.encode(format!("{who}-p{}", client.pairs));
        let txn = json!({
            "compare": [{
                "key": key,
                "result": "EQUAL",
                "target": "CREATE",
                "create_revision": "0",
            }],
            "success": [{ "request_put": { "key": key, "value": value, "lease": lease } }],
        });
        let reply = self.gateway.call(endpoint, "/v3/kv/txn", &txn).await?;
        // The gateway omits false booleans: a missing `succeeded` means the key was held.
        if reply["succeeded"] != Value::Bool(true) {
            bail!("device key is already held: {reply}");
        }
        Ok(EtcdHeld {
            endpoint: at,
            key,
            lease,
        })
    }

    async fn release(&self, client: &mut EtcdClient, held: EtcdHeld) -> anyhow::Result<()> {
        let endpoint = &self.endpoints[held.endpoint];
        self.gateway
            .call(endpoint, "/v3/kv/deleterange", &json!({ "key": held.key }))
            .await?;
        if client.client_lease.is_none() {
            self.gateway
                .call(endpoint, "/v3/lease/revoke", &json!({ "ID": held.lease }))
                .await?;
        }
        Ok(())
    }

    fn fresh_identity(&self, client: &mut EtcdClient) {
        client.identity += 1;
    }
}
