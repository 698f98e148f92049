//! Following a transfer (getfile, download, putfile) on the brokers until it ends, and bringing a
//! finished getfile home: the progress a job publishes, and the task that drives it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use api_model::{Transfer, TransferKind, TransferState};
use backon::{ExponentialBuilder, Retryable};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::api::{Client, Command, Typed};
use crate::doc::Doc;
use crate::download;
use crate::exit::{Exit, Failure};

/// How long each progress poll may wait for a change.
const POLL_WAIT: Duration = Duration::from_millis(1000);
/// How long to keep retrying while the broker is unreachable or has no quorum.
const RETRY_BUDGET: Duration = Duration::from_secs(30);
/// Polls retried within [`RETRY_BUDGET`], from 250 ms apart doubling up to 4 s (backon's jitter
/// adds up to the delay again, so the halves below become 125 to 250 ms, …, 2 to 4 s).
const POLL_RETRIES: ExponentialBuilder = ExponentialBuilder::new()
    .with_jitter()
    .with_min_delay(Duration::from_millis(125))
    .with_max_delay(Duration::from_secs(2))
    .without_max_times();

/// A transfer as the command that started it describes it (`output` of a completed getfile,
/// download or putfile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub transfer_id: String,
    pub put: bool,
    pub name: String,
    pub size: u64,
}

impl Started {
    /// `None` for a command that does not start a transfer.
    pub fn from_command(verb: &str, command: &Command) -> Option<Result<Started, Failure>> {
        let put = match verb {
            "getfile" | "download" => false,
            "putfile" => true,
            _ => return None,
        };
        let output = command.output();
        let Some(id) = output.get("transfer_id").and_then(Doc::as_str) else {
            return Some(Err(Failure::new(
                Exit::Unavailable,
                format!(
                    "unexpected answer from the broker: {verb} completed without a transfer_id"
                ),
            )));
        };
        let size = match output.get("size") {
            Some(Doc::Number(n)) => n.as_u64().unwrap_or(0),
            _ => 0,
        };
        Some(Ok(Started {
            transfer_id: id.to_owned(),
            put,
            name: output
                .get("name")
                .and_then(Doc::as_str)
                .unwrap_or_default()
                .to_owned(),
            size,
        }))
    }
}

/// Where a transfer stands, as a job publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between the device and the brokers.
    Moving,
    /// The brokers check the file's hash.
    Verifying,
    /// From the brokers to this machine.
    Downloading,
    Done,
    Failed,
    Cancelled,
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Done | Phase::Failed | Phase::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Moving => "running",
            Phase::Verifying => "verifying",
            Phase::Downloading => "downloading",
            Phase::Done => "done",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Progress {
    pub phase: Phase,
    pub put: bool,
    pub done: u64,
    pub size: u64,
    /// getfile: where the file was saved on this machine.
    pub saved: Option<PathBuf>,
    /// putfile: where the file is on the device.
    pub device_path: Option<String>,
    /// The last transfer object from the broker.
    pub view: Option<Doc>,
    pub failure: Option<Failure>,
}

impl Progress {
    pub fn start(started: &Started) -> Progress {
        Progress {
            phase: Phase::Moving,
            put: started.put,
            done: 0,
            size: started.size,
            saved: None,
            device_path: None,
            view: None,
            failure: None,
        }
    }

    /// What the progress bar says the transfer is doing.
    pub fn label(&self) -> &'static str {
        match (self.phase, self.put) {
            (Phase::Moving, false) => "from the device",
            (Phase::Moving, true) => "to the device",
            (Phase::Verifying, _) => "verifying",
            (Phase::Downloading, _) => "downloading",
            _ => "",
        }
    }

    fn failed(mut self, failure: Failure) -> Progress {
        self.phase = Phase::Failed;
        self.failure = Some(failure);
        self
    }

    fn cancelled(mut self, failure: Failure) -> Progress {
        self.phase = Phase::Cancelled;
        self.failure = Some(failure);
        self
    }
}

/// Follows transfer `started` to its end and, for a getfile, downloads it into `downloads`,
/// publishing every step on `tx`. Never returns an error: the last [`Progress`] says it.
pub async fn follow(
    api: Client,
    started: Started,
    downloads: PathBuf,
    tx: Arc<watch::Sender<Progress>>,
) {
    let last = drive(&api, &started, &downloads, &tx).await;
    tx.send_replace(last);
}

