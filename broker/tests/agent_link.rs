//! The agent gRPC service against misbehaving clients holding a valid agent certificate: one that
//! goes silent, one whose first message is not a hello, one that sends garbage bytes, one that
//! reports another device's transfer as done, one that stops reading what it is sent.

mod common;

use std::time::Duration;

use agent_proto::agent::agent_message::Body;
use agent_proto::agent::command_result::Status;
use agent_proto::agent::{AgentMessage, BrokerMessage, Heartbeat, Hello, TransferEnded};
use bytes::{BufMut, Bytes};
use common::{Stack, WAIT};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Sends raw bytes as gRPC messages and decodes the broker's answers as protobuf.
#[derive(Default)]
struct RawCodec;

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = BrokerMessage;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<BrokerMessage>;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<AgentMessage, BrokerMessage>::default().decoder()
    }
}

async fn channel(stack: &Stack, device: &str, broker: u64) -> Channel {
    let (cert, key) = stack.agent_cert("demo", device).await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(stack.ca_path()).unwrap(),
        ))
        .identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ))
        .domain_name("localhost");
    Endpoint::from_shared(format!(
        "https://127.0.0.1:{}",
        stack.brokers[&broker].agent_port
    ))
    .unwrap()
    .tls_config(tls)
    .unwrap()
    // HTTP/2's own minimum windows, so that a client that stops reading is felt soon.
    .initial_stream_window_size(65_535)
    .initial_connection_window_size(65_535)
    .connect()
    .await
    .unwrap()
}

/// Opens the agent stream and sends `messages` (raw bytes each), keeping the stream open.
async fn attach(
    channel: Channel,
    messages: Vec<Bytes>,
) -> Result<tonic::Streaming<BrokerMessage>, tonic::Status> {
    let outbound = futures::stream::iter(messages).chain(futures::stream::pending());
    attach_stream(channel, outbound).await
}

async fn attach_stream(
    channel: Channel,
    outbound: impl futures::Stream<Item = Bytes> + Send + 'static,
) -> Result<tonic::Streaming<BrokerMessage>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = "/lr.agent.v1.AgentLink/Attach".parse().unwrap();
    grpc.streaming(tonic::Request::new(outbound), path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

fn encode(body: Body) -> Bytes {
    prost::Message::encode_to_vec(&AgentMessage { body: Some(body) }).into()
}

fn hello(device: &str) -> Bytes {
    let message = AgentMessage {
        body: Some(Body::Hello(Hello {
            protocol_version: agent::PROTOCOL_VERSION,
            device_id: device.into(),
            tenant: "demo".into(),
            hostname: "test".into(),
            os: "linux".into(),
            agent_version: "0".into(),
            capabilities: vec![],
            highest_token: 0,
            tags: vec![],
        })),
    };
    prost::Message::encode_to_vec(&message).into()
}

async fn online(stack: &Stack, device: &str) -> Option<bool> {
    let (_, devices) = stack.get(1, "token-a", "/api/v1/devices").await;
    devices["items"]
        .as_array()?
        .iter()
        .find(|d| d["device"] == device)
        .map(|d| d["online"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_stops_heartbeating_goes_offline() {
    let stack = Stack::start(3, "").await;
    let mut stream = attach(channel(&stack, "silent", 1).await, vec![hello("silent")])
        .await
        .unwrap();
    let welcome = stream.next().await.unwrap().unwrap();
    assert!(matches!(
        welcome.body,
        Some(agent_proto::agent::broker_message::Body::Welcome(_))
    ));
    assert!(
        testkit::wait_until(WAIT, || async {
            online(&stack, "silent").await == Some(true)
        })
        .await
    );
    // No heartbeat ever: after three missed intervals the broker drops the stream.
    assert!(
        testkit::wait_until(WAIT, || async {
            online(&stack, "silent").await == Some(false)
        })
        .await
    );
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(end, None | Some(Err(_))),
        "the stream must end: {end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_does_not_start_with_a_hello_or_is_garbage_is_refused() {
    let stack = Stack::start(3, "").await;
    let heartbeat: Bytes = prost::Message::encode_to_vec(&AgentMessage {
        body: Some(Body::Heartbeat(Default::default())),
    })
    .into();
    let status =
        first_status(attach(channel(&stack, "rude", 1).await, vec![heartbeat]).await).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("first message must be a hello"),
        "{status:?}"
    );

    let garbage = Bytes::from_static(b"\xff\xff\xff\xff\x0f\x01");
    let status =
        first_status(attach(channel(&stack, "garbage", 1).await, vec![garbage]).await).await;
    assert_ne!(status.code(), tonic::Code::Ok, "{status:?}");

    // Nothing was registered, and the broker still serves a well-behaved agent.
    assert_eq!(online(&stack, "rude").await, None);
    assert_eq!(online(&stack, "garbage").await, None);
    let mut stream = attach(channel(&stack, "fine", 1).await, vec![hello("fine")])
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .is_ok()
    );
}

/// The refusal, whether it comes as the call's status or as the stream's first item.
async fn first_status(
    attached: Result<tonic::Streaming<BrokerMessage>, tonic::Status>,
) -> tonic::Status {
    match attached {
        Err(status) => status,
        Ok(mut stream) => match tokio::time::timeout(WAIT, stream.next()).await.unwrap() {
            Some(Err(status)) => status,
            other => panic!("expected a refusal, got {other:?}"),
        },
    }
}

/// A putfile to one device cannot be ended by another device's agent of the same tenant: the
/// transfer's owner takes events only from the device the transfer names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_devices_agent_cannot_end_a_transfer() {
    let stack = Stack::start(3, "").await;
    // The putfile's device: online and heartbeating, but it never answers the offer.
    let beats =
        futures::stream::iter([hello("vault")]).chain(futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((encode(Body::Heartbeat(Heartbeat { sent_at_ms: 0 })), ()))
        }));
    let _vault = attach_stream(channel(&stack, "vault", 1).await, beats)
        .await
        .unwrap();
    assert!(
        testkit::wait_until(WAIT, || async {
            online(&stack, "vault").await == Some(true)
        })
        .await
    );
    let response = stack
        .http
        .put(format!("{}/api/v1/library/tool.sh", stack.url(1)))
        .bearer_auth("token-a")
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
    let (_, session) = stack.open(1, "token-a", "vault").await;
    let sid = session["session_id"].as_str().unwrap().to_string();
    let started = stack.run(1, "token-a", &sid, "putfile tool.sh").await;
    let id = started["output"]["transfer_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Another agent of the tenant reports the transfer as done, on another node.
    let ended = encode(Body::TransferEnded(TransferEnded {
        transfer_id: id.clone(),
        status: Status::Ok as i32,
        error: String::new(),
        path: "/tmp/tool.sh".into(),
    }));
    let _rogue = attach(
        channel(&stack, "rogue", 2).await,
        vec![hello("rogue"), ended],
    )
    .await
    .unwrap();
    let path = format!("/api/v1/transfers/{id}");
    let heard = testkit::wait_until(WAIT, || async {
        (1..=3).any(|id| {
            stack
                .log(id)
                .contains("ignored a transfer event from another device")
        }) || stack.get(1, "token-a", &path).await.1["state"] != "running"
    })
    .await;
    assert!(heard, "the forged end never reached the transfer's owner");
    let (_, view) = stack.get(1, "token-a", &path).await;
    assert_eq!(view["state"], "running", "{view}");
}

