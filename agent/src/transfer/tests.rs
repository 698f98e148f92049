use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::*;
use crate::commands::testutil::mkfifo;
use crate::model::ChunkData;

const KIB: u32 = 1024;
const WAIT: Duration = Duration::from_secs(10);

fn req(id: &str, path: &Path, size: u64, chunk_size: u32, first: u64, count: u32) -> WindowRequest {
    WindowRequest {
        transfer_id: id.into(),
        session_id: "s".into(),
        token: 1,
        path: path.to_str().unwrap().into(),
        size,
        sha256: "ab".repeat(32),
        chunk_size,
        first_index: first,
        count,
    }
}

fn fixture(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..len).map(|i| (i * 13 % 256) as u8).collect();
    let path = dir.join(format!("file-{len}"));
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

struct Harness {
    transfers: Transfers,
    fence_tx: watch::Sender<u64>,
    closed: CancellationToken,
}

impl Harness {
    fn new() -> Self {
        Self {
            transfers: Transfers::default(),
            fence_tx: watch::channel(1).0,
            closed: CancellationToken::new(),
        }
    }

    fn sink(&self) -> (TransferSink, mpsc::Receiver<TransferEvent>) {
        TransferSink::channel(self.closed.clone())
    }

    fn request(&mut self, req: WindowRequest, sink: &TransferSink) {
        self.transfers
            .request(req, sink.clone(), self.fence_tx.subscribe());
    }
}

async fn next(rx: &mut mpsc::Receiver<TransferEvent>) -> TransferEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("sink open")
}

async fn chunk(rx: &mut mpsc::Receiver<TransferEvent>) -> ChunkData {
    match next(rx).await {
        TransferEvent::Chunk(c) => c,
        other => panic!("expected a chunk, got {other:?}"),
    }
}

async fn ended(rx: &mut mpsc::Receiver<TransferEvent>) -> TransferEnd {
    match next(rx).await {
        TransferEvent::Ended(e) => e,
        other => panic!("expected the end, got {other:?}"),
    }
}

/// Waits until the window has filled the channel and blocks on it.
async fn full(rx: &mpsc::Receiver<TransferEvent>) {
    assert!(
        testkit::wait_until(WAIT, || async { rx.len() == SINK_CAPACITY }).await,
        "the window fills the channel"
    );
}

/// Nothing more arrives for a while.
async fn quiet(rx: &mut mpsc::Receiver<TransferEvent>) {
    if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
        panic!("unexpected {ev:?}");
    }
}

#[test]
fn requests_are_validated_before_any_io() {
    let p = Path::new("/var/log/syslog");
    let ok = req("t", p, 1_000_000, 64 * KIB, 0, 4);
    assert_eq!(validate(&ok).unwrap().end, 4);
    let bad = |r: WindowRequest| validate(&r).unwrap_err();

    let relative = bad(WindowRequest {
        path: "var/log/syslog".into(),
        ..ok.clone()
    });
    assert_eq!(relative.status, Status::InvalidArguments);
    assert_eq!(
        relative.error,
        "getfile needs an absolute path on the device; got 'var/log/syslog'"
    );
    for size in [MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1, 0, 4 * 1024 * KIB] {
        let e = bad(WindowRequest {
            chunk_size: size,
            ..ok.clone()
        });
        assert_eq!(e.status, Status::InvalidArguments);
        assert!(
            e.error.starts_with(&format!(
                "chunk_size {size} is outside 65536..=4128768 bytes"
            )),
            "{}",
            e.error
        );
    }
    for size in [MIN_CHUNK_SIZE, MAX_CHUNK_SIZE] {
        validate(&WindowRequest {
            chunk_size: size,
            ..ok.clone()
        })
        .unwrap();
    }
    for count in [0, MAX_WINDOW_CHUNKS + 1] {
        let e = bad(WindowRequest {
            count,
            ..ok.clone()
        });
        assert!(e.error.contains("ask for 1 to 64 chunks"), "{}", e.error);
    }
    for sha in ["", "abc", &"g".repeat(64), &"a".repeat(65)] {
        let e = bad(WindowRequest {
            sha256: sha.into(),
            ..ok.clone()
        });
        assert!(e.error.contains("is not 64 hex characters"), "{}", e.error);
    }
    validate(&WindowRequest {
        sha256: "AB".repeat(32),
        ..ok.clone()
    })
    .unwrap();
    let e = bad(WindowRequest {
        transfer_id: String::new(),
        ..ok.clone()
    });
    assert!(
        e.error.contains("transfer id \"\": it is empty"),
        "{}",
        e.error
    );
    let e = bad(WindowRequest {
        transfer_id: "x".repeat(ids::MAX_TOKEN_LEN + 1),
        ..ok.clone()
    });
    assert!(e.error.contains("longer than 64"), "{}", e.error);
}

