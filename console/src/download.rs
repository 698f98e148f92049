//! Bringing a finished getfile to the analyst's machine: stream the content into a `.part` file,
//! resume with `Range` after a broken connection (and from a `.part` left by an earlier attempt),
//! check the SHA-256 the broker announced, then give the file its final, unused name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use api_model::Transfer;
use backon::{ExponentialBuilder, RetryableWithContext};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::api::Client;
use crate::exit::{Exit, Failure};
use crate::progress::bytes;
use crate::savename;

/// Content requests for one download, the first included.
const MAX_ATTEMPTS: usize = 10;
/// The requests after the first, from 500 ms apart doubling up to 8 s (backon's jitter adds up to
/// the delay again, so the halves below become 250 to 500 ms, …, 4 to 8 s).
const CONTENT_RETRIES: ExponentialBuilder = ExponentialBuilder::new()
    .with_jitter()
    .with_min_delay(Duration::from_millis(250))
    .with_max_delay(Duration::from_secs(4))
    .with_max_times(MAX_ATTEMPTS - 1);
/// A content stream that sends nothing for this long is dropped and resumed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Names tried after the first: `x (1)`, …, `x (999)`.
const MAX_NUMBERED: u32 = 999;

/// What one content request ended with, when it did not bring the rest of the file.
enum Stop {
    /// Worth another request from the bytes now in the `.part` file.
    Retry(String),
    Fatal(Failure),
}

/// The `.part` file as the content requests of one download fill it.
struct PartFile<P> {
    file: tokio::fs::File,
    /// Bytes in the file.
    have: u64,
    on_progress: P,
}

/// Downloads transfer `view` (completed) into `dir`, calling `on_progress` with the bytes in the
/// `.part` file as they grow. Returns where the verified file was saved.
pub async fn download(
    api: &Client,
    view: &Transfer,
    dir: &Path,
    mut on_progress: impl FnMut(u64),
) -> Result<PathBuf, Failure> {
    let id = &view.transfer_id;
    let name = savename::safe_name(&view.name, id);
    tokio::fs::create_dir_all(dir).await.map_err(|e| {
        Failure::usage(format!(
            "cannot create the downloads folder {}: {e}",
            dir.display()
        ))
        .hint("set downloads_dir (LR_DOWNLOADS_DIR, --downloads-dir) to a folder you can write")
    })?;
    let part = savename::part_path(dir, &name, id);
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&part)
        .await
        .map_err(|e| local_error(&part, &e))?;
    let mut have = file
        .metadata()
        .await
        .map_err(|e| local_error(&part, &e))?
        .len();
    if have > view.size {
        truncate(&mut file, &part).await?;
        have = 0;
    }
    on_progress(have);

    if have < view.size || view.size == 0 {
        // Each attempt resumes from the bytes the `.part` file holds by then.
        let attempt = |mut to: PartFile<_>| {
            let part = &part;
            async move {
                let fetched = fetch(
                    api,
                    view,
                    &mut to.file,
                    part,
                    &mut to.have,
                    &mut to.on_progress,
                )
                .await;
                (to, fetched)
            }
        };
        let (to, fetched) = attempt
            .retry(CONTENT_RETRIES)
            .context(PartFile {
                file,
                have,
                on_progress,
            })
            .when(|stop| matches!(stop, Stop::Retry(_)))
            .await;
        (file, have) = (to.file, to.have);
        match fetched {
            Ok(()) => {}
            Err(Stop::Retry(reason)) => return Err(gave_up(view, &part, have, &reason)),
            Err(Stop::Fatal(failure)) => return Err(failure),
        }
    }
    file.sync_all().await.map_err(|e| local_error(&part, &e))?;
    drop(file);

    let hashed = part.clone();
    let actual = tokio::task::spawn_blocking(move || sha256_file(&hashed))
        .await
        .map_err(|e| Failure::new(Exit::CommandFailed, format!("hashing stopped: {e}")))?
        .map_err(|e| local_error(&part, &e))?;
    if !view.sha256.eq_ignore_ascii_case(&actual) {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(Failure::new(
            Exit::CommandFailed,
            format!(
                "the downloaded file does not match transfer {id}: its SHA-256 is {actual}, the \
                 broker announced {}; nothing was kept",
                if view.sha256.is_empty() {
                    "none"
                } else {
                    &view.sha256
                }
            ),
        )
        .hint("run the command again; if it fails the same way, the file changed on the way"));
    }
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || settle(&part, &dir, &name))
        .await
        .map_err(|e| Failure::new(Exit::CommandFailed, format!("saving stopped: {e}")))?
}

