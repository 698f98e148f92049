//! Transfers as jobs of this console: each one is followed by its own task, whether the analyst
//! watches it (foreground, with a progress bar) or not (background, `&` or Ctrl+Z). `jobs` lists
//! them, `fg <id>` watches one again, and a background job says in one line how it ended.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::api::Client;
use crate::doc::Doc;
use crate::exit::{Exit, Failure};
use crate::progress::{Bar, bytes};
use crate::render::{self, Format};
use crate::signals::{Received, Signals};
use crate::transfer::{self, Phase, Progress, Started};

/// Where the end of a background job is announced: above the line editor's prompt, or on stderr
/// when input is not a terminal.
#[derive(Debug, Clone)]
pub enum Notifier {
    Stderr,
    Printer(SyncSender<String>),
}

impl Notifier {
    pub fn say(&self, line: String) {
        match self {
            Notifier::Stderr => crate::say!("{line}"),
            Notifier::Printer(tx) => {
                if let Err(e) = tx.try_send(line) {
                    let line = match e {
                        std::sync::mpsc::TrySendError::Full(l)
                        | std::sync::mpsc::TrySendError::Disconnected(l) => l,
                    };
                    crate::say!("{line}");
                }
            }
        }
    }
}

/// One transfer followed by this console.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: u32,
    pub line: String,
    pub transfer_id: String,
    progress: Arc<watch::Sender<Progress>>,
    foreground: Arc<AtomicBool>,
    /// Whether its end has been told (by the foreground view or by the notice).
    reported: Arc<AtomicBool>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Job {
    /// Starts following `started` on the current runtime.
    pub fn start(
        id: u32,
        line: String,
        api: &Client,
        started: Started,
        downloads: PathBuf,
        foreground: bool,
        notifier: Notifier,
    ) -> Job {
        let (tx, _) = watch::channel(Progress::start(&started));
        let job = Job {
            id,
            line,
            transfer_id: started.transfer_id.clone(),
            progress: Arc::new(tx),
            foreground: Arc::new(AtomicBool::new(foreground)),
            reported: Arc::new(AtomicBool::new(false)),
            task: Arc::default(),
        };
        let follower = job.clone();
        let api = api.clone();
        let handle = tokio::spawn(async move {
            transfer::follow(api, started, downloads, follower.progress.clone()).await;
            if !follower.foreground.load(Ordering::SeqCst) {
                follower.announce(&notifier);
            }
        });
        *job.task.lock().unwrap() = Some(handle);
        job
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    pub fn is_running(&self) -> bool {
        !self.progress.borrow().phase.is_final()
    }

    /// Tells how a finished job ended, once.
    fn announce(&self, notifier: &Notifier) {
        if !self.reported.swap(true, Ordering::SeqCst) {
            notifier.say(notice(self.id, &self.line, &self.progress()));
        }
    }

    /// Stops following, cancels the transfer on the brokers (which deletes its data) and removes
    /// a partial download.
    pub async fn cancel(&self, api: &Client) -> Progress {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
        let outcome = api.cancel_transfer(&self.transfer_id).await;
        let mut failure = Failure::new(
            Exit::CommandFailed,
            format!("transfer {} cancelled", self.transfer_id),
        );
        if let Err(e) = outcome
            && e.code() != Some(api_model::ErrorCode::NotFound)
        {
            failure = failure.hint(format!("the broker did not confirm the cancel: {e}"));
        }
        self.progress.send_modify(|p| {
            if !p.phase.is_final() {
                p.phase = Phase::Cancelled;
                p.failure = Some(failure);
            }
        });
        self.progress()
    }

    /// Shows the job's progress until it ends, Ctrl+C (cancel) or, when `detachable`, Ctrl+Z
    /// (back to the background). Signals before `mark` do not count.
    pub async fn watch(
        &self,
        api: &Client,
        signals: &Signals,
        mark: Received,
        detachable: bool,
    ) -> Watched {
        self.foreground.store(true, Ordering::SeqCst);
        let mut rx = self.progress.subscribe();
        let mut bar = Bar::new();
        loop {
            let now = rx.borrow_and_update().clone();
            if now.phase.is_final() {
                bar.clear();
                self.reported.store(true, Ordering::SeqCst);
                return Watched::Ended(now);
            }
            bar.update(now.label(), now.done, now.size);
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        bar.clear();
                        return Watched::Ended(self.progress());
                    }
                }
                () = signals.after(mark) => {
                    bar.clear();
                    crate::say!("lr: interrupted: cancelling transfer {}", self.transfer_id);
                    let last = self.cancel(api).await;
                    self.reported.store(true, Ordering::SeqCst);
                    return Watched::Ended(last);
                }
                () = signals.suspended_after(mark), if detachable => {
                    bar.clear();
                    self.foreground.store(false, Ordering::SeqCst);
                    return Watched::Detached;
                }
            }
        }
    }

    /// After a detach: if the job ended meanwhile, say so now (its task saw it in the foreground).
    pub fn detached(&self, notifier: &Notifier) {
        if !self.is_running() {
            self.announce(notifier);
        }
    }
}

