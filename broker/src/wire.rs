//! The one place the broker's wire types meet its domain and API types: command states and error
//! codes of the bus protocol against `api_model`'s, an agent's result status as a command state,
//! fileinfo's facts as the session keeps them, and the one mapping of an error code to an HTTP
//! status and a gRPC code.
//!
//! Free functions, not `From` impls: both sides are other crates' types.

use agent_proto::agent::command_result::Status;
use agent_proto::agent::file_facts::Kind;
use agent_proto::bus;
use api_model::{CommandState, ErrorCode};
use axum::http::StatusCode;

use crate::transfer::start::{FileFacts, FileKind};

/// A command's state from its bus form. No state (a peer that set none) reads as `Unknown`, which
/// the API treats as not finished.
pub fn command_state(state: bus::CommandState) -> CommandState {
    match state {
        bus::CommandState::Unspecified => CommandState::Unknown,
        bus::CommandState::Queued => CommandState::Queued,
        bus::CommandState::Running => CommandState::Running,
        bus::CommandState::Completed => CommandState::Completed,
        bus::CommandState::Failed => CommandState::Failed,
        bus::CommandState::Cancelled => CommandState::Cancelled,
        bus::CommandState::TimedOut => CommandState::TimedOut,
        bus::CommandState::Rejected => CommandState::Rejected,
    }
}

/// A command's state in its bus form.
pub fn to_bus_state(state: CommandState) -> bus::CommandState {
    match state {
        CommandState::Unknown => bus::CommandState::Unspecified,
        CommandState::Queued => bus::CommandState::Queued,
        CommandState::Running => bus::CommandState::Running,
        CommandState::Completed => bus::CommandState::Completed,
        CommandState::Failed => bus::CommandState::Failed,
        CommandState::Cancelled => bus::CommandState::Cancelled,
        CommandState::TimedOut => bus::CommandState::TimedOut,
        CommandState::Rejected => bus::CommandState::Rejected,
    }
}

/// The state an agent's result puts a command in.
pub fn state_of(status: Status) -> CommandState {
    match status {
        Status::Ok => CommandState::Completed,
        Status::Failed | Status::Busy | Status::Unspecified => CommandState::Failed,
        Status::Cancelled => CommandState::Cancelled,
        Status::TimedOut => CommandState::TimedOut,
        Status::StaleToken
        | Status::UnknownCommand
        | Status::Unsupported
        | Status::InvalidArguments
        | Status::Unauthorized => CommandState::Rejected,
    }
}

/// An error code from its bus form; `None` for UNSPECIFIED, which in an [`bus::Ack`] means
/// accepted.
pub fn error_code(code: bus::ErrorCode) -> Option<ErrorCode> {
    Some(match code {
        bus::ErrorCode::Unspecified => return None,
        bus::ErrorCode::InvalidRequest => ErrorCode::InvalidRequest,
        bus::ErrorCode::Unauthorized => ErrorCode::Unauthorized,
        bus::ErrorCode::Forbidden => ErrorCode::Forbidden,
        bus::ErrorCode::NotFound => ErrorCode::NotFound,
        bus::ErrorCode::AlreadyExists => ErrorCode::AlreadyExists,
        bus::ErrorCode::SessionRefused => ErrorCode::SessionRefused,
        bus::ErrorCode::DeviceOffline => ErrorCode::DeviceOffline,
        bus::ErrorCode::NotReady => ErrorCode::NotReady,
        bus::ErrorCode::PayloadTooLarge => ErrorCode::PayloadTooLarge,
        bus::ErrorCode::RangeNotSatisfiable => ErrorCode::RangeNotSatisfiable,
        bus::ErrorCode::Gone => ErrorCode::Gone,
        bus::ErrorCode::Unavailable => ErrorCode::Unavailable,
        bus::ErrorCode::SessionMoving => ErrorCode::SessionMoving,
        bus::ErrorCode::Internal => ErrorCode::Internal,
    })
}

