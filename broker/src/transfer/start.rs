//! The session's broker-run commands: `getfile`/`download`, `putfile` and `library`.
//!
//! `getfile` needs the file's size and SHA-256 first (the seed's `fileinfo` prerequisite): the
//! session remembers what every completed `fileinfo` reported, and `-auto` runs `fileinfo` on the
//! device first. A transfer command completes as soon as its transfer has started; the transfer
//! goes on by itself (see [`super::actor`]), so the session's queue is free for other commands.
//! What fileinfo reported arrives typed with the agent's result (`CommandResult.file_facts`).

use std::path::{Component, Path, PathBuf};

use agent_proto::agent::order_body::Action;
use agent_proto::agent::{Cancel, GetTicket, PutOffer};
use api_model::AuditKind;
use serde_json::{Value, json};

use super::{TransferContext, drive};
use super::{TransferKind, TransferRecord, TransferState};
use crate::orders::{self, Signer};
use crate::time::now_ms;
use crate::time::rfc3339;

/// What `fileinfo` reported about a file (from the agent's typed facts, see [`crate::wire`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFacts {
    pub path: String,
    pub kind: FileKind,
    pub size: u64,
    /// Empty when fileinfo could not hash the file.
    pub sha256: String,
    pub hashes_note: String,
}

/// What kind of file fileinfo found; getfile fetches regular files only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    BlockDevice,
    CharDevice,
    /// A kind the agent did not name.
    Other,
}

impl FileKind {
    /// The name fileinfo's output uses, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "dir",
            Self::Symlink => "symlink",
            Self::Fifo => "fifo",
            Self::Socket => "socket",
            Self::BlockDevice => "block_device",
            Self::CharDevice => "char_device",
            Self::Other => "special file",
        }
    }
}

/// `path` against the working directory, with `.` and `..` folded as the agent folds them.
pub fn resolve(cwd: &str, path: &str) -> String {
    let mut out = PathBuf::from("/");
    for component in Path::new(cwd).join(path).components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            _ => {}
        }
    }
    out.to_string_lossy().into_owned()
}

/// Who asks for a transfer, in which session.
pub struct Requester<'a> {
    pub tenant: &'a str,
    pub user: &'a str,
    pub session: &'a str,
    pub device: &'a str,
    pub token: u64,
    /// Signs the transfer's orders with the session's key.
    pub signer: &'a Signer,
}

/// Checks `facts` against what getfile may fetch, records the transfer and starts driving it.
/// Returns the command's output document, or why not.
pub async fn start_getfile(
    context: &TransferContext,
    who: &Requester<'_>,
    facts: &FileFacts,
) -> Result<String, String> {
    let limit = context.max_getfile_bytes(who.tenant);
    check_getfile(facts, limit, who.tenant)?;
    let room = context.store_room(who.tenant).await.map_err(|e| {
        format!(
            "cannot tell how much tenant {} stores ({e}); run getfile again",
            who.tenant
        )
    })?;
    if facts.size > room {
        return Err(format!(
            "{} is {} bytes, but tenant {}'s store has room for {room} of its quota of {} bytes; delete finished transfers or library files, or ask an administrator to raise max_store_bytes",
            facts.path,
            facts.size,
            who.tenant,
            context.max_store_bytes(who.tenant)
        ));
    }
    let name = safe_name(&facts.path);
    let mut record = new_record(
        context,
        who,
        TransferKind::Getfile,
        facts.size,
        &facts.sha256,
    );
    record.path = facts.path.clone();
    record.name = name;
    start(context, who, record).await
}

/// Whether getfile may fetch the file `facts` describe: a regular file, hashed, within the
/// tenant's `limit`; or why not.
fn check_getfile(facts: &FileFacts, limit: u64, tenant: &str) -> Result<(), String> {
    if facts.kind != FileKind::File {
        return Err(format!(
            "{} is a {}, not a regular file; getfile fetches regular files only",
            facts.path,
            facts.kind.as_str()
        ));
    }
    if facts.sha256.is_empty() {
        return Err(format!(
            "fileinfo could not hash {} ({}); getfile needs its SHA-256",
            facts.path,
            if facts.hashes_note.is_empty() {
                "no reason given"
            } else {
                &facts.hashes_note
            }
        ));
    }
    if facts.size > limit {
        return Err(format!(
            "{} is {} bytes, over the getfile limit of {limit} bytes for tenant {tenant}; ask an administrator to raise max_getfile_bytes",
            facts.path, facts.size
        ));
    }
    Ok(())
}

