//! The gRPC services agents dial. `AgentLink` (mutual TLS) identifies the device from its client
//! certificate, admits it only if the directory holds that certificate as the enrolled device's
//! own, checks the hello against it, records the connection, and hands the stream to a new
//! `DeviceActor`. [`enrolment`]: how a device gets its certificate, and renews it.

pub mod enrolment;

use std::sync::Arc;

use std::pin::Pin;
use std::time::Duration;

use agent_proto::agent::agent_link_server::AgentLink;
use agent_proto::agent::agent_message::Body as FromAgent;
use agent_proto::agent::broker_message::Body as ToAgent;
use agent_proto::agent::{AgentMessage, BrokerMessage, Hello, Welcome};
use futures::{Stream, StreamExt};
use ractor::{Actor, ActorCell};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use self::enrolment::Issuer;
use crate::actors::device::{DeviceActor, DeviceArgs, DeviceMsg};
use crate::bus::Bus;
use crate::registry::{DeviceRecord, DeviceRegistry};
use crate::time::now_ms;
use crate::transfer::{ChunkIntake, ChunkStore};
use cluster::LeaseService;

/// The protocol versions this broker speaks.
const PROTOCOL_VERSION: u32 = 2;
/// Most tags a device may carry (as the agent's configuration allows).
const MAX_TAGS: usize = 32;
/// How long an agent has to send its hello after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Commands and cancels buffered towards one agent.
const OUTBOUND_BUFFER: usize = 64;

pub struct AgentService {
    pub node_id: u64,
    pub heartbeat: Duration,
    pub bus: Bus,
    pub registry: DeviceRegistry,
    pub store: ChunkStore,
    pub supervisor: ActorCell,
    /// Where device actors check an order's lease before they deliver it, and a certificate's
    /// enrolment.
    pub leases: LeaseService,
    pub issuer: Arc<Issuer>,
    pub audit: crate::audit::AuditLog,
}

type Outbound = Pin<Box<dyn Stream<Item = Result<BrokerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentLink for AgentService {
    type AttachStream = Outbound;

    async fn attach(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let peer = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()))
            .ok_or_else(|| {
                Status::unauthenticated(
                    "no client certificate; enrol the agent with `lr-agent enroll` to get one",
                )
            })?;
        let identity =
            pki::agent_identity(&peer).map_err(|e| Status::unauthenticated(e.to_string()))?;
        let certificate = pki::fingerprint(&peer);
        if let Err(status) = enrolment::admitted(
            &self.leases,
            &identity.tenant,
            &identity.device,
            &certificate,
        )
        .await
        {
            tracing::warn!(tenant = %identity.tenant, device = %identity.device, reason = status.message(), "refused an agent's certificate");
            return Err(status);
        }
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.next()).await {
            Ok(Some(Ok(AgentMessage {
                body: Some(FromAgent::Hello(hello)),
            }))) => hello,
            Ok(Some(Err(status))) => return Err(status),
            Err(_) => {
                return Err(Status::deadline_exceeded(
                    "no hello within 10 s of connecting",
                ));
            }
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a hello",
                ));
            }
        };
        if let Err(status) = check_hello(&hello, &identity) {
            tracing::warn!(tenant = %identity.tenant, device = %identity.device, reason = status.message(), "refused an agent");
            return Err(status);
        }

        let epoch = self
            .registry
            .connected(DeviceRecord {
                device: hello.device_id.clone(),
                tenant: hello.tenant.clone(),
                hostname: hello.hostname.clone(),
                os: hello.os.clone(),
                agent_version: hello.agent_version.clone(),
                online: true,
                node: self.node_id,
                epoch: 0,
                last_seen_ms: now_ms(),
                tags: hello.tags.clone(),
            })
            .await
            .map_err(|e| Status::unavailable(format!("{e}; retry")))?;

        let (to_agent, outbound) = mpsc::channel(OUTBOUND_BUFFER);
        let welcome = Welcome {
            protocol_version: PROTOCOL_VERSION.min(hello.protocol_version),
            node_id: self.node_id,
            epoch,
            heartbeat_interval_ms: u32::try_from(self.heartbeat.as_millis()).unwrap_or(u32::MAX),
        };
        let _ = to_agent
            .send(Ok(BrokerMessage {
                body: Some(ToAgent::Welcome(welcome)),
            }))
            .await;
        let intake = ChunkIntake::new(
            hello.tenant.clone(),
            hello.device_id.clone(),
            self.store.clone(),
            self.bus.clone(),
        );
        let args = DeviceArgs {
            intake: intake.clone(),
            node_id: self.node_id,
            tenant: hello.tenant.clone(),
            device: hello.device_id.clone(),
            epoch,
            heartbeat: self.heartbeat,
            to_agent,
            bus: self.bus.clone(),
            registry: self.registry.clone(),
            leases: self.leases.clone(),
            certificate,
            issuer: self.issuer.clone(),
            audit: self.audit.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, DeviceActor, args, self.supervisor.clone())
            .await
            .map_err(|e| {
                Status::unavailable(format!("cannot start the device actor: {e}; retry"))
            })?;

        let heartbeat = self.heartbeat;
        let held = HeldStream::new();
        tokio::spawn(async move {
            let _held = held;
            let reason = loop {
                match inbound.next().await {
                    Some(Ok(AgentMessage {
                        body: Some(FromAgent::Heartbeat(_)),
                    })) => {
                        let _ = actor.cast(DeviceMsg::Heartbeat);
                    }
                    Some(Ok(AgentMessage {
                        body: Some(FromAgent::Result(result)),
                    })) => {
                        let _ = actor.cast(DeviceMsg::Result(result));
                    }
                    Some(Ok(AgentMessage {
                        body: Some(FromAgent::Chunk(chunk)),
                    })) => {
                        let store = intake.chunk(
                            chunk.transfer_id,
                            chunk.index,
                            chunk.data.into(),
                            chunk.sha256,
                        );
                        // The agent's heartbeats wait behind this chunk while the store is
                        // slow; the chunk itself shows it is alive.
                        alive_while(store, heartbeat, || {
                            let _ = actor.cast(DeviceMsg::Heartbeat);
                        })
                        .await;
                    }
                    Some(Ok(AgentMessage {
                        body: Some(FromAgent::TransferEnded(ended)),
                    })) => intake.ended(ended).await,
                    Some(Ok(AgentMessage {
                        body: Some(FromAgent::PutProgress(progress)),
                    })) => intake.put_progress(progress).await,
                    Some(Ok(AgentMessage {
                        body: Some(FromAgent::Renew(renew)),
                    })) => {
                        let _ = actor.cast(DeviceMsg::Renew(renew.csr_der));
                    }
                    Some(Ok(_)) => tracing::warn!("unexpected message from an agent; ignored"),
                    Some(Err(status)) => break format!("stream error: {}", status.message()),
                    None => break "agent closed the stream".to_string(),
                }
            };
            let _ = actor.cast(DeviceMsg::StreamClosed(reason));
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }
}