/// An agent that stops reading its stream fills what its node holds for it; its node refuses
/// more for that device, saying so, and every other device on the node keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_stops_reading_does_not_stop_the_other_devices_on_its_node() {
    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "web-07", "web-07", &[1]).await;
    // Heartbeats keep it online; what the broker sends it is never read after the first bytes.
    let beats =
        futures::stream::iter([hello("laggard")]).chain(futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((encode(Body::Heartbeat(Heartbeat { sent_at_ms: 0 })), ()))
        }));
    let _laggard = attach_stream(channel(&stack, "laggard", 1).await, beats)
        .await
        .unwrap();
    stack.wait_online("token-a", "laggard", Some(1)).await;
    stack.wait_online("token-a", "web-07", Some(1)).await;

    // A command it never answers, then cancels of it: each is one more message to the device,
    // until its stream's window and its queue on the node are full.
    let (_, session) = stack.open(1, "token-a", "laggard").await;
    let sid = session["session_id"].as_str().unwrap().to_string();
    let (status, submitted) = stack
        .post(
            1,
            "token-a",
            &format!("/api/v1/sessions/{sid}/commands"),
            Some(json!({ "command_line": "processes" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    let cid = submitted["command_id"].as_str().unwrap();
    let cancel = format!("/api/v1/sessions/{sid}/commands/{cid}/cancel");
    let refused = "is not reading what it is sent";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut cancels = 0;
    while !(1..=3).any(|id| stack.log(id).contains(refused)) {
        assert!(
            cancels < 5_000 && tokio::time::Instant::now() < deadline,
            "the node never refused a message to the device that stopped reading ({cancels} cancels)"
        );
        for _ in 0..50 {
            stack.post(1, "token-a", &cancel, None).await;
            cancels += 1;
        }
    }

    // Its node still hears it, and another device on the same node runs commands at once.
    assert_eq!(online(&stack, "laggard").await, Some(true));
    let (status, other) = stack.open(1, "token-b", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let other = other["session_id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let done = stack.run(1, "token-b", &other, "cd /tmp").await;
        assert_eq!(done["state"], "completed", "{done}");
    }
    // And the laggard's session still ends when its analyst ends it.
    let (status, _) = stack
        .delete(1, "token-a", &format!("/api/v1/sessions/{sid}"))
        .await;
    assert!(status.is_success(), "{status}");
}