#[test]
fn windows_stop_at_the_end_of_the_file_and_never_past_it() {
    let p = Path::new("/f");
    let chunk = u64::from(64 * KIB);
    // 2.5 chunks: chunks 0, 1, 2 (partial).
    let size = 2 * chunk + chunk / 2;
    let w = validate(&req("t", p, size, 64 * KIB, 1, 64)).unwrap();
    assert_eq!((w.first, w.end), (1, 3));
    assert_eq!(w.span(2), (2 * chunk, (chunk / 2) as usize));
    let e = validate(&req("t", p, size, 64 * KIB, 3, 1)).unwrap_err();
    assert_eq!(e.status, Status::InvalidArguments);
    assert_eq!(
        e.error,
        "chunk 3 is past the end of the file: 163840 bytes in chunks of 65536 bytes make 3 chunks (0 to 2)"
    );
    // An exact multiple has no empty trailing chunk; an empty file is one empty chunk.
    assert_eq!(chunk_count(2 * chunk, chunk), 2);
    assert_eq!(chunk_count(0, chunk), 1);
    let w = validate(&req("t", p, 0, 64 * KIB, 0, 4)).unwrap();
    assert_eq!((w.first, w.end, w.span(0)), (0, 1, (0, 0)));
    assert!(validate(&req("t", p, 0, 64 * KIB, 1, 1)).is_err());
}

#[tokio::test]
async fn a_window_sends_exactly_its_chunks_in_order_with_their_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let len = (64 * KIB) as usize;
    let (path, data) = fixture(dir.path(), 5 * len + 100);
    let size = data.len() as u64;
    let mut h = Harness::new();
    let (sink, mut rx) = h.sink();

    h.request(req("t", &path, size, 64 * KIB, 1, 3), &sink);
    for index in 1..4u64 {
        let c = chunk(&mut rx).await;
        assert_eq!((c.transfer_id.as_str(), c.index), ("t", index));
        let slice = &data[index as usize * len..(index as usize + 1) * len];
        assert_eq!(c.data, slice);
        assert_eq!(c.sha256, hex::encode(Sha256::digest(slice)));
    }
    quiet(&mut rx).await;

    // The last window is cut short by the end of the file: chunk 5 is 100 bytes.
    h.request(req("t", &path, size, 64 * KIB, 4, 64), &sink);
    assert_eq!(chunk(&mut rx).await.index, 4);
    let last = chunk(&mut rx).await;
    assert_eq!((last.index, last.data.as_slice()), (5, &data[5 * len..]));
    quiet(&mut rx).await;
}

#[tokio::test]
async fn a_file_changed_between_windows_ends_the_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = fixture(dir.path(), 256 * KIB as usize);
    let size = data.len() as u64;
    let mut h = Harness::new();
    let (sink, mut rx) = h.sink();
    h.request(req("t", &path, size, 64 * KIB, 0, 2), &sink);
    chunk(&mut rx).await;
    chunk(&mut rx).await;

    // Rewritten in place with the same size: only the mtime tells.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400))
        .unwrap();
    h.request(req("t", &path, size, 64 * KIB, 2, 2), &sink);
    let end = ended(&mut rx).await;
    assert_eq!(end.transfer_id, "t");
    assert_eq!(end.status, Status::Failed);
    assert_eq!(
        end.error,
        "the file changed on the device during the transfer (size/mtime differ); run fileinfo again and restart getfile"
    );
    // A new transfer of the file as it is now starts afresh.
    h.request(req("t2", &path, size, 64 * KIB, 2, 1), &sink);
    assert_eq!(chunk(&mut rx).await.index, 2);
}

#[tokio::test]
async fn a_size_mismatch_and_a_fifo_end_the_transfer_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = fixture(dir.path(), 1000);
    let mut h = Harness::new();
    let (sink, mut rx) = h.sink();
    h.request(req("t", &path, 1001, 64 * KIB, 0, 1), &sink);
    let end = ended(&mut rx).await;
    assert_eq!(end.status, Status::Failed);
    assert!(
        end.error
            .contains("is 1000 bytes but fileinfo declared 1001"),
        "{}",
        end.error
    );

    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    h.request(req("p", &fifo, 0, 64 * KIB, 0, 1), &sink);
    let end = ended(&mut rx).await;
    assert_eq!(
        (end.transfer_id.as_str(), end.status),
        ("p", Status::Failed)
    );
    assert!(end.error.contains("is a fifo"), "{}", end.error);
}

#[tokio::test]
async fn a_transfer_cannot_change_its_file_or_chunk_size() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = fixture(dir.path(), 1000);
    let size = data.len() as u64;
    let mut h = Harness::new();
    let (sink, mut rx) = h.sink();
    h.request(req("t", &path, size, 64 * KIB, 0, 1), &sink);
    chunk(&mut rx).await;
    h.request(req("t", &path, size, 128 * KIB, 0, 1), &sink);
    let end = ended(&mut rx).await;
    assert_eq!(end.status, Status::InvalidArguments);
    assert!(end.error.contains("cannot change them"), "{}", end.error);
}