/// Records a putfile of a library file and starts driving it.
pub async fn start_putfile(
    context: &TransferContext,
    who: &Requester<'_>,
    name: &str,
    keep: bool,
    overwrite: bool,
) -> Result<String, String> {
    let entry = context
        .library
        .get(who.tenant, name)
        .await
        .map_err(|e| e.to_string())?;
    let mut record = new_record(
        context,
        who,
        TransferKind::Putfile,
        entry.size,
        &entry.sha256,
    );
    record.name = entry.name;
    record.source = entry.blob;
    record.chunk_size = entry.chunk_size;
    record.keep = keep;
    record.overwrite = overwrite;
    start(context, who, record).await
}

/// The `library` command's output.
pub async fn library_listing(context: &TransferContext, tenant: &str) -> Result<String, String> {
    let entries = context
        .library
        .list(tenant)
        .await
        .map_err(|e| e.to_string())?;
    let files: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({"name": e.name, "description": e.description, "size": e.size, "sha256": e.sha256,
                   "uploaded_by": e.uploaded_by, "uploaded_at": rfc3339(e.uploaded_at_ms),
                   "parameters_description": e.parameters_description})
        })
        .collect();
    Ok(json!({ "files": files }).to_string())
}

fn new_record(
    context: &TransferContext,
    who: &Requester<'_>,
    kind: TransferKind,
    size: u64,
    sha256: &str,
) -> TransferRecord {
    let now = now_ms();
    TransferRecord {
        id: uuid::Uuid::now_v7().to_string(),
        kind,
        tenant: who.tenant.to_string(),
        user: who.user.to_string(),
        session: who.session.to_string(),
        device: who.device.to_string(),
        token: who.token,
        path: String::new(),
        name: String::new(),
        size,
        sha256: sha256.to_ascii_lowercase(),
        chunk_size: context.chunk_size(),
        source: String::new(),
        keep: false,
        overwrite: false,
        state: TransferState::Running,
        chunks_done: 0,
        error: String::new(),
        owner: context.node_id,
        heartbeat_ms: now,
        created_at_ms: now,
        finished_at_ms: 0,
        ticket: String::new(),
        cancel: String::new(),
    }
}

/// Signs, once, what the transfer will send the device: its ticket (getfile) or offer
/// (putfile), and its cancel. They are kept in the record, so whichever node drives the transfer,
/// during its session or after it, sends the session's own signed orders and holds no key.
fn sign_orders(who: &Requester<'_>, record: &mut TransferRecord) {
    let r = &*record;
    let chunk_size = u32::try_from(r.chunk_size).unwrap_or(u32::MAX);
    let ticket = match r.kind {
        TransferKind::Getfile => Action::Get(GetTicket {
            transfer_id: r.id.clone(),
            session_id: r.session.clone(),
            token: r.token,
            path: r.path.clone(),
            size: r.size,
            sha256: r.sha256.clone(),
            chunk_size,
        }),
        // Not made by this broker: new records are getfiles or putfiles.
        TransferKind::Putfile | TransferKind::Unknown => Action::Put(PutOffer {
            transfer_id: r.id.clone(),
            session_id: r.session.clone(),
            token: r.token,
            name: r.name.clone(),
            size: r.size,
            sha256: r.sha256.clone(),
            chunk_size,
            keep: r.keep,
            overwrite: r.overwrite,
        }),
    };
    let cancel = Action::Cancel(Cancel {
        command_id: r.id.clone(),
        session_id: r.session.clone(),
        token: r.token,
    });
    record.ticket = orders::encode(&who.signer.sign(ticket));
    record.cancel = orders::encode(&who.signer.sign(cancel));
}

