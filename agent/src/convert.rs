//! The one place protobuf types meet domain types. In: signed orders (commands, cancels, put
//! offers) and chunk requests, each read into the [`SignedOrder`] that [`crate::authority`] checks
//! and the action it asks for, and put chunks. Out: results (with fileinfo's file facts), chunks,
//! put progress, transfer ends, heartbeats and the hello. Certificates: the enrolment request and
//! its reply, renewal requests and their answers.
//!
//! An order's body is decoded here from exactly the bytes its signature covers, so what the
//! authority checks (session, token, stamp) and what the executor runs come from the same bytes.
//! A body that cannot be read is a refusal, never a panic.

use std::collections::HashMap;
use std::time::Duration;

use agent_proto::agent::{
    AgentMessage, Cancel, Chunk, ChunkRequest, CommandRequest, CommandResult, EnrolReply,
    EnrolRequest, GetTicket, Heartbeat, Hello, Order, OrderBody, PutChunk, PutOffer, PutProgress,
    RenewRequest, TransferEnded, agent_message, command_result, file_facts, order_body,
};
use prost::Message;

use crate::authority::{Claim, OrderKind, Refused, SignedOrder};
use crate::connection::Renewed;
use crate::enrol::Enrolled;
use crate::model::{
    Action, CancelRequest, ChunkData, Completion, FileFacts, FileKind, Invocation, PutOfferRequest,
    Status, TransferEvent, WindowRequest,
};

/// What the hello says about this agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub device_id: String,
    pub tenant: String,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    pub capabilities: Vec<String>,
    pub tags: Vec<String>,
}

/// The protocol version this agent speaks.
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest protocol version this agent speaks: 2, signed orders. Version 1's unsigned commands
/// are exactly what the agent must no longer obey.
pub const MIN_PROTOCOL_VERSION: u32 = 2;

/// A signed order, read: what the authority checks, and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<T> {
    pub signed: SignedOrder,
    pub action: T,
}

pub fn hello(info: &AgentInfo, highest_token: u64) -> AgentMessage {
    AgentMessage {
        body: Some(agent_message::Body::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            device_id: info.device_id.clone(),
            tenant: info.tenant.clone(),
            hostname: info.hostname.clone(),
            os: info.os.clone(),
            agent_version: info.agent_version.clone(),
            capabilities: info.capabilities.clone(),
            tags: info.tags.clone(),
            highest_token,
        })),
    }
}

pub fn heartbeat(sent_at_ms: u64) -> AgentMessage {
    AgentMessage {
        body: Some(agent_message::Body::Heartbeat(Heartbeat { sent_at_ms })),
    }
}

/// Asks for a certificate for the key of `csr_der`, the device's new one.
pub fn renew(csr_der: Vec<u8>) -> AgentMessage {
    AgentMessage {
        body: Some(agent_message::Body::Renew(RenewRequest { csr_der })),
    }
}

/// The answer to a renewal request: its error when it carries one, else its certificate.
pub fn renewed(answer: agent_proto::agent::Renewed) -> Renewed {
    if !answer.error.is_empty() {
        Renewed::Refused(answer.error)
    } else if answer.certificate_pem.is_empty() {
        Renewed::Refused("the answer carries neither a certificate nor an error".into())
    } else {
        Renewed::Certificate(answer.certificate_pem)
    }
}

/// An enrolment of `device_id` with `token`, for the key of `csr_der`; `tenant` when the device
/// expects one.
pub fn enrol_request(
    token: &str,
    device_id: &str,
    csr_der: Vec<u8>,
    tenant: Option<&str>,
) -> EnrolRequest {
    EnrolRequest {
        token: token.to_owned(),
        device_id: device_id.to_owned(),
        csr_der,
        tenant: tenant.unwrap_or_default().to_owned(),
    }
}

pub fn enrolled(reply: EnrolReply) -> Enrolled {
    Enrolled {
        tenant: reply.tenant,
        device_id: reply.device_id,
        certificate_pem: reply.certificate_pem,
        issuing_ca_pem: reply.issuing_ca_pem,
        cluster_ca_pem: reply.cluster_ca_pem,
        authority_keys: reply.authority_keys,
    }
}

fn invocation(req: CommandRequest) -> Invocation {
    Invocation {
        command_id: req.command_id,
        session_id: req.session_id,
        token: req.token,
        command: req.command,
        args: req.args,
        cwd: req.cwd,
        timeout: (req.timeout_ms > 0).then(|| Duration::from_millis(u64::from(req.timeout_ms))),
    }
}

