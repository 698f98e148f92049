use super::*;

fn digests_of(bytes: &[u8]) -> Digests {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, bytes).unwrap();
    let md = std::fs::metadata(&path).unwrap();
    let mut f = open_regular(&path, &md).unwrap();
    match all_digests(&mut f, &|| false).unwrap() {
        Streamed::Complete {
            value, bytes: n, ..
        } => {
            assert_eq!(n, bytes.len() as u64);
            value
        }
        Streamed::Stopped { .. } => panic!("not stopped"),
    }
}

#[test]
fn known_vectors() {
    let d = digests_of(b"abc");
    assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(d.sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_eq!(
        d.sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn multi_buffer_file_hashes_like_one_shot() {
    let data: Vec<u8> = (0..(3 * BUFFER_LEN + 17))
        .map(|i| (i % 251) as u8)
        .collect();
    let d = digests_of(&data);
    assert_eq!(d.sha256, hex::encode(Sha256::digest(&data)));
    assert_eq!(d.md5, hex::encode(Md5::digest(&data)));
}

#[test]
fn stop_is_honoured_between_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, vec![7u8; 4 * BUFFER_LEN]).unwrap();
    let md = std::fs::metadata(&path).unwrap();
    let mut f = open_regular(&path, &md).unwrap();
    let calls = std::cell::Cell::new(0);
    let stop = || {
        calls.set(calls.get() + 1);
        calls.get() > 2
    };
    match all_digests(&mut f, &stop).unwrap() {
        Streamed::Stopped { bytes } => assert_eq!(bytes, 2 * BUFFER_LEN as u64),
        Streamed::Complete { .. } => panic!("should have stopped"),
    }
}

#[test]
fn refuses_fifos_without_opening_them() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("p");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    let md = std::fs::symlink_metadata(&fifo).unwrap();
    assert!(matches!(
        open_regular(&fifo, &md),
        Err(OpenRefused::NotRegular("fifo"))
    ));
}

#[test]
fn detects_a_file_swapped_for_a_fifo() {
    // The check happened on a regular file; by open time the path is a FIFO. O_NONBLOCK means the
    // open returns at once instead of waiting for a writer, and the re-check refuses it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    std::fs::write(&path, b"data").unwrap();
    let md = std::fs::metadata(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap()
            .success()
    );
    let started = std::time::Instant::now();
    assert!(matches!(
        open_regular(&path, &{
            // Pretend the caller saw a regular file: use the original metadata.
            md
        }),
        Err(OpenRefused::NotRegular("fifo"))
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}