/// One content request from `have` on, appending what arrives to `file`.
async fn fetch(
    api: &Client,
    view: &Transfer,
    file: &mut tokio::fs::File,
    part: &Path,
    have: &mut u64,
    on_progress: &mut impl FnMut(u64),
) -> Result<(), Stop> {
    let mut response = match api.content(&view.transfer_id, *have).await {
        Ok(response) => response,
        Err(e) if e.is_transient() => return Err(Stop::Retry(e.to_string())),
        Err(e) => return Err(Stop::Fatal(e.into())),
    };
    match response.status() {
        StatusCode::PARTIAL_CONTENT => {
            let start = content_range_start(&response);
            if start != Some(*have) {
                // Not the range asked for: start over rather than splice the wrong bytes.
                truncate(file, part).await.map_err(Stop::Fatal)?;
                *have = 0;
                on_progress(0);
                return Err(Stop::Retry(format!(
                    "the broker sent bytes from {start:?}, not from {have}"
                )));
            }
        }
        StatusCode::OK => {
            if *have > 0 {
                // The whole file came back instead of the rest: keep it from the start.
                truncate(file, part).await.map_err(Stop::Fatal)?;
                *have = 0;
                on_progress(0);
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE if *have == view.size => return Ok(()),
        StatusCode::RANGE_NOT_SATISFIABLE => {
            truncate(file, part).await.map_err(Stop::Fatal)?;
            *have = 0;
            on_progress(0);
            return Err(Stop::Retry("the broker refused the range".to_owned()));
        }
        other => {
            return Err(Stop::Fatal(Failure::new(
                Exit::Unavailable,
                format!("unexpected answer from the broker: the content answered HTTP {other}"),
            )));
        }
    }
    loop {
        let chunk = match tokio::time::timeout(IDLE_TIMEOUT, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(Stop::Retry(format!("the content stream broke: {e}"))),
            Err(_) => {
                return Err(Stop::Retry(format!(
                    "no data for {} s",
                    IDLE_TIMEOUT.as_secs()
                )));
            }
        };
        if *have + chunk.len() as u64 > view.size {
            truncate(file, part).await.map_err(Stop::Fatal)?;
            return Err(Stop::Fatal(Failure::new(
                Exit::Unavailable,
                format!(
                    "unexpected answer from the broker: more than the {} bytes of transfer {}",
                    view.size, view.transfer_id
                ),
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| Stop::Fatal(local_error(part, &e)))?;
        *have += chunk.len() as u64;
        on_progress(*have);
    }
    file.flush()
        .await
        .map_err(|e| Stop::Fatal(local_error(part, &e)))?;
    if *have < view.size {
        return Err(Stop::Retry(format!(
            "the content ended after {have} of {} bytes",
            view.size
        )));
    }
    Ok(())
}

/// `a` of `Content-Range: bytes a-b/size`.
fn content_range_start(response: &reqwest::Response) -> Option<u64> {
    let value = response
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let (from, _) = value.strip_prefix("bytes ")?.split_once('-')?;
    from.trim().parse().ok()
}

async fn truncate(file: &mut tokio::fs::File, part: &Path) -> Result<(), Failure> {
    file.set_len(0).await.map_err(|e| local_error(part, &e))
}

fn gave_up(view: &Transfer, part: &Path, have: u64, reason: &str) -> Failure {
    Failure::new(
        Exit::Unavailable,
        format!(
            "download of transfer {} stopped after {MAX_ATTEMPTS} attempts: {reason}",
            view.transfer_id
        ),
    )
    .hint(format!(
        "the partial file {} is kept ({} of {}); lr transfer download {} resumes it",
        part.display(),
        bytes(have),
        bytes(view.size),
        view.transfer_id
    ))
}

fn local_error(path: &Path, e: &std::io::Error) -> Failure {
    Failure::new(
        Exit::CommandFailed,
        format!("cannot write {}: {e}", path.display()),
    )
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Gives the verified `.part` its name in `dir`: `name`, or `name (1)`, `name (2)`… when taken.
/// A hard link never replaces a file that appeared meanwhile; a file system without hard links
/// gets a rename after a check.
fn settle(part: &Path, dir: &Path, name: &str) -> Result<PathBuf, Failure> {
    for n in 0..=MAX_NUMBERED {
        let target = dir.join(savename::numbered(name, n));
        match std::fs::hard_link(part, &target) {
            Ok(()) => {
                let _ = std::fs::remove_file(part);
                return Ok(target);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) if target.symlink_metadata().is_ok() => continue,
            Err(_) => {
                return std::fs::rename(part, &target)
                    .map(|()| target.clone())
                    .map_err(|e| local_error(&target, &e));
            }
        }
    }
    Err(Failure::new(
        Exit::CommandFailed,
        format!(
            "{name} and {MAX_NUMBERED} numbered copies already exist in {}; the download is kept as {}",
            dir.display(),
            part.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_requests_at_most_and_never_more_than_eight_seconds_apart() {
        use backon::BackoffBuilder;
        for _ in 0..100 {
            let pauses: Vec<Duration> = CONTENT_RETRIES.build().collect();
            assert_eq!(pauses.len(), MAX_ATTEMPTS - 1);
            assert!(pauses[0] >= Duration::from_millis(250), "{pauses:?}");
            assert!(
                pauses.iter().all(|p| *p <= Duration::from_secs(8)),
                "{pauses:?}"
            );
            assert!(pauses[8] >= Duration::from_secs(4), "{pauses:?}");
        }
    }

    #[test]
    fn settle_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "old").unwrap();
        std::fs::write(dir.path().join("a (1).txt"), "old").unwrap();
        let part = dir.path().join("a.txt.t1.part");
        std::fs::write(&part, "new").unwrap();
        let saved = settle(&part, dir.path(), "a.txt").unwrap();
        assert_eq!(saved, dir.path().join("a (2).txt"));
        assert_eq!(std::fs::read_to_string(&saved).unwrap(), "new");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "old"
        );
        assert!(!part.exists());
    }

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, "abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