/// The trace context an order carries (W3C `traceparent`, `tracestate`), empty when none: not
/// part of what is signed, it only links the agent's span to the broker's.
pub fn trace_context(order: &Order) -> HashMap<String, String> {
    order.trace_context.clone()
}

/// A command's result, carrying `trace_context`: that of the agent's span for its order.
pub fn result(c: Completion, trace_context: HashMap<String, String>) -> AgentMessage {
    let o = c.outcome;
    let output_json = o
        .output
        .map(|v| serde_json::to_string(&v).unwrap_or_default())
        .unwrap_or_default();
    AgentMessage {
        body: Some(agent_message::Body::Result(CommandResult {
            command_id: c.command_id,
            status: status(o.status) as i32,
            output_json,
            error: o.error,
            cwd: o.cwd,
            file_facts: o.file_facts.map(facts),
            trace_context,
        })),
    }
}

fn facts(f: FileFacts) -> agent_proto::agent::FileFacts {
    agent_proto::agent::FileFacts {
        path: f.path,
        kind: kind(f.kind) as i32,
        size: f.size,
        sha256: f.sha256.unwrap_or_default(),
        hashes_note: f.hashes_note.unwrap_or_default(),
    }
}

fn kind(k: FileKind) -> file_facts::Kind {
    use file_facts::Kind as Pb;
    match k {
        FileKind::File => Pb::File,
        FileKind::Dir => Pb::Dir,
        FileKind::Symlink => Pb::Symlink,
        FileKind::Fifo => Pb::Fifo,
        FileKind::Socket => Pb::Socket,
        FileKind::BlockDevice => Pb::BlockDevice,
        FileKind::CharDevice => Pb::CharDevice,
        FileKind::Unknown => Pb::Unspecified,
    }
}

/// Reads an order: its body decoded from the signed bytes. A getfile ticket is refused here: it is
/// valid only inside a chunk request.
pub fn order(order: Order) -> Result<Decoded<Action>, Refused> {
    let (stamped_at_ms, action, signed) = open(order)?;
    let (claim, action) = match action {
        order_body::Action::Command(req) => (
            claim(
                OrderKind::Command,
                &req.session_id,
                req.token,
                stamped_at_ms,
            ),
            Action::Command(invocation(req)),
        ),
        order_body::Action::Cancel(c) => (
            claim(OrderKind::Cancel, &c.session_id, c.token, stamped_at_ms),
            Action::Cancel(cancel(c)),
        ),
        order_body::Action::Put(offer) => (
            claim(
                OrderKind::PutOffer,
                &offer.session_id,
                offer.token,
                stamped_at_ms,
            ),
            Action::Put(put_offer(offer)),
        ),
        order_body::Action::Get(t) => {
            return Err(Refused::Malformed {
                why: format!(
                    "getfile ticket {} came alone; a ticket is valid only inside a chunk request",
                    t.transfer_id
                ),
            });
        }
    };
    Ok(Decoded {
        signed: signed.with(claim),
        action,
    })
}

/// Reads a chunk request: its signed ticket and its unsigned window, as one window request.
pub fn chunk_request(req: ChunkRequest) -> Result<Decoded<WindowRequest>, Refused> {
    let ticket = req.ticket.ok_or_else(|| Refused::Malformed {
        why: "the chunk request carries no ticket".into(),
    })?;
    let (stamped_at_ms, action, signed) = open(ticket)?;
    let order_body::Action::Get(t) = action else {
        return Err(Refused::Malformed {
            why: format!(
                "the chunk request's ticket is a {}, not a getfile ticket",
                kind_of(&action).as_str()
            ),
        });
    };
    let claim = claim(OrderKind::GetTicket, &t.session_id, t.token, stamped_at_ms);
    Ok(Decoded {
        signed: signed.with(claim),
        action: window_request(t, req.first_index, req.count),
    })
}

/// An order's signed parts, waiting for the claim its body makes.
struct Unclaimed {
    body: Vec<u8>,
    signature: Vec<u8>,
    grant: Option<grants::SignedGrant>,
}

impl Unclaimed {
    fn with(self, claim: Claim) -> SignedOrder {
        SignedOrder {
            body: self.body,
            signature: self.signature,
            grant: self.grant,
            claim,
        }
    }
}

