use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::commands::testutil::mkfifo;
use crate::model::Status;

const KIB: usize = 1024;

fn fixture(dir: &Path, name: &str, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Runs `f` on its own thread and fails the test if it has not returned within 5 s (a blocked open
/// would otherwise hang the test run).
fn without_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("returns at once instead of blocking")
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn chunks_are_slices_of_the_file_with_their_hashes_and_the_last_is_partial() {
    let dir = tempfile::tempdir().unwrap();
    let chunk = 64 * KIB;
    let (path, data) = fixture(dir.path(), "f", 3 * chunk + 17);
    let file = open(&path, data.len() as u64, None).unwrap();
    for (index, expected) in data.chunks(chunk).enumerate() {
        let (bytes, digest) = file
            .read_chunk((index * chunk) as u64, expected.len())
            .unwrap();
        assert_eq!(bytes, expected, "chunk {index}");
        assert_eq!(digest, sha(expected), "chunk {index}");
    }
    let (last, _) = file.read_chunk((3 * chunk) as u64, 17).unwrap();
    assert_eq!(last.len(), 17);
}

#[test]
fn an_empty_file_reads_as_one_empty_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = fixture(dir.path(), "empty", 0);
    let (bytes, digest) = open(&path, 0, None).unwrap().read_chunk(0, 0).unwrap();
    assert!(bytes.is_empty());
    assert_eq!(
        digest,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn symlinks_are_followed_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = fixture(dir.path(), "target", 100);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let (bytes, _) = open(&link, 100, None).unwrap().read_chunk(0, 100).unwrap();
    assert_eq!(bytes, data);
}

#[test]
fn a_fifo_is_refused_without_blocking_even_behind_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let link = dir.path().join("link-to-pipe");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    for path in [fifo, link] {
        let refusal = without_blocking(move || open(&path, 0, None).unwrap_err());
        assert_eq!(refusal.status, Status::Failed);
        assert!(
            refusal.error.contains("is a fifo, not a regular file"),
            "{}",
            refusal.error
        );
    }
}

#[test]
fn a_directory_and_a_device_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let refusal = open(dir.path(), 4096, None).unwrap_err();
    assert_eq!(refusal.status, Status::Failed);
    assert!(
        refusal.error.contains("is a dir, not a regular file"),
        "{}",
        refusal.error
    );
    // /dev/zero would read forever; it is never opened.
    let refusal = without_blocking(|| open(Path::new("/dev/zero"), 0, None).unwrap_err());
    assert!(
        refusal
            .error
            .contains("is a char device, not a regular file"),
        "{}",
        refusal.error
    );
}

#[test]
fn a_missing_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let refusal = open(&dir.path().join("gone"), 1, None).unwrap_err();
    assert_eq!(refusal.status, Status::Failed);
    assert!(
        refusal.error.contains("no such file") && refusal.error.contains("moved or deleted"),
        "{}",
        refusal.error
    );
}

#[test]
fn a_size_other_than_declared_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = fixture(dir.path(), "f", 1000);
    let refusal = open(&path, 999, None).unwrap_err();
    assert_eq!(refusal.status, Status::Failed);
    assert_eq!(
        refusal.error,
        format!(
            "'{}' is 1000 bytes but fileinfo declared 999: the file changed since fileinfo; run fileinfo again and restart getfile",
            path.display()
        )
    );
}

#[test]
fn a_file_unlike_its_remembered_stamp_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = fixture(dir.path(), "f", 1000);
    let first = open(&path, 1000, None).unwrap().stamp();
    assert_eq!(open(&path, 1000, Some(&first)).unwrap().stamp(), first);

    // Same size, new mtime: rewritten in place.
    set_mtime(
        &path,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    );
    let refusal = open(&path, 1000, Some(&first)).unwrap_err();
    assert_eq!(refusal, Refusal::failed(FILE_CHANGED));

    // Same size and content, another inode: replaced.
    let replaced = open(&path, 1000, None).unwrap().stamp();
    let tmp = dir.path().join("new");
    std::fs::write(&tmp, &data).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let refusal = open(&path, 1000, Some(&replaced)).unwrap_err();
    assert_eq!(refusal, Refusal::failed(FILE_CHANGED));
}

#[test]
fn a_change_while_open_fails_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = fixture(dir.path(), "f", 128 * KIB);
    let file = open(&path, (128 * KIB) as u64, None).unwrap();
    file.read_chunk(0, 64 * KIB).unwrap();
    set_mtime(
        &path,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    );
    assert_eq!(
        file.read_chunk(64 * KIB as u64, 64 * KIB).unwrap_err(),
        Refusal::failed(FILE_CHANGED)
    );

    // Truncated under the reader: the read comes up short.
    let file = open(&path, (128 * KIB) as u64, None).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(10)
        .unwrap();
    assert_eq!(
        file.read_chunk(64 * KIB as u64, 64 * KIB).unwrap_err(),
        Refusal::failed(FILE_CHANGED)
    );
}