async fn start(
    context: &TransferContext,
    who: &Requester<'_>,
    mut record: TransferRecord,
) -> Result<String, String> {
    sign_orders(who, &mut record);
    // No transfer without its entry: what leaves or reaches the device is on record first.
    context
        .audit
        .record(
            &record.tenant,
            transfer_event(AuditKind::TransferStarted, &record),
        )
        .await
        .map_err(|e| e.to_string())?;
    let owned = context
        .book
        .create(&record)
        .await
        .map_err(|e| e.to_string())?;
    drive(context, owned)
        .await
        .map_err(|e| format!("cannot start the transfer: {e}; retry"))?;
    metrics::counter!(crate::metrics::TRANSFERS_STARTED, "kind" => crate::metrics::transfer_kind(record.kind))
        .increment(1);
    Ok(
        json!({"transfer_id": record.id, "path": record.path, "name": record.name,
              "size": record.size, "sha256": record.sha256})
        .to_string(),
    )
}

/// An audit entry of a transfer: its direction, file, size, SHA-256 and bytes moved.
pub(super) fn transfer_event(kind: AuditKind, r: &TransferRecord) -> crate::audit::Event {
    let moved = r.chunks_done.saturating_mul(r.chunk_size).min(r.size);
    crate::audit::Event::new(
        kind,
        json!({"direction": r.kind, "path": r.path, "name": r.name, "size": r.size,
               "sha256": r.sha256, "bytes_moved": moved, "state": r.state.as_str(),
               "error": r.error}),
    )
    .user(&r.user)
    .device(&r.device)
    .session(&r.session)
    .transfer(&r.id)
}

/// A file name for the analyst's copy: the last path component, with anything that could escape
/// a downloads folder or confuse a shell replaced.
pub fn safe_name(device_path: &str) -> String {
    let last = device_path.rsplit('/').next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_control() || c == '\\' || c == ':' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "download".to_string()
    } else {
        cleaned.chars().take(200).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_like_the_agent_resolves_them() {
        assert_eq!(resolve("/var/log", "syslog"), "/var/log/syslog");
        assert_eq!(resolve("/var/log", "../tmp/./x"), "/var/tmp/x");
        assert_eq!(resolve("/var", "/etc/passwd"), "/etc/passwd");
        assert_eq!(resolve("/", "../../etc"), "/etc");
    }

    #[test]
    fn download_names_cannot_escape_a_folder() {
        assert_eq!(safe_name("/tmp/sample.bin"), "sample.bin");
        assert_eq!(safe_name("/tmp/..hidden"), "hidden");
        assert_eq!(safe_name("/tmp/a\\b:c\u{0}d"), "a_b_c_d");
        assert_eq!(safe_name("/"), "download");
        assert_eq!(safe_name("/tmp/.."), "download");
    }

    #[test]
    fn getfile_takes_hashed_regular_files_within_the_limit() {
        let file = FileFacts {
            path: "/tmp/x".into(),
            kind: FileKind::File,
            size: 5,
            sha256: "ab".into(),
            hashes_note: String::new(),
        };
        assert_eq!(check_getfile(&file, 5, "demo"), Ok(()));
        let over = check_getfile(&file, 4, "demo").unwrap_err();
        assert!(
            over.contains("over the getfile limit of 4 bytes for tenant demo"),
            "{over}"
        );
        let fifo = FileFacts {
            kind: FileKind::Fifo,
            sha256: String::new(),
            hashes_note: "not a regular file".into(),
            ..file.clone()
        };
        let refused = check_getfile(&fifo, 5, "demo").unwrap_err();
        assert!(
            refused.starts_with("/tmp/x is a fifo, not a regular file"),
            "{refused}"
        );
        let unhashed = FileFacts {
            sha256: String::new(),
            hashes_note: "over the hashing limit".into(),
            ..file
        };
        let refused = check_getfile(&unhashed, 5, "demo").unwrap_err();
        assert!(refused.contains("(over the hashing limit)"), "{refused}");
    }
}