/// Decodes an order's body, keeping the exact bytes for the signature check.
fn open(order: Order) -> Result<(u64, order_body::Action, Unclaimed), Refused> {
    let body = OrderBody::decode(order.body.as_slice()).map_err(|e| Refused::Malformed {
        why: format!("its body is not an OrderBody: {e}"),
    })?;
    let action = body.action.ok_or_else(|| Refused::Malformed {
        why: "its body asks for nothing this agent knows".into(),
    })?;
    let grant = order.grant.map(|g| grants::SignedGrant {
        body: g.body,
        signature: g.signature,
        key_id: g.key_id,
    });
    Ok((
        body.stamped_at_ms,
        action,
        Unclaimed {
            body: order.body,
            signature: order.signature,
            grant,
        },
    ))
}

fn claim(kind: OrderKind, session_id: &str, token: u64, stamped_at_ms: u64) -> Claim {
    Claim {
        kind,
        session_id: session_id.to_owned(),
        token,
        stamped_at_ms,
    }
}

fn kind_of(action: &order_body::Action) -> OrderKind {
    match action {
        order_body::Action::Command(_) => OrderKind::Command,
        order_body::Action::Cancel(_) => OrderKind::Cancel,
        order_body::Action::Get(_) => OrderKind::GetTicket,
        order_body::Action::Put(_) => OrderKind::PutOffer,
    }
}

fn cancel(c: Cancel) -> CancelRequest {
    CancelRequest {
        command_id: c.command_id,
        session_id: c.session_id,
        token: c.token,
    }
}

fn window_request(t: GetTicket, first_index: u64, count: u32) -> WindowRequest {
    WindowRequest {
        transfer_id: t.transfer_id,
        session_id: t.session_id,
        token: t.token,
        path: t.path,
        size: t.size,
        sha256: t.sha256,
        chunk_size: t.chunk_size,
        first_index,
        count,
    }
}

fn put_offer(req: PutOffer) -> PutOfferRequest {
    PutOfferRequest {
        transfer_id: req.transfer_id,
        session_id: req.session_id,
        token: req.token,
        name: req.name,
        size: req.size,
        sha256: req.sha256,
        chunk_size: req.chunk_size,
        keep: req.keep,
        overwrite: req.overwrite,
    }
}

pub fn put_chunk(c: PutChunk) -> ChunkData {
    ChunkData {
        transfer_id: c.transfer_id,
        index: c.index,
        data: c.data,
        sha256: c.sha256,
    }
}

pub fn transfer_event(event: TransferEvent) -> AgentMessage {
    let body = match event {
        TransferEvent::Chunk(c) => agent_message::Body::Chunk(Chunk {
            transfer_id: c.transfer_id,
            index: c.index,
            data: c.data,
            sha256: c.sha256,
        }),
        TransferEvent::Ended(e) => agent_message::Body::TransferEnded(TransferEnded {
            transfer_id: e.transfer_id,
            status: status(e.status) as i32,
            error: e.error,
            path: e
                .path
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }),
        TransferEvent::Progress(p) => agent_message::Body::PutProgress(PutProgress {
            transfer_id: p.transfer_id,
            received: p.received,
        }),
    };
    AgentMessage { body: Some(body) }
}

