use std::time::Duration;

use super::*;

fn inv(id: &str, token: u64, command: &str, args: &[&str], cwd: &str) -> Invocation {
    Invocation {
        command_id: id.into(),
        session_id: "s".into(),
        token,
        command: command.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        cwd: cwd.into(),
        timeout: None,
    }
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Completion>) -> Completion {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a result in time")
        .expect("sink open")
}

fn spawn(dir: &std::path::Path) -> (ExecutorHandle, JoinHandle<()>) {
    let (store, state) = StateStore::open(dir).unwrap();
    let work = WorkDir::new(
        dir.join("work"),
        put::volatile::Volatile::new(dir, &SystemRoot::live()),
    );
    ExecutorHandle::spawn(
        store,
        state,
        SystemRoot::live(),
        work,
        crate::fencing::DEFAULT_HELD_RESULT_BYTES,
    )
}

fn no_sink() -> TransferSink {
    TransferSink::channel(tokio_util::sync::CancellationToken::new()).0
}

#[tokio::test]
async fn persists_before_running_and_refuses_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let (exec, join) = spawn(tmp.path());
    let (tx, mut rx) = mpsc::unbounded_channel();
    exec.submit(inv("a", 10, "help", &[], "/"), tx.clone())
        .await;
    let c = recv(&mut rx).await;
    assert_eq!(c.outcome.status, Status::Ok);
    assert_eq!(exec.highest_token(), 10);
    let on_disk: PersistedState = serde_json::from_slice(
        &std::fs::read(tmp.path().join(crate::fencing::STATE_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk.highest_token, 10);
    assert_eq!(on_disk.started, ["a"]);

    exec.submit(inv("b", 9, "help", &[], "/tmp"), tx.clone())
        .await;
    let c = recv(&mut rx).await;
    assert_eq!(c.command_id, "b");
    assert_eq!(c.outcome.status, Status::StaleToken);
    assert!(
        c.outcome.error.contains("token 9 is lower than 10"),
        "{}",
        c.outcome.error
    );
    assert_eq!(c.outcome.cwd, "/tmp");

    drop((exec, tx));
    join.await.unwrap();

    // A new life: the token survived, and "a" is not run again.
    let (exec, _join) = spawn(tmp.path());
    assert_eq!(exec.highest_token(), 10);
    let (tx, mut rx) = mpsc::unbounded_channel();
    exec.submit(inv("a", 10, "help", &[], "/"), tx).await;
    let c = recv(&mut rx).await;
    assert_eq!(c.outcome.status, Status::Failed);
    assert!(
        c.outcome.error.contains("not run twice"),
        "{}",
        c.outcome.error
    );
}

#[tokio::test]
async fn running_id_is_not_restarted_and_result_reaches_every_asker() {
    let tmp = tempfile::tempdir().unwrap();
    let (exec, _join) = spawn(tmp.path());
    let (tx1, mut rx1) = mpsc::unbounded_channel();
    let (tx2, mut rx2) = mpsc::unbounded_channel();
    let long = inv("f", 1, "findfile", &["none-*", "-path", "/", "-allfs"], "/");
    exec.submit(long.clone(), tx1).await;
    // The first connection goes away; a second one asks again for the same id.
    rx1.close();
    exec.submit(long, tx2).await;
    exec.cancel("f".into(), no_sink()).await;
    let c = recv(&mut rx2).await;
    assert_eq!(c.outcome.status, Status::Cancelled);
    assert!(rx2.try_recv().is_err(), "one result only");
}

#[tokio::test]
async fn empty_ids_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (exec, _join) = spawn(tmp.path());
    let (tx, mut rx) = mpsc::unbounded_channel();
    exec.submit(inv("", 1, "help", &[], "/"), tx).await;
    assert_eq!(recv(&mut rx).await.outcome.status, Status::InvalidArguments);
    assert_eq!(exec.highest_token(), 0);
}

