//! The fault tools themselves: the TCP proxy against an echo server, and stopping a child process.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testkit::{Direction, Paused, TcpProxy, pause, resume, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Long enough for any step of these tests on a loaded machine; a test that fails waits this long.
const PATIENCE: Duration = Duration::from_secs(10);

/// An upstream that echoes what it reads and counts the bytes it has echoed.
struct Echo {
    addr: SocketAddr,
    echoed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echoed = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&echoed);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let count = Arc::clone(&count);
                connections.spawn(async move {
                    let mut buffer = [0; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                        if stream.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                        count.fetch_add(n as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        Self { addr, echoed, task }
    }

    fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::Relaxed)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(proxy: &TcpProxy) -> TcpStream {
    timeout(PATIENCE, TcpStream::connect(proxy.addr()))
        .await
        .expect("connect in time")
        .expect("connect to the proxy")
}

/// Sends `message` and reads back as many bytes, within `PATIENCE`.
async fn echo(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).await.unwrap();
    let mut reply = vec![0; message.len()];
    timeout(PATIENCE, stream.read_exact(&mut reply))
        .await
        .expect("echo in time")
        .expect("read the echo");
    reply
}

#[tokio::test]
async fn bytes_pass_both_ways() {
    let upstream = Echo::start().await;
    let proxy = TcpProxy::start(upstream.addr);
    let mut client = connect(&proxy).await;

    assert_eq!(echo(&mut client, b"hello").await, b"hello");

    // More than the proxy holds in flight, written and read at once.
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = client.split();
    let sent = async {
        write.write_all(&payload).await.unwrap();
    };
    let mut received = vec![0; payload.len()];
    let got = async {
        read.read_exact(&mut received).await.unwrap();
    };
    timeout(PATIENCE, async { tokio::join!(sent, got) })
        .await
        .expect("4 MiB echoed in time");
    assert!(received == payload, "the echo differs from what was sent");
    assert_eq!(proxy.connections(), 1);
}

#[tokio::test]
async fn cut_closes_connections_and_refuses_new_ones_until_restore() {
    let upstream = Echo::start().await;
    let proxy = TcpProxy::start(upstream.addr);
    let mut client = connect(&proxy).await;
    assert_eq!(echo(&mut client, b"before").await, b"before");

    proxy.cut().await;

    let mut buffer = [0; 16];
    let read = timeout(PATIENCE, client.read(&mut buffer))
        .await
        .expect("the cut connection ends in time");
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "a cut connection still delivers: {read:?}"
    );
    let refused = TcpStream::connect(proxy.addr()).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused),
        "a new connection during the cut"
    );

    proxy.restore().await;

    let mut client = connect(&proxy).await;
    assert_eq!(echo(&mut client, b"after").await, b"after");
    assert_eq!(
        proxy.connections(),
        2,
        "the refused connection is not counted"
    );
}

#[tokio::test]
async fn delay_holds_one_direction_back() {
    let upstream = Echo::start().await;
    let proxy = TcpProxy::start(upstream.addr);
    let mut client = connect(&proxy).await;
    assert_eq!(echo(&mut client, b"warm").await, b"warm");

    let delay = Duration::from_millis(300);
    proxy.delay(Direction::ToUpstream, delay);
    let started = Instant::now();
    assert_eq!(echo(&mut client, b"slow").await, b"slow");
    let took = started.elapsed();

    assert!(took >= delay, "echo took {took:?} with a {delay:?} delay");
}

#[tokio::test]
async fn discard_drops_one_direction_while_the_connection_stays_open() {
    let upstream = Echo::start().await;
    let proxy = TcpProxy::start(upstream.addr);
    let mut client = connect(&proxy).await;
    assert_eq!(echo(&mut client, b"open").await, b"open");

    proxy.discard(Direction::ToClient, true);
    client.write_all(b"ping").await.unwrap();

    // The request went through and was answered; the answer is what the proxy discarded.
    assert!(
        wait_until(PATIENCE, || async { upstream.echoed() == 8 }).await,
        "the upstream never echoed the request"
    );
    assert!(
        wait_until(PATIENCE, || async {
            proxy.discarded(Direction::ToClient) == 4
        })
        .await,
        "the proxy never discarded the reply"
    );
    let mut buffer = [0; 16];
    let silence = timeout(Duration::from_millis(300), client.read(&mut buffer)).await;
    assert!(
        silence.is_err(),
        "the client saw {silence:?} instead of silence"
    );

    // Still open: once the fault is lifted, the same connection carries the next exchange, and
    // only that one.
    proxy.restore().await;
    assert_eq!(echo(&mut client, b"pong").await, b"pong");
    assert_eq!(proxy.connections(), 1);
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let upstream = Echo::start().await;
    let proxy = TcpProxy::start(upstream.addr);
    let addr = proxy.addr();
    let mut client = connect(&proxy).await;
    assert_eq!(echo(&mut client, b"alive").await, b"alive");

    drop(proxy);

    let mut buffer = [0; 16];
    let read = timeout(PATIENCE, client.read(&mut buffer))
        .await
        .expect("the connection ends in time");
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "a dropped proxy still delivers: {read:?}"
    );
    assert!(
        wait_until(PATIENCE, || async {
            TcpStream::connect(addr).await.is_err()
        })
        .await,
        "the dropped proxy still accepts connections"
    );
}

/// A `sleep 30` child, killed on drop so that a failing test leaves nothing behind.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Self {
        Self(Command::new("sleep").arg("30").spawn().expect("run sleep"))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The process's state letter in /proc/<pid>/stat: 'T' when stopped.
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // The command name, in parentheses, may itself hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')').expect("stat has a command name");
    rest.trim_start().chars().next().expect("stat has a state")
}

async fn state_becomes(pid: u32, stopped: bool) -> bool {
    wait_until(PATIENCE, || async move { (state(pid) == 'T') == stopped }).await
}

#[tokio::test]
async fn pause_stops_a_process_and_resume_continues_it() {
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();
    assert!(state_becomes(pid, false).await, "sleep starts stopped");

    pause(pid);
    assert!(state_becomes(pid, true).await, "sleep was not stopped");

    resume(pid);
    assert!(state_becomes(pid, false).await, "sleep was not continued");
}

#[tokio::test]
async fn the_paused_guard_continues_the_process_on_drop() {
    let sleeper = Sleeper::start();
    let pid = sleeper.pid();

    let paused = Paused::new(pid);
    assert_eq!(paused.pid(), pid);
    assert!(state_becomes(pid, true).await, "sleep was not stopped");

    drop(paused);
    assert!(
        state_becomes(pid, false).await,
        "sleep was not continued on drop"
    );
}
