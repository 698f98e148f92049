//! The one place protobuf types meet domain types: requests, put offers and chunks in; results
//! (with fileinfo's file facts), chunks, put progress and hello out.

use std::time::Duration;

use agent_proto::agent::{
    AgentMessage, Chunk, ChunkRequest, CommandRequest, CommandResult, Heartbeat, Hello, PutChunk,
    PutOffer, PutProgress, TransferEnded, agent_message, command_result, file_facts,
};

use crate::model::{
    ChunkData, Completion, FileFacts, FileKind, Invocation, PutOfferRequest, Status, TransferEvent,
    WindowRequest,
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
}

/// The protocol version this agent speaks.
pub const PROTOCOL_VERSION: u32 = 1;

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
            highest_token,
        })),
    }
}

pub fn heartbeat(sent_at_ms: u64) -> AgentMessage {
    AgentMessage {
        body: Some(agent_message::Body::Heartbeat(Heartbeat { sent_at_ms })),
    }
}

pub fn invocation(req: CommandRequest) -> Invocation {
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

pub fn result(c: Completion) -> AgentMessage {
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

pub fn window_request(req: ChunkRequest) -> WindowRequest {
    WindowRequest {
        transfer_id: req.transfer_id,
        session_id: req.session_id,
        token: req.token,
        path: req.path,
        size: req.size,
        sha256: req.sha256,
        chunk_size: req.chunk_size,
        first_index: req.first_index,
        count: req.count,
    }
}

pub fn put_offer(req: PutOffer) -> PutOfferRequest {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;

    #[test]
    fn results_carry_json_and_status() {
        let msg = result(Completion {
            command_id: "c1".into(),
            outcome: Outcome {
                status: Status::TimedOut,
                output: Some(serde_json::json!({"a": 1})),
                error: "slow".into(),
                cwd: "/tmp".into(),
                file_facts: None,
            },
        });
        let Some(agent_message::Body::Result(r)) = msg.body else {
            panic!("not a result")
        };
        assert_eq!(r.status, command_result::Status::TimedOut as i32);
        assert_eq!(r.output_json, r#"{"a":1}"#);
        assert_eq!(r.cwd, "/tmp");
        assert_eq!(r.file_facts, None);
    }

    #[test]
    fn file_facts_travel_typed() {
        let msg = result(Completion {
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
        });
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

    #[test]
    fn zero_timeout_means_default() {
        let inv = invocation(CommandRequest {
            timeout_ms: 0,
            ..CommandRequest::default()
        });
        assert_eq!(inv.timeout, None);
    }
}