/// A file of 64 chunks of 64 KiB and a request for all of them: with a sink nobody reads, the
/// window stays in flight, blocked on a full channel.
fn big(dir: &Path) -> (PathBuf, u64) {
    let (path, data) = fixture(dir, 64 * 64 * KIB as usize);
    (path, data.len() as u64)
}

#[tokio::test]
async fn cancel_stops_a_window_blocked_on_a_full_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (path, size) = big(dir.path());
    let mut h = Harness::new();
    let (sink, mut rx) = h.sink();
    h.request(req("t", &path, size, 64 * KIB, 0, 64), &sink);
    full(&rx).await;
    assert!(h.transfers.cancel("t"));
    let mut got = Vec::new();
    let end = loop {
        match next(&mut rx).await {
            TransferEvent::Chunk(c) => got.push(c.index),
            TransferEvent::Ended(e) => break e,
            TransferEvent::Progress(p) => panic!("getfile sends no put progress: {p:?}"),
        }
    };
    assert_eq!(got, (0..SINK_CAPACITY as u64).collect::<Vec<_>>());
    assert_eq!(end.status, Status::Cancelled);
    assert_eq!(
        end.error,
        "getfile was cancelled; this window sent 2 of its chunks; ask again from chunk 2 to resume"
    );
    quiet(&mut rx).await;
    assert!(!h.transfers.cancel("t"), "nothing left to cancel");
}

#[tokio::test]
async fn a_new_request_supersedes_the_window_in_flight_without_interleaving() {
    let dir = tempfile::tempdir().unwrap();
    let (path, size) = big(dir.path());
    let mut h = Harness::new();
    let (sink, mut rx) = h.sink();
    h.request(req("t", &path, size, 64 * KIB, 0, 64), &sink);
    full(&rx).await;
    h.request(req("t", &path, size, 64 * KIB, 40, 3), &sink);
    let mut got = Vec::new();
    while got.last() != Some(&42) {
        got.push(chunk(&mut rx).await.index);
    }
    // What the old window had queued, then the new one whole; no end for the old one.
    assert_eq!(got, [0, 1, 40, 41, 42]);
    quiet(&mut rx).await;
}

#[tokio::test]
async fn a_higher_token_stops_a_window_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let (path, size) = big(dir.path());
    let mut h = Harness::new();
    let (sink, mut rx) = h.sink();
    h.request(req("t", &path, size, 64 * KIB, 0, 64), &sink);
    full(&rx).await;
    h.fence_tx.send_replace(2);
    let end = loop {
        if let TransferEvent::Ended(e) = next(&mut rx).await {
            break e;
        }
    };
    assert_eq!(end.status, Status::StaleToken);
    assert!(
        end.error
            .contains("fencing token 2 is higher than this transfer's 1"),
        "{}",
        end.error
    );
}

#[tokio::test]
async fn too_many_windows_at_once_are_refused_and_a_closed_stream_frees_them() {
    let dir = tempfile::tempdir().unwrap();
    let (path, size) = big(dir.path());
    let mut h = Harness::new();
    let mut held = Vec::new();
    for i in 0..MAX_WINDOWS {
        let (sink, rx) = h.sink();
        h.request(req(&format!("t{i}"), &path, size, 64 * KIB, 0, 64), &sink);
        held.push(rx);
    }
    let (sink, mut rx) = h.sink();
    h.request(req("one-more", &path, size, 64 * KIB, 0, 1), &sink);
    let end = ended(&mut rx).await;
    assert_eq!((end.status, end.error.as_str()), (Status::Busy, TOO_MANY));
    // Another window of a transfer already in flight is not one more.
    let (again, mut again_rx) = h.sink();
    h.request(req("t0", &path, size, 64 * KIB, 63, 1), &again);
    assert_eq!(chunk(&mut again_rx).await.index, 63);

    // The connection ends: every window stops without waiting for room.
    h.closed.cancel();
    let transfers = &h.transfers;
    assert!(
        testkit::wait_until(WAIT, || async { transfers.windows_in_flight("") == 0 }).await,
        "windows still in flight"
    );
}

#[tokio::test]
async fn the_remembered_transfers_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = fixture(dir.path(), 10);
    let mut h = Harness::new();
    let (sink, mut rx) = h.sink();
    for i in 0..MAX_REMEMBERED_TRANSFERS + 10 {
        h.request(
            req(&format!("t{i}"), &path, data.len() as u64, 64 * KIB, 0, 1),
            &sink,
        );
        chunk(&mut rx).await;
        tokio::task::yield_now().await;
    }
    assert!(h.transfers.entries.len() <= MAX_REMEMBERED_TRANSFERS + 1);
    assert!(
        !h.transfers.entries.contains_key("t0"),
        "the oldest is forgotten"
    );
}