#[derive(Debug)]
pub enum Watched {
    Ended(Progress),
    Detached,
}

/// This console's jobs, numbered from 1.
#[derive(Debug, Default)]
pub struct Jobs {
    list: Vec<Job>,
}

impl Jobs {
    pub fn next_id(&self) -> u32 {
        self.list.last().map_or(1, |j| j.id + 1)
    }

    pub fn add(&mut self, job: Job) {
        self.list.push(job);
    }

    pub fn get(&self, id: &str) -> Result<&Job, String> {
        let wanted = id.trim_start_matches('%');
        let found = wanted
            .parse::<u32>()
            .ok()
            .and_then(|n| self.list.iter().find(|j| j.id == n))
            .or_else(|| self.list.iter().find(|j| j.transfer_id == wanted));
        found.ok_or_else(|| {
            if self.list.is_empty() {
                format!("no job {id}: this console has no jobs")
            } else {
                format!(
                    "no job {id}; jobs lists them ({})",
                    self.list
                        .iter()
                        .map(|j| j.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        })
    }

    pub fn running(&self) -> Vec<&Job> {
        self.list.iter().filter(|j| j.is_running()).collect()
    }

    pub fn rows(&self) -> Vec<Row> {
        self.list
            .iter()
            .map(|j| Row::of(j.id, &j.line, &j.transfer_id, &j.progress()))
            .collect()
    }
}

/// One line of `jobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: u32,
    pub line: String,
    pub transfer_id: String,
    pub state: &'static str,
    pub done: u64,
    pub size: u64,
    /// Saved path (getfile), path on the device (putfile), or the error.
    pub result: String,
}

impl Row {
    pub fn of(id: u32, line: &str, transfer_id: &str, p: &Progress) -> Row {
        let result = match (&p.saved, &p.device_path, &p.failure) {
            (Some(saved), _, _) => saved.display().to_string(),
            (_, Some(path), _) => format!("on the device: {path}"),
            (_, _, Some(failure)) => failure.message.clone(),
            _ => String::new(),
        };
        Row {
            id,
            line: line.to_owned(),
            transfer_id: transfer_id.to_owned(),
            state: p.phase.as_str(),
            done: p.done,
            size: p.size,
            result,
        }
    }

    fn percent(&self) -> u64 {
        match (self.done.min(self.size) * 100).checked_div(self.size) {
            Some(percent) => percent,
            None if self.state == "done" => 100,
            None => 0,
        }
    }
}

/// `jobs`: a table of the rows, or every field in JSON.
pub fn jobs_body(rows: &[Row], format: Format, width: Option<u16>) -> String {
    if format == Format::Table && rows.is_empty() {
        return "no jobs in this console; getfile <path> & runs one in the background\n".to_owned();
    }
    let docs = rows
        .iter()
        .map(|r| {
            let mut fields = vec![
                ("job".to_owned(), Doc::from(serde_json::json!(r.id))),
                ("command_line".to_owned(), Doc::String(r.line.clone())),
                ("state".to_owned(), Doc::String(r.state.to_owned())),
            ];
            match format {
                Format::Table => {
                    fields.push((
                        "progress".to_owned(),
                        Doc::String(format!(
                            "{}% {} / {}",
                            r.percent(),
                            bytes(r.done),
                            bytes(r.size)
                        )),
                    ));
                    fields.push(("saved / result".to_owned(), Doc::String(r.result.clone())));
                }
                Format::Json => {
                    fields.push(("transfer_id".to_owned(), Doc::String(r.transfer_id.clone())));
                    fields.push((
                        "percent".to_owned(),
                        Doc::from(serde_json::json!(r.percent())),
                    ));
                    fields.push((
                        "bytes_done".to_owned(),
                        Doc::from(serde_json::json!(r.done)),
                    ));
                    fields.push(("size".to_owned(), Doc::from(serde_json::json!(r.size))));
                    fields.push(("result".to_owned(), Doc::String(r.result.clone())));
                }
            }
            Doc::Object(fields)
        })
        .collect();
    match format {
        Format::Json => render::json(&Doc::Array(docs)),
        Format::Table => render::text(&Doc::Array(docs), width),
    }
}

/// `[1] done getfile -path /x: saved to /home/a/lr-downloads/x`, for a job that ended unwatched.
pub fn notice(id: u32, line: &str, p: &Progress) -> String {
    let how = match (&p.saved, &p.device_path, &p.failure) {
        (Some(saved), _, _) => format!("saved to {}", saved.display()),
        (_, Some(path), _) => format!("copied to {path} on the device"),
        (_, _, Some(failure)) => {
            let mut text = failure.message.clone();
            for hint in &failure.hints {
                text.push_str("; ");
                text.push_str(hint);
            }
            text
        }
        _ => String::new(),
    };
    format!("[{id}] {} {line}: {how}", p.phase.as_str())
}

/// Prints how a watched transfer ended: on stdout where the file is (or, in JSON, the transfer
/// with `saved_to`); on stderr why it failed. Returns the exit code.
pub fn report(p: &Progress, format: Format, out: &mut dyn std::io::Write) -> std::io::Result<Exit> {
    if let Some(failure) = &p.failure {
        failure.print();
        return Ok(failure.exit);
    }
    match format {
        Format::Json => {
            let mut fields = match &p.view {
                Some(Doc::Object(fields)) => fields.clone(),
                _ => Vec::new(),
            };
            if let Some(saved) = &p.saved {
                fields.push((
                    "saved_to".to_owned(),
                    Doc::String(saved.display().to_string()),
                ));
            }
            out.write_all(render::json(&Doc::Object(fields)).as_bytes())?;
        }
        Format::Table => {
            if let Some(saved) = &p.saved {
                writeln!(
                    out,
                    "saved to {} ({}, SHA-256 verified)",
                    saved.display(),
                    bytes(p.size)
                )?;
            } else if let Some(path) = &p.device_path {
                writeln!(out, "copied to {path} on the device ({})", bytes(p.size))?;
            }
        }
    }
    out.flush()?;
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(phase: Phase, done: u64, size: u64) -> Progress {
        let mut p = Progress::start(&Started {
            transfer_id: "t-1".into(),
            put: false,
            name: "a.log".into(),
            size,
        });
        p.phase = phase;
        p.done = done;
        p
    }

    #[test]
    fn rows_show_progress_and_where_it_ended() {
        let mut done = progress(Phase::Done, 2048, 2048);
        done.saved = Some(PathBuf::from("/d/a.log"));
        let mut failed = progress(Phase::Failed, 10, 100);
        failed.failure = Some(Failure::new(
            Exit::CommandFailed,
            "transfer t-2 failed: gone",
        ));
        let rows = vec![
            Row::of(1, "getfile -path /var/log/a.log", "t-1", &done),
            Row::of(2, "download -path /b", "t-2", &failed),
            Row::of(
                3,
                "getfile -path /c",
                "t-3",
                &progress(Phase::Moving, 512, 2048),
            ),
        ];
        let table = jobs_body(&rows, Format::Table, Some(200));
        for said in [
            "getfile -path /var/log/a.log",
            "100% 2.0 KiB / 2.0 KiB",
            "/d/a.log",
            "transfer t-2 failed: gone",
            "25% 512 B / 2.0 KiB",
            "running",
        ] {
            assert!(table.contains(said), "{said}: {table}");
        }
        let json: serde_json::Value =
            serde_json::from_str(&jobs_body(&rows, Format::Json, None)).unwrap();
        assert_eq!(json[0]["job"], 1);
        assert_eq!(json[0]["state"], "done");
        assert_eq!(json[0]["result"], "/d/a.log");
        assert_eq!(json[2]["percent"], 25);
        assert_eq!(json[2]["transfer_id"], "t-3");
        assert!(jobs_body(&[], Format::Table, None).starts_with("no jobs"));
        assert_eq!(jobs_body(&[], Format::Json, None).trim(), "[]");
    }

    #[test]
    fn notices_say_how_a_job_ended() {
        let mut done = progress(Phase::Done, 1, 1);
        done.saved = Some(PathBuf::from("/d/a.log"));
        assert_eq!(
            notice(1, "getfile -path /a.log", &done),
            "[1] done getfile -path /a.log: saved to /d/a.log"
        );
        let mut failed = progress(Phase::Failed, 0, 1);
        failed.failure = Some(
            Failure::new(Exit::Unavailable, "download stopped").hint("lr transfer download t-1"),
        );
        assert_eq!(
            notice(2, "download -path /b", &failed),
            "[2] failed download -path /b: download stopped; lr transfer download t-1"
        );
    }

    #[test]
    fn unknown_jobs_are_named() {
        let jobs = Jobs::default();
        assert_eq!(jobs.next_id(), 1);
        assert!(jobs.get("1").unwrap_err().contains("no jobs"));
    }
}