/// An error code in its bus form. `Unknown` is a client's reading of a code it does not know and
/// never leaves a broker; should it, it goes as INTERNAL, never as UNSPECIFIED (which would read
/// as accepted).
pub fn to_bus_code(code: ErrorCode) -> bus::ErrorCode {
    match code {
        ErrorCode::InvalidRequest => bus::ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized => bus::ErrorCode::Unauthorized,
        ErrorCode::Forbidden => bus::ErrorCode::Forbidden,
        ErrorCode::NotFound => bus::ErrorCode::NotFound,
        ErrorCode::AlreadyExists => bus::ErrorCode::AlreadyExists,
        ErrorCode::SessionRefused => bus::ErrorCode::SessionRefused,
        ErrorCode::DeviceOffline => bus::ErrorCode::DeviceOffline,
        ErrorCode::NotReady => bus::ErrorCode::NotReady,
        ErrorCode::PayloadTooLarge => bus::ErrorCode::PayloadTooLarge,
        ErrorCode::RangeNotSatisfiable => bus::ErrorCode::RangeNotSatisfiable,
        ErrorCode::Gone => bus::ErrorCode::Gone,
        ErrorCode::Unavailable => bus::ErrorCode::Unavailable,
        ErrorCode::SessionMoving => bus::ErrorCode::SessionMoving,
        ErrorCode::Internal | ErrorCode::Unknown => bus::ErrorCode::Internal,
    }
}

/// An ack that refuses, with the code and a message for a person.
pub fn refusal(code: ErrorCode, message: impl Into<String>) -> bus::Ack {
    bus::Ack {
        error_code: to_bus_code(code).into(),
        error: message.into(),
    }
}

/// Whether the device's node took the request.
pub fn accepted(ack: &bus::Ack) -> bool {
    error_code(ack.error_code()).is_none()
}

/// A session node's error reply.
pub fn error_reply(code: ErrorCode, message: impl Into<String>) -> bus::Error {
    bus::Error {
        code: to_bus_code(code).into(),
        message: message.into(),
    }
}

/// The facts a completed fileinfo stated, as the session keeps them for getfile.
pub fn file_facts(facts: agent_proto::agent::FileFacts) -> FileFacts {
    let kind = match facts.kind() {
        Kind::File => FileKind::File,
        Kind::Dir => FileKind::Dir,
        Kind::Symlink => FileKind::Symlink,
        Kind::Fifo => FileKind::Fifo,
        Kind::Socket => FileKind::Socket,
        Kind::BlockDevice => FileKind::BlockDevice,
        Kind::CharDevice => FileKind::CharDevice,
        Kind::Unspecified => FileKind::Other,
    };
    FileFacts {
        path: facts.path,
        kind,
        size: facts.size,
        sha256: facts.sha256,
        hashes_note: facts.hashes_note,
    }
}