#[test]
fn oversized_output_becomes_an_error() {
    let big = Outcome {
        status: Status::Ok,
        output: Some(serde_json::json!({"x": "a".repeat(MAX_OUTPUT_BYTES)})),
        error: String::new(),
        cwd: "/".into(),
        file_facts: None,
    };
    let limited = limit_output(big);
    assert_eq!(limited.status, Status::Failed);
    assert!(limited.output.is_none());
    assert!(
        limited.error.contains("narrow the request"),
        "{}",
        limited.error
    );
    let small = Outcome::error(Status::Ok, "", "/");
    assert_eq!(limit_output(small.clone()), small);
}

#[tokio::test]
async fn chunk_requests_are_fenced_like_commands_and_a_higher_token_is_persisted_first() {
    use crate::model::{TransferEvent, WindowRequest};
    use tokio_util::sync::CancellationToken;

    let tmp = tempfile::tempdir().unwrap();
    let (exec, _join) = spawn(tmp.path());
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("evidence.bin");
    std::fs::write(&path, vec![5u8; 1000]).unwrap();
    let window = |token| WindowRequest {
        transfer_id: "t1".into(),
        session_id: "s".into(),
        token,
        path: path.to_str().unwrap().into(),
        size: 1000,
        sha256: "0".repeat(64),
        chunk_size: 64 * 1024,
        first_index: 0,
        count: 1,
    };
    let (sink, mut rx) = TransferSink::channel(CancellationToken::new());
    let next = async |rx: &mut mpsc::Receiver<TransferEvent>| {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event in time")
            .expect("sink open")
    };

    exec.chunks(window(5), sink.clone()).await;
    let TransferEvent::Chunk(c) = next(&mut rx).await else {
        panic!("expected a chunk")
    };
    assert_eq!((c.index, c.data.len()), (0, 1000));
    assert_eq!(exec.highest_token(), 5);
    let on_disk: PersistedState = serde_json::from_slice(
        &std::fs::read(tmp.path().join(crate::fencing::STATE_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk.highest_token, 5);

    exec.chunks(window(4), sink).await;
    let TransferEvent::Ended(end) = next(&mut rx).await else {
        panic!("expected the end")
    };
    assert_eq!(end.status, Status::StaleToken);
    assert!(
        end.error.contains("token 4 is lower than 5"),
        "{}",
        end.error
    );
    // One fence for both: a command of the older session is refused too.
    let (tx, mut results) = mpsc::unbounded_channel();
    exec.submit(inv("c", 4, "help", &[], "/"), tx).await;
    assert_eq!(recv(&mut results).await.outcome.status, Status::StaleToken);
}

#[tokio::test]
async fn put_offers_are_fenced_like_commands() {
    use crate::model::{PutOfferRequest, TransferEvent};
    use tokio_util::sync::CancellationToken;

    let tmp = tempfile::tempdir().unwrap();
    let (exec, _join) = spawn(tmp.path());
    let offer = |token| PutOfferRequest {
        transfer_id: "p1".into(),
        session_id: "s".into(),
        token,
        name: "tool.sh".into(),
        size: 10,
        sha256: "0".repeat(64),
        chunk_size: 64 * 1024,
        keep: false,
        overwrite: false,
    };
    let (sink, mut rx) = TransferSink::channel(CancellationToken::new());
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event in time")
            .expect("sink open")
    };
    exec.put_offer(offer(7), sink.clone()).await;
    let TransferEvent::Progress(p) = next().await else {
        panic!("expected progress")
    };
    assert_eq!((p.transfer_id.as_str(), p.received), ("p1", 0));
    assert_eq!(exec.highest_token(), 7);

    exec.put_offer(offer(6), sink).await;
    let TransferEvent::Ended(end) = next().await else {
        panic!("expected the end")
    };
    assert_eq!(end.status, Status::StaleToken);
    assert!(
        end.error.contains("token 6 is lower than 7") && end.error.contains("nothing was written"),
        "{}",
        end.error
    );
}
