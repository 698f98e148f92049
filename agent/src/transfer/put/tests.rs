use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::volatile::{VOLATILE_FILE, Volatile, VolatileRecord};
use super::*;
use crate::model::{PutProgress, TransferEvent};
use crate::sys::root::SystemRoot;

const CHUNK: u32 = MIN_CHUNK_SIZE;
const WAIT: Duration = Duration::from_secs(10);

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Two and a half chunks.
fn content() -> Vec<u8> {
    (0..CHUNK as usize * 5 / 2)
        .map(|i| (i * 7 % 251) as u8)
        .collect()
}

fn req(id: &str, name: &str, data: &[u8]) -> PutOfferRequest {
    PutOfferRequest {
        transfer_id: id.into(),
        session_id: "s".into(),
        token: 1,
        name: name.into(),
        size: data.len() as u64,
        sha256: sha(data),
        chunk_size: CHUNK,
        keep: false,
        overwrite: false,
    }
}

fn piece(id: &str, data: &[u8], index: u64) -> ChunkData {
    let start = (index * u64::from(CHUNK)) as usize;
    let part = data[start..data.len().min(start + CHUNK as usize)].to_vec();
    ChunkData {
        transfer_id: id.into(),
        index,
        sha256: sha(&part),
        data: part,
    }
}

/// A working folder, a state dir and a fake system root whose boot id the test sets.
struct Harness {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
    work: PathBuf,
    puts: Puts,
    fence_tx: watch::Sender<u64>,
    sink: TransferSink,
    rx: mpsc::Receiver<TransferEvent>,
}

impl Harness {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let state = tmp.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let work = tmp.path().join("work");
        let (sink, rx) = TransferSink::channel(CancellationToken::new());
        let mut h = Self {
            _tmp: tmp,
            puts: Puts::new(WorkDir::new(
                work.clone(),
                Volatile::new(&state, &SystemRoot::new(&root)),
            )),
            root,
            state,
            work,
            fence_tx: watch::channel(1).0,
            sink,
            rx,
        };
        h.set_boot_id("boot-1");
        h
    }

    fn volatile(&self) -> Volatile {
        Volatile::new(&self.state, &SystemRoot::new(&self.root))
    }

    /// The agent restarted: a new `Puts` on the same folders.
    fn restart(&mut self) {
        self.puts = Puts::new(WorkDir::new(self.work.clone(), self.volatile()));
    }

    fn set_boot_id(&mut self, id: &str) {
        let path = self.root.join("proc/sys/kernel/random/boot_id");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{id}\n")).unwrap();
    }

    async fn offer(&mut self, req: PutOfferRequest) -> TransferEvent {
        self.puts
            .offer(req, self.sink.clone(), self.fence_tx.subscribe())
            .await;
        self.next().await
    }

    async fn chunk(&mut self, chunk: ChunkData) -> TransferEvent {
        self.puts.chunk(chunk, self.sink.clone()).await;
        self.next().await
    }

    async fn next(&mut self) -> TransferEvent {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("an event in time")
            .expect("sink open")
    }

    /// Offers `data` and sends every chunk: the final end.
    async fn put(&mut self, req: PutOfferRequest, data: &[u8]) -> TransferEnd {
        let id = req.transfer_id.clone();
        let mut event = self.offer(req).await;
        for index in 0..(data.len() as u64).div_ceil(u64::from(CHUNK)) {
            assert_eq!(event, progress(&id, index));
            event = self.chunk(piece(&id, data, index)).await;
        }
        if !data.is_empty() {
            assert!(matches!(event, TransferEvent::Progress(_)), "{event:?}");
            event = self.next().await;
        }
        ended(event)
    }

    fn partial(&self, id: &str) -> PathBuf {
        self.work.join(PARTIAL_DIR).join(id)
    }
}

fn progress(id: &str, received: u64) -> TransferEvent {
    TransferEvent::Progress(PutProgress {
        transfer_id: id.into(),
        received,
    })
}

