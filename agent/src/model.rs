//! Domain types of a command's life on the agent, and of a file transfer's: what the broker asked
//! and what came of it. The protobuf forms are converted in [`crate::convert`] only.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// A command as the broker asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command_id: String,
    pub session_id: String,
    pub token: u64,
    pub command: String,
    pub args: Vec<String>,
    pub cwd: String,
    /// `None` when the broker left it to the command's default.
    pub timeout: Option<Duration>,
}

/// What a signed order asks for, once read; [`crate::authority`] decides whether it is obeyed.
/// (A getfile ticket travels inside a chunk request and becomes a [`WindowRequest`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Command(Invocation),
    Cancel(CancelRequest),
    Put(PutOfferRequest),
}

/// Stops the command or transfer `command_id`, asked by a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    pub command_id: String,
    pub session_id: String,
    pub token: u64,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Failed,
    Cancelled,
    TimedOut,
    StaleToken,
    UnknownCommand,
    Unsupported,
    InvalidArguments,
    /// At a limit of work at once; the same request can be repeated later.
    Busy,
    /// The order's grant or signature did not verify, or its grant does not cover it: nothing
    /// was done.
    Unauthorized,
}

/// The result of one command id: replayed unchanged when the same id comes again.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub output: Option<Value>,
    /// Empty when the command succeeded.
    pub error: String,
    /// The working directory after the command.
    pub cwd: String,
    /// A `fileinfo` that completed: the facts getfile needs, beside the output document.
    pub file_facts: Option<FileFacts>,
}

impl Outcome {
    pub fn error(status: Status, error: impl Into<String>, cwd: impl Into<String>) -> Self {
        Self {
            status,
            output: None,
            error: error.into(),
            cwd: cwd.into(),
            file_facts: None,
        }
    }
}

/// What `fileinfo` found about one file, as the broker needs it to fetch the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    /// The absolute path, as fileinfo's output shows it.
    pub path: String,
    pub kind: FileKind,
    pub size: u64,
    /// Hex SHA-256 of the content; `None` when the file was not hashed.
    pub sha256: Option<String>,
    /// Why there is no hash, or that the file changed while it was read.
    pub hashes_note: Option<String>,
}

/// What kind of file a path names (after following symlinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    BlockDevice,
    CharDevice,
    Unknown,
}

impl FileKind {
    /// The name command outputs use (`"type"` fields).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "dir",
            Self::Symlink => "symlink",
            Self::Fifo => "fifo",
            Self::Socket => "socket",
            Self::BlockDevice => "block_device",
            Self::CharDevice => "char_device",
            Self::Unknown => "unknown",
        }
    }
}

/// An outcome addressed to the command it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub command_id: String,
    pub outcome: Outcome,
}

/// One window of a file transfer as the broker asked for it: chunks
/// `[first_index, first_index + count)` of `path`, cut in `chunk_size` bytes. Everything but the
/// window comes from the transfer's signed ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRequest {
    pub transfer_id: String,
    pub session_id: String,
    pub token: u64,
    pub path: String,
    /// The size and SHA-256 `fileinfo` declared.
    pub size: u64,
    pub sha256: String,
    pub chunk_size: u32,
    pub first_index: u64,
    pub count: u32,
}

/// One chunk of a transfer, with the hex SHA-256 of its data: sent by the agent for getfile,
/// received by it for putfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkData {
    pub transfer_id: String,
    pub index: u64,
    pub data: Vec<u8>,
    pub sha256: String,
}

/// The agent sends nothing more for a transfer until it is asked again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferEnd {
    pub transfer_id: String,
    pub status: Status,
    pub error: String,
    /// putfile: where the file now is on the device (set when `status` is OK).
    pub path: Option<PathBuf>,
}

/// A file the broker offers to push to the device (putfile), as it offered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOfferRequest {
    pub transfer_id: String,
    pub session_id: String,
    pub token: u64,
    /// A plain file name in the working folder.
    pub name: String,
    pub size: u64,
    /// Hex SHA-256 of the whole file.
    pub sha256: String,
    pub chunk_size: u32,
    /// Keep the file across a reboot of the device.
    pub keep: bool,
    /// Replace a file of the same name.
    pub overwrite: bool,
}

/// How many chunks `0..received` of a put the agent holds, written and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutProgress {
    pub transfer_id: String,
    pub received: u64,
}

/// What a transfer sends the broker, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    Chunk(ChunkData),
    Ended(TransferEnd),
    Progress(PutProgress),
}