async fn drive(
    api: &Client,
    started: &Started,
    downloads: &std::path::Path,
    tx: &watch::Sender<Progress>,
) -> Progress {
    let id = &started.transfer_id;
    let view = match wait_for_end(api, id, tx).await {
        Ok(view) => view,
        Err(failure) => return progress_now(tx).failed(failure),
    };
    let mut progress = progress_now(tx);
    match view.state {
        TransferState::Completed => {}
        TransferState::Cancelled => {
            let failure = Failure::new(
                Exit::CommandFailed,
                format!(
                    "transfer {id} was cancelled{}",
                    view.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
            );
            return progress.cancelled(failure);
        }
        _ => {
            return progress.failed(Failure::new(
                Exit::CommandFailed,
                format!(
                    "transfer {id} failed: {}",
                    view.error.as_deref().unwrap_or("no reason given")
                ),
            ));
        }
    }
    if view.kind == TransferKind::Putfile || started.put {
        progress.phase = Phase::Done;
        progress.device_path = Some(view.path.clone());
        return progress;
    }
    tx.send_modify(|p| {
        p.phase = Phase::Downloading;
        p.done = 0;
        p.size = view.size;
    });
    let saved = download::download(api, &view, downloads, |done| {
        tx.send_if_modified(|p| {
            let changed = p.done != done;
            p.done = done;
            changed
        });
    })
    .await;
    let mut progress = progress_now(tx);
    match saved {
        Ok(path) => {
            progress.phase = Phase::Done;
            progress.done = view.size;
            progress.saved = Some(path);
            progress
        }
        Err(failure) => progress.failed(failure),
    }
}

fn progress_now(tx: &watch::Sender<Progress>) -> Progress {
    tx.borrow().clone()
}

/// Long-polls the transfer until it is completed, failed or cancelled, publishing its progress.
async fn wait_for_end(
    api: &Client,
    id: &str,
    tx: &watch::Sender<Progress>,
) -> Result<Transfer, Failure> {
    loop {
        // A failure starts the budget; every answer (a new poll) starts it again.
        let mut failing_since: Option<Instant> = None;
        let answer = (|| api.transfer(id, POLL_WAIT))
            .retry(POLL_RETRIES)
            .when(|e| {
                let since = *failing_since.get_or_insert_with(Instant::now);
                e.is_transient() && since.elapsed() < RETRY_BUDGET
            })
            .await;
        match answer {
            Ok(Typed { value: view, doc }) => {
                tx.send_modify(|p| {
                    p.done = view.bytes_done;
                    p.size = view.size;
                    if view.state == TransferState::Verifying {
                        p.phase = Phase::Verifying;
                    }
                    p.view = Some(doc);
                });
                if view.state.is_terminal() {
                    return Ok(view);
                }
            }
            Err(e) if e.is_transient() => {
                return Err(Failure::from(e).hint(format!(
                    "the transfer may still be running: lr transfer show {id}"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(json: &str) -> Command {
        Command::from_doc(Doc::parse(json.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn a_started_transfer_is_read_from_the_command_output() {
        let c = command(
            r#"{"command_id":"c1","command_line":"getfile -path /var/log/a.log","state":"completed","output":{"transfer_id":"t-1","path":"/var/log/a.log","name":"a.log","size":42,"sha256":"ab"}}"#,
        );
        let started = Started::from_command("download", &c).unwrap().unwrap();
        assert_eq!(
            started,
            Started {
                transfer_id: "t-1".into(),
                put: false,
                name: "a.log".into(),
                size: 42
            }
        );
        assert!(Started::from_command("putfile", &c).unwrap().unwrap().put);
        assert!(Started::from_command("dir", &c).is_none());
        let bare = command(
            r#"{"command_id":"c1","command_line":"getfile -path /x","state":"completed","output":null}"#,
        );
        assert!(Started::from_command("getfile", &bare).unwrap().is_err());
    }

    #[test]
    fn transfer_states() {
        let transfer = |state: &str| {
            Typed::<Transfer>::from_doc(
                Doc::parse(
                    format!(
                        r#"{{"transfer_id":"t","kind":"getfile","session_id":"s","device":"d","user":"u","path":"/p","name":"p","size":4,"sha256":"","chunk_size":1,"chunks":4,"chunks_done":3,"bytes_done":3,"state":"{state}","error":null,"node":1,"created_at":"2025-06-01T11:00:01Z","finished_at":null}}"#
                    )
                    .as_bytes(),
                )
                .unwrap(),
            )
            .unwrap()
        };
        let view = transfer("verifying");
        assert_eq!(view.state, TransferState::Verifying);
        assert!(!view.state.is_terminal());
        let view = transfer("paused");
        assert_eq!(view.state, TransferState::Unknown);
        assert!(!view.state.is_terminal());
    }
}