fn status(s: Status) -> command_result::Status {
    use command_result::Status as Pb;
    match s {
        Status::Ok => Pb::Ok,
        Status::Failed => Pb::Failed,
        Status::Cancelled => Pb::Cancelled,
        Status::TimedOut => Pb::TimedOut,
        Status::StaleToken => Pb::StaleToken,
        Status::UnknownCommand => Pb::UnknownCommand,
        Status::Unsupported => Pb::Unsupported,
        Status::InvalidArguments => Pb::InvalidArguments,
        Status::Busy => Pb::Busy,
        Status::Unauthorized => Pb::Unauthorized,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;

    #[test]
    fn results_carry_json_status_and_trace() {
        let completion = Completion {
            command_id: "c1".into(),
            outcome: Outcome {
                status: Status::TimedOut,
                output: Some(serde_json::json!({"a": 1})),
                error: "slow".into(),
                cwd: "/tmp".into(),
                file_facts: None,
            },
        };
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
        let msg = result(completion, trace.clone());
        let Some(agent_message::Body::Result(r)) = msg.body else {
            panic!("not a result")
        };
        assert_eq!(r.status, command_result::Status::TimedOut as i32);
        assert_eq!(r.output_json, r#"{"a":1}"#);
        assert_eq!(r.cwd, "/tmp");
        assert_eq!(r.file_facts, None);
        assert_eq!(r.trace_context, trace);
        let order = Order {
            trace_context: trace.clone(),
            ..order_of(Vec::new())
        };
        assert_eq!(trace_context(&order), trace);
    }

    #[test]
    fn file_facts_travel_typed() {
        let msg = result(
            Completion {
                command_id: "c2".into(),
                outcome: Outcome {
                    status: Status::Ok,
                    output: Some(serde_json::json!({"path": "/tmp/p"})),
                    error: String::new(),
                    cwd: "/".into(),
                    file_facts: Some(FileFacts {
                        path: "/tmp/p".into(),
                        kind: FileKind::Fifo,
                        size: 0,
                        sha256: None,
                        hashes_note: Some("not a regular file".into()),
                    }),
                },
            },
            HashMap::new(),
        );
        let Some(agent_message::Body::Result(r)) = msg.body else {
            panic!("not a result")
        };
        let facts = r.file_facts.unwrap();
        assert_eq!(facts.kind(), file_facts::Kind::Fifo);
        assert_eq!((facts.path.as_str(), facts.size), ("/tmp/p", 0));
        assert_eq!(
            (facts.sha256.as_str(), facts.hashes_note.as_str()),
            ("", "not a regular file")
        );
        assert_eq!(kind(FileKind::File), file_facts::Kind::File);
        assert_eq!(kind(FileKind::Unknown), file_facts::Kind::Unspecified);
    }

    #[test]
    fn transfer_events_keep_their_fields() {
        use crate::model::{ChunkData, TransferEnd};
        let msg = transfer_event(TransferEvent::Chunk(ChunkData {
            transfer_id: "t1".into(),
            index: 3,
            data: vec![1, 2],
            sha256: "ab".into(),
        }));
        let Some(agent_message::Body::Chunk(c)) = msg.body else {
            panic!("not a chunk")
        };
        assert_eq!((c.transfer_id.as_str(), c.index), ("t1", 3));
        assert_eq!((c.data, c.sha256), (vec![1, 2], "ab".to_owned()));
        let msg = transfer_event(TransferEvent::Ended(TransferEnd {
            transfer_id: "t1".into(),
            status: Status::StaleToken,
            error: "old".into(),
            path: None,
        }));
        let Some(agent_message::Body::TransferEnded(e)) = msg.body else {
            panic!("not an end")
        };
        assert_eq!(e.status, command_result::Status::StaleToken as i32);
        assert_eq!(e.error, "old");
        assert_eq!(e.path, "");
    }

    #[test]
    fn put_events_carry_progress_and_the_final_path() {
        use crate::model::{PutProgress as Progress, TransferEnd};
        let msg = transfer_event(TransferEvent::Progress(Progress {
            transfer_id: "p1".into(),
            received: 7,
        }));
        let Some(agent_message::Body::PutProgress(p)) = msg.body else {
            panic!("not progress")
        };
        assert_eq!((p.transfer_id.as_str(), p.received), ("p1", 7));
        let msg = transfer_event(TransferEvent::Ended(TransferEnd {
            transfer_id: "p1".into(),
            status: Status::Ok,
            error: String::new(),
            path: Some("/var/lib/lr-agent/work/tool.sh".into()),
        }));
        let Some(agent_message::Body::TransferEnded(e)) = msg.body else {
            panic!("not an end")
        };
        assert_eq!(e.path, "/var/lib/lr-agent/work/tool.sh");
    }

    fn encoded(stamped_at_ms: u64, action: order_body::Action) -> Vec<u8> {
        OrderBody {
            stamped_at_ms,
            action: Some(action),
        }
        .encode_to_vec()
    }

    fn order_of(body: Vec<u8>) -> Order {
        Order {
            body,
            signature: vec![7; 64],
            grant: Some(agent_proto::agent::SignedGrant {
                body: b"{}".to_vec(),
                signature: vec![9; 64],
                key_id: "00aa".into(),
            }),
            trace_context: Default::default(),
        }
    }

    fn get_ticket() -> GetTicket {
        GetTicket {
            transfer_id: "t1".into(),
            session_id: "s1".into(),
            token: 4,
            path: "/var/log/syslog".into(),
            size: 10,
            sha256: "ab".repeat(32),
            chunk_size: 65536,
        }
    }

    #[test]
    fn an_order_reads_into_its_claim_and_action_keeping_the_signed_bytes() {
        let body = encoded(
            1234,
            order_body::Action::Command(CommandRequest {
                command_id: "s1.c1".into(),
                session_id: "s1".into(),
                token: 4,
                command: "dir".into(),
                args: vec!["/tmp".into()],
                cwd: "/".into(),
                timeout_ms: 500,
            }),
        );
        let d = order(order_of(body.clone())).unwrap();
        assert_eq!(d.signed.body, body);
        assert_eq!(d.signed.signature, vec![7; 64]);
        let grant = d.signed.grant.unwrap();
        assert_eq!(
            (grant.key_id.as_str(), grant.body),
            ("00aa", b"{}".to_vec())
        );
        assert_eq!(
            d.signed.claim,
            Claim {
                kind: OrderKind::Command,
                session_id: "s1".into(),
                token: 4,
                stamped_at_ms: 1234
            }
        );
        let Action::Command(inv) = d.action else {
            panic!("not a command")
        };
        assert_eq!(
            (inv.command_id.as_str(), inv.command.as_str()),
            ("s1.c1", "dir")
        );
        assert_eq!(inv.timeout, Some(Duration::from_millis(500)));

        let d = order(order_of(encoded(
            9,
            order_body::Action::Cancel(Cancel {
                command_id: "s1.c1".into(),
                session_id: "s1".into(),
                token: 4,
            }),
        )))
        .unwrap();
        assert_eq!(d.signed.claim.kind, OrderKind::Cancel);
        assert_eq!(
            d.action,
            Action::Cancel(CancelRequest {
                command_id: "s1.c1".into(),
                session_id: "s1".into(),
                token: 4
            })
        );

        let d = order(order_of(encoded(
            9,
            order_body::Action::Put(PutOffer {
                transfer_id: "p1".into(),
                session_id: "s1".into(),
                token: 4,
                name: "tool.sh".into(),
                ..PutOffer::default()
            }),
        )))
        .unwrap();
        assert_eq!(d.signed.claim.kind, OrderKind::PutOffer);
        assert!(matches!(d.action, Action::Put(p) if p.name == "tool.sh"));
    }

    #[test]
    fn a_chunk_request_joins_its_signed_ticket_and_its_window() {
        let body = encoded(77, order_body::Action::Get(get_ticket()));
        let d = chunk_request(ChunkRequest {
            ticket: Some(order_of(body.clone())),
            first_index: 3,
            count: 2,
        })
        .unwrap();
        assert_eq!(d.signed.body, body);
        assert_eq!(d.signed.claim.kind, OrderKind::GetTicket);
        assert_eq!(d.signed.claim.stamped_at_ms, 77);
        assert_eq!(
            d.action,
            WindowRequest {
                transfer_id: "t1".into(),
                session_id: "s1".into(),
                token: 4,
                path: "/var/log/syslog".into(),
                size: 10,
                sha256: "ab".repeat(32),
                chunk_size: 65536,
                first_index: 3,
                count: 2,
            }
        );
    }

    #[test]
    fn a_ticket_is_only_a_ticket_inside_a_chunk_request() {
        let err = order(order_of(encoded(1, order_body::Action::Get(get_ticket())))).unwrap_err();
        assert!(
            err.to_string().contains("only inside a chunk request"),
            "{err}"
        );
        let command = encoded(1, order_body::Action::Command(CommandRequest::default()));
        let err = chunk_request(ChunkRequest {
            ticket: Some(order_of(command)),
            first_index: 0,
            count: 1,
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("ticket is a command, not a getfile ticket"),
            "{err}"
        );
        let err = chunk_request(ChunkRequest::default()).unwrap_err();
        assert!(err.to_string().contains("no ticket"), "{err}");
    }

    #[test]
    fn an_unreadable_body_is_a_refusal() {
        // Field 1 (a number) sent as a length-delimited field.
        let err = order(order_of(vec![0x0a, 0x05])).unwrap_err();
        assert!(matches!(err, Refused::Malformed { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("the order cannot be read (its body is not an OrderBody"),
            "{err}"
        );
        let err = order(order_of(Vec::new())).unwrap_err();
        assert!(err.to_string().contains("asks for nothing"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_read_or_refuse_without_panicking(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = order(order_of(body.clone()));
            let _ = chunk_request(ChunkRequest { ticket: Some(order_of(body)), first_index: 0, count: 1 });
        }
    }

    #[test]
    fn unauthorized_travels_as_its_own_status() {
        assert_eq!(
            status(Status::Unauthorized),
            command_result::Status::Unauthorized
        );
    }

    #[test]
    fn zero_timeout_means_default() {
        let inv = invocation(CommandRequest {
            timeout_ms: 0,
            ..CommandRequest::default()
        });
        assert_eq!(inv.timeout, None);
    }
}