fn ended(event: TransferEvent) -> TransferEnd {
    match event {
        TransferEvent::Ended(e) => e,
        other => panic!("expected the end, got {other:?}"),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn names_are_plain_file_names() {
    for good in [
        "collector.sh",
        "a b",
        ".hidden",
        "x..y",
        "ü.bin",
        &"n".repeat(255),
    ] {
        assert_eq!(check_name(good), Ok(()), "{good}");
    }
    for (bad, why) in [
        ("", "it is empty"),
        ("a/b", "'/'"),
        ("/etc/passwd", "'/'"),
        (".", "name folders"),
        ("..", "name folders"),
        (".partial", "partial files"),
        (".partial-x", "partial files"),
        ("a\0b", "NUL"),
        (&"n".repeat(256), "256 bytes"),
    ] {
        let err = check_name(bad).unwrap_err();
        assert!(err.contains(why), "{bad:?}: {err}");
        assert!(err.contains("is not a plain file name"), "{err}");
    }
}

#[test]
fn offers_are_validated() {
    let data = content();
    assert!(validate(&req("t-1_A", "f", &data)).is_ok());
    let refused = |r: PutOfferRequest| validate(&r).unwrap_err();
    for id in ["", "a/b", "a.b", &"x".repeat(129)] {
        let r = refused(req(id, "f", &data));
        assert_eq!(r.status, Status::InvalidArguments);
        assert!(r.error.contains("transfer id"), "{}", r.error);
    }
    let r = refused(req("t", "../x", &data));
    assert!(r.error.contains("not a plain file name"), "{}", r.error);
    let r = refused(PutOfferRequest {
        chunk_size: 1024,
        ..req("t", "f", &data)
    });
    assert!(r.error.contains("chunk_size 1024"), "{}", r.error);
    let r = refused(PutOfferRequest {
        sha256: "xyz".into(),
        ..req("t", "f", &data)
    });
    assert!(r.error.contains("not 64 hex"), "{}", r.error);
    let r = refused(PutOfferRequest {
        size: MAX_PUT_BYTES + 1,
        ..req("t", "f", &data)
    });
    assert!(r.error.contains("at most"), "{}", r.error);
    assert_eq!(
        validate(&PutOfferRequest {
            sha256: sha(&data).to_uppercase(),
            ..req("t", "f", &data)
        })
        .unwrap()
        .sha256,
        sha(&data)
    );
}

#[test]
fn chunks_are_checked_by_index_and_exact_length() {
    let offer = validate(&req("t", "f", &content())).unwrap();
    assert_eq!(offer.chunks(), 3);
    let c = CHUNK as usize;
    assert_eq!(
        check_chunk(&offer, 0, 0, c),
        Ok(ChunkStep::Write { offset: 0 })
    );
    assert_eq!(check_chunk(&offer, 1, 0, c), Ok(ChunkStep::Held));
    assert_eq!(check_chunk(&offer, 0, 1, c), Ok(ChunkStep::Gap));
    assert_eq!(
        check_chunk(&offer, 2, 2, c / 2),
        Ok(ChunkStep::Write {
            offset: 2 * c as u64
        })
    );
    let err = check_chunk(&offer, 2, 2, c).unwrap_err();
    assert!(err.contains("not the 32768 it must have"), "{err}");
    let err = check_chunk(&offer, 0, 0, c - 1).unwrap_err();
    assert!(err.contains("has 65535 bytes"), "{err}");
    let err = check_chunk(&offer, 3, 3, c / 2).unwrap_err();
    assert!(err.contains("past the end"), "{err}");
}

#[test]
fn received_counts_whole_chunks_of_the_partial_file() {
    let offer = validate(&req("t", "f", &content())).unwrap();
    let c = u64::from(CHUNK);
    assert_eq!(offer.received_in(0), 0);
    assert_eq!(offer.received_in(c - 1), 0);
    assert_eq!(offer.received_in(2 * c + 5), 2);
    assert_eq!(offer.received_in(offer.size), 3);
}

#[tokio::test]
async fn a_put_lands_in_the_working_folder_with_private_modes() {
    let mut h = Harness::new();
    let data = content();
    let end = h.put(req("t1", "tool.bin", &data), &data).await;
    assert_eq!(end.status, Status::Ok, "{}", end.error);
    let dest = h.work.join("tool.bin");
    assert_eq!(end.path.as_deref(), Some(dest.as_path()));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(mode(&dest), 0o600);
    assert_eq!(mode(&h.work), 0o700);
    assert_eq!(mode(&h.work.join(PARTIAL_DIR)), 0o700);
    assert!(!h.partial("t1").exists());
}

#[tokio::test]
async fn a_repeated_offer_resumes_even_after_a_restart() {
    let mut h = Harness::new();
    let data = content();
    assert_eq!(h.offer(req("t1", "f", &data)).await, progress("t1", 0));
    assert_eq!(h.chunk(piece("t1", &data, 0)).await, progress("t1", 1));
    // The same offer again (another connection): from where it was.
    assert_eq!(h.offer(req("t1", "f", &data)).await, progress("t1", 1));
    assert_eq!(h.chunk(piece("t1", &data, 1)).await, progress("t1", 2));
    h.restart();
    // Forgotten with the process: a chunk is refused until the offer comes again.
    let end = ended(h.chunk(piece("t1", &data, 2)).await);
    assert_eq!(end.status, Status::Failed);
    assert!(end.error.contains("offer it again"), "{}", end.error);
    assert_eq!(h.offer(req("t1", "f", &data)).await, progress("t1", 2));
    assert_eq!(h.chunk(piece("t1", &data, 2)).await, progress("t1", 3));
    let end = ended(h.next().await);
    assert_eq!(end.status, Status::Ok, "{}", end.error);
    assert_eq!(std::fs::read(h.work.join("f")).unwrap(), data);
}

#[tokio::test]
async fn bad_chunks_are_not_written_and_do_not_advance() {
    let mut h = Harness::new();
    let data = content();
    h.offer(req("t1", "f", &data)).await;
    // Data that does not match its hash.
    let mut corrupt = piece("t1", &data, 0);
    corrupt.data[10] ^= 0xff;
    assert_eq!(h.chunk(corrupt).await, progress("t1", 0));
    // The right hash, the wrong length.
    let mut short = piece("t1", &data, 0);
    short.data.truncate(100);
    short.sha256 = sha(&short.data);
    assert_eq!(h.chunk(short).await, progress("t1", 0));
    // Past the end.
    let mut past = piece("t1", &data, 2);
    past.index = 3;
    assert_eq!(h.chunk(past).await, progress("t1", 0));
    // A gap: checked, not written.
    assert_eq!(h.chunk(piece("t1", &data, 2)).await, progress("t1", 0));
    assert_eq!(std::fs::metadata(h.partial("t1")).unwrap().len(), 0);
    // The broker re-sends from 0, and a repeat changes nothing.
    assert_eq!(h.chunk(piece("t1", &data, 0)).await, progress("t1", 1));
    assert_eq!(h.chunk(piece("t1", &data, 0)).await, progress("t1", 1));
    assert_eq!(
        std::fs::metadata(h.partial("t1")).unwrap().len(),
        u64::from(CHUNK)
    );
}

#[tokio::test]
async fn a_whole_file_mismatch_leaves_nothing() {
    let mut h = Harness::new();
    let data = content();
    let declared = "ab".repeat(32);
    let end = h
        .put(
            PutOfferRequest {
                sha256: declared.clone(),
                ..req("t1", "f", &data)
            },
            &data,
        )
        .await;
    assert_eq!(end.status, Status::Failed);
    assert_eq!(
        end.error,
        format!(
            "the file received hashes to {}, not the declared {declared}; nothing was written, run putfile again",
            sha(&data)
        )
    );
    assert!(!h.work.join("f").exists());
    assert!(!h.partial("t1").exists());
    // The offer is forgotten.
    let end = ended(h.chunk(piece("t1", &data, 0)).await);
    assert!(end.error.contains("no offer"), "{}", end.error);
}

#[tokio::test]
async fn an_existing_name_is_replaced_only_with_overwrite() {
    let mut h = Harness::new();
    let data = content();
    std::fs::create_dir_all(&h.work).unwrap();
    std::fs::write(h.work.join("f"), b"old").unwrap();
    let end = ended(h.offer(req("t1", "f", &data)).await);
    assert_eq!(end.status, Status::Failed);
    assert_eq!(
        end.error,
        format!(
            "f already exists in the working folder {}; add -overwrite to replace it",
            h.work.display()
        )
    );
    assert!(!h.partial("t1").exists(), "nothing changes");
    assert_eq!(std::fs::read(h.work.join("f")).unwrap(), b"old");

    // Taken between the offer and the end: still not replaced.
    assert_eq!(h.offer(req("t2", "g", &data)).await, progress("t2", 0));
    std::fs::write(h.work.join("g"), b"raced").unwrap();
    for index in 0..3 {
        assert_eq!(
            h.chunk(piece("t2", &data, index)).await,
            progress("t2", index + 1)
        );
    }
    let end = ended(h.next().await);
    assert_eq!(end.status, Status::Failed);
    assert!(end.error.contains("g already exists"), "{}", end.error);
    assert_eq!(std::fs::read(h.work.join("g")).unwrap(), b"raced");
    assert!(!h.partial("t2").exists(), "no partial file is left behind");

    let end = h
        .put(
            PutOfferRequest {
                overwrite: true,
                ..req("t3", "f", &data)
            },
            &data,
        )
        .await;
    assert_eq!(end.status, Status::Ok, "{}", end.error);
    assert_eq!(std::fs::read(h.work.join("f")).unwrap(), data);
}

#[tokio::test]
async fn a_completed_put_answers_the_same_again() {
    let mut h = Harness::new();
    let data = content();
    let done = h.put(req("t1", "f", &data), &data).await;
    assert_eq!(done.status, Status::Ok, "{}", done.error);
    assert_eq!(ended(h.offer(req("t1", "f", &data)).await), done);
    assert_eq!(ended(h.chunk(piece("t1", &data, 2)).await), done);
    // A different file under the same id is not the same put.
    let end = ended(h.offer(req("t1", "other", &data)).await);
    assert_eq!(end.status, Status::InvalidArguments);
    assert!(end.error.contains("cannot change"), "{}", end.error);
}

#[tokio::test]
async fn an_empty_file_completes_at_once() {
    let mut h = Harness::new();
    let end = ended(h.offer(req("t0", "empty", b"")).await);
    assert_eq!(end.status, Status::Ok, "{}", end.error);
    assert_eq!(std::fs::read(h.work.join("empty")).unwrap(), b"");
    let end = ended(
        h.offer(PutOfferRequest {
            sha256: "ab".repeat(32),
            ..req("t00", "empty2", b"")
        })
        .await,
    );
    assert_eq!(end.status, Status::Failed);
    assert!(end.error.contains("nothing was written"), "{}", end.error);
    assert!(!h.work.join("empty2").exists());
}

#[tokio::test]
async fn cancel_deletes_the_partial_file_and_forgets_the_offer() {
    let mut h = Harness::new();
    let data = content();
    h.offer(req("t1", "f", &data)).await;
    h.chunk(piece("t1", &data, 0)).await;
    assert!(h.puts.cancel("t1", h.sink.clone()).await);
    let end = ended(h.next().await);
    assert_eq!(end.status, Status::Cancelled);
    assert!(
        end.error.contains("partial file was deleted"),
        "{}",
        end.error
    );
    assert!(!h.partial("t1").exists());
    let end = ended(h.chunk(piece("t1", &data, 1)).await);
    assert!(end.error.contains("no offer"), "{}", end.error);
    // Offered again, it starts over.
    assert_eq!(h.offer(req("t1", "f", &data)).await, progress("t1", 0));

    // After a restart, a cancel still deletes what is left.
    h.chunk(piece("t1", &data, 0)).await;
    h.restart();
    assert!(!h.puts.cancel("t1", h.sink.clone()).await);
    assert_eq!(ended(h.next().await).status, Status::Cancelled);
    assert!(!h.partial("t1").exists());
}

#[tokio::test]
async fn chunks_stop_once_a_higher_token_is_accepted() {
    let mut h = Harness::new();
    let data = content();
    h.offer(req("t1", "f", &data)).await;
    h.fence_tx.send_replace(2);
    let end = ended(h.chunk(piece("t1", &data, 0)).await);
    assert_eq!(end.status, Status::StaleToken);
    // The newer session offers it again and goes on.
    let again = PutOfferRequest {
        token: 2,
        ..req("t1", "f", &data)
    };
    assert_eq!(h.offer(again).await, progress("t1", 0));
    assert_eq!(h.chunk(piece("t1", &data, 0)).await, progress("t1", 1));
}

#[tokio::test]
async fn files_put_without_keep_are_deleted_after_a_reboot_only() {
    let mut h = Harness::new();
    let data = content();
    let small = b"#!/bin/sh\n".to_vec();
    assert_eq!(
        h.put(req("t1", "volatile.sh", &small), &small).await.status,
        Status::Ok
    );
    let kept = PutOfferRequest {
        keep: true,
        ..req("t2", "kept.bin", &data)
    };
    assert_eq!(h.put(kept, &data).await.status, Status::Ok);
    let record: VolatileRecord =
        serde_json::from_slice(&std::fs::read(h.state.join(VOLATILE_FILE)).unwrap()).unwrap();
    assert_eq!(record.boot_id, "boot-1");
    assert_eq!(record.files.iter().collect::<Vec<_>>(), ["volatile.sh"]);

    // The agent restarts on the same boot: nothing goes.
    let cleanup = h.volatile().clean_at_start(&h.work).unwrap();
    assert!(!cleanup.rebooted);
    assert!(h.work.join("volatile.sh").exists());

    // The device restarts.
    h.set_boot_id("boot-2");
    let cleanup = h.volatile().clean_at_start(&h.work).unwrap();
    assert!(cleanup.rebooted);
    assert_eq!(cleanup.deleted, ["volatile.sh"]);
    assert!(!h.work.join("volatile.sh").exists());
    assert!(h.work.join("kept.bin").exists());
    let record = h.volatile().load().unwrap();
    assert_eq!(record.boot_id, "boot-2");
    assert!(record.files.is_empty());
}

#[tokio::test]
async fn keep_takes_a_name_off_the_list_and_a_later_put_without_keep_puts_it_back() {
    let mut h = Harness::new();
    let data = b"v1".to_vec();
    h.put(req("t1", "f", &data), &data).await;
    assert!(h.volatile().load().unwrap().files.contains("f"));
    let kept = PutOfferRequest {
        keep: true,
        overwrite: true,
        ..req("t2", "f", &data)
    };
    assert_eq!(h.put(kept, &data).await.status, Status::Ok);
    assert!(h.volatile().load().unwrap().files.is_empty());
    let again = PutOfferRequest {
        overwrite: true,
        ..req("t3", "f", &data)
    };
    assert_eq!(h.put(again, &data).await.status, Status::Ok);
    assert!(h.volatile().load().unwrap().files.contains("f"));
}

#[test]
fn cleanup_never_follows_a_symlink_nor_leaves_the_folder() {
    let h = Harness::new();
    let outside = h.state.join("precious");
    std::fs::write(&outside, b"keep me").unwrap();
    std::fs::create_dir_all(&h.work).unwrap();
    std::os::unix::fs::symlink(&outside, h.work.join("link")).unwrap();
    let record = VolatileRecord {
        boot_id: "boot-0".into(),
        files: ["link", "../state/precious", "gone"]
            .map(String::from)
            .into(),
    };
    std::fs::write(
        h.state.join(VOLATILE_FILE),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    let cleanup = h.volatile().clean_at_start(&h.work).unwrap();
    assert!(cleanup.rebooted);
    assert!(cleanup.deleted.is_empty());
    assert!(h.work.join("link").symlink_metadata().is_ok());
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
}

#[test]
fn without_a_boot_id_nothing_is_deleted() {
    let h = Harness::new();
    std::fs::remove_file(h.root.join("proc/sys/kernel/random/boot_id")).unwrap();
    std::fs::create_dir_all(&h.work).unwrap();
    std::fs::write(h.work.join("f"), b"x").unwrap();
    let record = VolatileRecord {
        boot_id: "boot-0".into(),
        files: ["f".to_owned()].into(),
    };
    std::fs::write(
        h.state.join(VOLATILE_FILE),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    assert!(!h.volatile().clean_at_start(&h.work).unwrap().rebooted);
    assert!(h.work.join("f").exists());
}