/// One agent stream in the connected agents gauge, from acceptance until its reader ends.
struct HeldStream;

impl HeldStream {
    fn new() -> Self {
        metrics::gauge!(crate::metrics::AGENTS_CONNECTED).increment(1.0);
        Self
    }
}

impl Drop for HeldStream {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::AGENTS_CONNECTED).decrement(1.0);
    }
}

/// Runs `work`, calling `alive` every `every` until it is done.
async fn alive_while(work: impl Future<Output = ()>, every: Duration, mut alive: impl FnMut()) {
    tokio::pin!(work);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            () = &mut work => return,
            _ = ticks.tick() => alive(),
        }
    }
}

/// The hello must speak a known protocol and claim the identity its certificate proves.
fn check_hello(hello: &Hello, identity: &pki::AgentIdentity) -> Result<(), Status> {
    // Version 2 signs every order; an older agent would run orders it cannot check.
    if hello.protocol_version < PROTOCOL_VERSION {
        return Err(Status::failed_precondition(format!(
            "agent protocol version {} is not supported; this broker speaks {PROTOCOL_VERSION} (signed orders); upgrade the agent",
            hello.protocol_version
        )));
    }
    if hello.tags.len() > MAX_TAGS {
        return Err(Status::invalid_argument(format!(
            "the hello carries {} tags, at most {MAX_TAGS}; fix the agent's config",
            hello.tags.len()
        )));
    }
    if let Some(bad) = hello.tags.iter().find_map(|t| ids::tenant(t).err()) {
        return Err(Status::invalid_argument(format!(
            "a tag in the hello is refused: {bad}; fix the agent's config"
        )));
    }
    if hello.device_id != identity.device || hello.tenant != identity.tenant {
        return Err(Status::permission_denied(format!(
            "the certificate is for device {} of tenant {}, but the hello claims device {} of tenant {}; fix the agent's config",
            identity.device, identity.tenant, hello.device_id, hello.tenant
        )));
    }
    Ok(())
}