/// The one mapping of an error code to transports: the HTTP status the API answers with, and the
/// gRPC code a `tonic::Status` carries.
pub fn statuses(code: ErrorCode) -> (StatusCode, tonic::Code) {
    let http =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let grpc = match code {
        ErrorCode::InvalidRequest => tonic::Code::InvalidArgument,
        ErrorCode::Unauthorized => tonic::Code::Unauthenticated,
        ErrorCode::Forbidden => tonic::Code::PermissionDenied,
        ErrorCode::NotFound | ErrorCode::Gone => tonic::Code::NotFound,
        ErrorCode::AlreadyExists => tonic::Code::AlreadyExists,
        // A limit on sessions is a quota; a body over the limit is what gRPC calls exhausted too.
        ErrorCode::SessionRefused | ErrorCode::PayloadTooLarge => tonic::Code::ResourceExhausted,
        ErrorCode::DeviceOffline | ErrorCode::NotReady => tonic::Code::FailedPrecondition,
        ErrorCode::RangeNotSatisfiable => tonic::Code::OutOfRange,
        ErrorCode::Unavailable | ErrorCode::SessionMoving => tonic::Code::Unavailable,
        ErrorCode::Internal => tonic::Code::Internal,
        ErrorCode::Unknown => tonic::Code::Unknown,
    };
    (http, grpc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [CommandState; 8] = [
        CommandState::Queued,
        CommandState::Running,
        CommandState::Completed,
        CommandState::Failed,
        CommandState::Cancelled,
        CommandState::TimedOut,
        CommandState::Rejected,
        CommandState::Unknown,
    ];

    #[test]
    fn every_command_state_round_trips() {
        for state in STATES {
            assert_eq!(command_state(to_bus_state(state)), state, "{state}");
        }
        // And every bus state: the enum's values are 0..=7.
        for n in 0..=7 {
            let bus = bus::CommandState::try_from(n).unwrap();
            assert_eq!(to_bus_state(command_state(bus)), bus, "{bus:?}");
        }
        assert!(
            bus::CommandState::try_from(8).is_err(),
            "a state not mapped here"
        );
    }

    #[test]
    fn terminal_states_stay_terminal_on_the_wire() {
        for state in STATES {
            assert_eq!(
                command_state(to_bus_state(state)).is_terminal(),
                state.is_terminal()
            );
        }
    }

    #[test]
    fn every_error_code_round_trips() {
        for code in ErrorCode::ALL {
            assert_eq!(error_code(to_bus_code(code)), Some(code), "{code}");
            assert!(!accepted(&refusal(code, "no")), "{code}");
        }
        for n in 1..=14 {
            let bus = bus::ErrorCode::try_from(n).unwrap();
            assert_eq!(error_code(bus).map(to_bus_code), Some(bus), "{bus:?}");
        }
        assert!(
            bus::ErrorCode::try_from(15).is_err(),
            "a code not mapped here"
        );
        // Unspecified is an accepted ack, and nothing maps to it.
        assert_eq!(error_code(bus::ErrorCode::Unspecified), None);
        assert!(accepted(&bus::Ack::default()));
        assert_eq!(to_bus_code(ErrorCode::Unknown), bus::ErrorCode::Internal);
    }

    #[test]
    fn agent_statuses_map_to_the_states_the_api_shows() {
        assert_eq!(state_of(Status::Ok), CommandState::Completed);
        assert_eq!(state_of(Status::Busy), CommandState::Failed);
        assert_eq!(state_of(Status::StaleToken), CommandState::Rejected);
        assert_eq!(state_of(Status::TimedOut), CommandState::TimedOut);
        // Every status ends a command.
        for n in 0..=10 {
            let status = Status::try_from(n).unwrap();
            assert!(state_of(status).is_terminal(), "{status:?}");
        }
    }

    #[test]
    fn file_facts_arrive_as_the_session_keeps_them() {
        let facts = file_facts(agent_proto::agent::FileFacts {
            path: "/tmp/p".into(),
            kind: Kind::Fifo.into(),
            size: 0,
            sha256: String::new(),
            hashes_note: "not a regular file".into(),
        });
        assert_eq!(facts.kind, FileKind::Fifo);
        assert_eq!(facts.hashes_note, "not a regular file");
        let unknown = agent_proto::agent::FileFacts {
            kind: 99,
            ..Default::default()
        };
        assert_eq!(file_facts(unknown).kind, FileKind::Other);
    }

    #[test]
    fn each_code_has_one_http_status_and_one_grpc_code() {
        let http: Vec<u16> = ErrorCode::ALL
            .iter()
            .map(|&c| statuses(c).0.as_u16())
            .collect();
        // The statuses the API has always answered with.
        assert_eq!(
            http,
            [
                400, 401, 403, 404, 409, 409, 409, 409, 413, 416, 410, 503, 503, 500
            ]
        );
        let grpc: Vec<tonic::Code> = ErrorCode::ALL.iter().map(|&c| statuses(c).1).collect();
        assert_eq!(
            grpc,
            [
                tonic::Code::InvalidArgument,
                tonic::Code::Unauthenticated,
                tonic::Code::PermissionDenied,
                tonic::Code::NotFound,
                tonic::Code::AlreadyExists,
                tonic::Code::ResourceExhausted,
                tonic::Code::FailedPrecondition,
                tonic::Code::FailedPrecondition,
                tonic::Code::ResourceExhausted,
                tonic::Code::OutOfRange,
                tonic::Code::NotFound,
                tonic::Code::Unavailable,
                tonic::Code::Unavailable,
                tonic::Code::Internal,
            ]
        );
        assert_eq!(
            statuses(ErrorCode::Unknown),
            (StatusCode::INTERNAL_SERVER_ERROR, tonic::Code::Unknown)
        );
    }
}
