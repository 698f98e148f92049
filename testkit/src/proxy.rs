//! A TCP proxy on loopback between two processes, with faults switched on and off while it runs:
//! cut every connection, delay or discard one direction. For resource-bound and chaos tests that
//! need a link to fail the way networks do, without touching the processes at either end.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// One chunk read from a socket at a time: the copy buffer of each direction.
const CHUNK: usize = 16 * 1024;
/// Chunks read but not yet written, per direction: with a delay, a direction carries at most
/// this much in flight (256 KiB), and the sender then waits as on a link whose window is full.
const IN_FLIGHT: usize = 16;

/// Which way bytes travel through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client that connected to the proxy towards the upstream server.
    ToUpstream,
    /// From the upstream server back to the client.
    ToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ToUpstream => 0,
            Direction::ToClient => 1,
        }
    }
}

/// Forwards every connection made to [`addr`](Self::addr) to an upstream address. The faults are
/// shared by all its connections, current and future; dropping the proxy stops all its tasks and
/// closes every connection.
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    _task: AbortOnDrop,
}

#[derive(Clone, Copy, Default)]
struct Fault {
    delay: Duration,
    drop: bool,
}

#[derive(Default)]
struct Shared {
    faults: Mutex<[Fault; 2]>,
    accepted: AtomicU64,
    discarded: [AtomicU64; 2],
}

impl Shared {
    fn fault(&self, direction: Direction) -> Fault {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)[direction.index()]
    }

    fn set(&self, direction: Direction, edit: impl FnOnce(&mut Fault)) {
        edit(&mut self.faults.lock().unwrap_or_else(PoisonError::into_inner)[direction.index()]);
    }
}

/// Changes that need the listener or the connections themselves, carried out by the proxy's task;
/// the reply says they are done.
enum Command {
    Cut(oneshot::Sender<()>),
    Listen(oneshot::Sender<io::Result<()>>),
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        // The connection tasks live in the task's JoinSet, which aborts them as it is dropped.
        self.0.abort();
    }
}

impl TcpProxy {
    /// Starts a proxy to `upstream` on a free loopback port. Must be called inside a Tokio
    /// runtime.
    ///
    /// The port comes from [`free_port`](crate::free_port), below the kernel's ephemeral range,
    /// rather than from port 0: after [`cut`](Self::cut) nothing listens on it until
    /// [`restore`](Self::restore), and a client socket must not take it meanwhile (nor connect to
    /// itself through it while retrying).
    pub fn start(upstream: SocketAddr) -> Self {
        Self::start_at(
            SocketAddr::from((Ipv4Addr::LOCALHOST, crate::free_port())),
            upstream,
        )
    }

    /// The same, listening on `addr`: another loopback address with the upstream's port, say,
    /// for a peer that must be reached on the port it listens on.
    pub fn start_at(addr: SocketAddr, upstream: SocketAddr) -> Self {
        let listener =
            listen(addr).unwrap_or_else(|e| panic!("proxy cannot listen on {addr}: {e}"));
        let shared = Arc::new(Shared::default());
        let (commands, receiver) = mpsc::channel(8);
        let task = tokio::spawn(serve(
            listener,
            addr,
            upstream,
            Arc::clone(&shared),
            receiver,
        ));
        Self {
            addr,
            shared,
            commands,
            _task: AbortOnDrop(task),
        }
    }

    /// Where clients connect; the same address before and after a cut.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far, including those whose upstream refused them: for asserting
    /// that a client reconnected.
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Bytes discarded so far in `direction` by [`discard`](Self::discard): for asserting that the
    /// fault met traffic.
    pub fn discarded(&self, direction: Direction) -> u64 {
        self.shared.discarded[direction.index()].load(Ordering::Relaxed)
    }

    /// Closes every current connection, on both sides, and stops listening: new connections are
    /// refused until [`restore`](Self::restore). Both hold by the time this returns.
    pub async fn cut(&self) {
        let (done, reply) = oneshot::channel();
        self.command(Command::Cut(done)).await;
        reply.await.expect("proxy task ended");
    }

    /// Holds every chunk travelling in `direction` for `delay` before forwarding it, in current
    /// and future connections; zero removes the delay. Latency, not a bandwidth cap: chunks are
    /// delayed side by side, up to a fixed amount in flight.
    pub fn delay(&self, direction: Direction, delay: Duration) {
        self.shared.set(direction, |fault| fault.delay = delay);
    }

    /// Discards (`true`) or forwards again (`false`) the bytes travelling in `direction` while
    /// the connections stay open: a half-dead peer. A peer's end of stream still passes.
    pub fn discard(&self, direction: Direction, discard: bool) {
        self.shared.set(direction, |fault| fault.drop = discard);
    }

    /// Lifts every fault: listens again after a cut, removes delays, forwards both directions.
    /// New connections are accepted by the time this returns.
    pub async fn restore(&self) {
        for direction in [Direction::ToUpstream, Direction::ToClient] {
            self.shared
                .set(direction, |fault| *fault = Fault::default());
        }
        let (done, reply) = oneshot::channel();
        self.command(Command::Listen(done)).await;
        if let Err(e) = reply.await.expect("proxy task ended") {
            panic!("proxy cannot listen again on {}: {e}", self.addr);
        }
    }

    async fn command(&self, command: Command) {
        if self.commands.send(command).await.is_err() {
            panic!("proxy task ended");
        }
    }
}

/// A listener that can take its address again right after a cut, while the connections it
/// closed are still in TIME_WAIT.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The proxy's task: accepts connections, owns them in a JoinSet, and carries out commands.
async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Cut(done)) => {
                    listener = None;
                    // Aborted tasks drop their sockets before shutdown returns.
                    connections.shutdown().await;
                    let _ = done.send(());
                }
                Some(Command::Listen(done)) => {
                    let mut result = Ok(());
                    if listener.is_none() {
                        match listen_again(addr).await {
                            Ok(again) => listener = Some(again),
                            Err(e) => result = Err(e),
                        }
                    }
                    let _ = done.send(result);
                }
            },
            accepted = accept(listener.as_ref()) => match accepted {
                Ok(client) => {
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(relay(client, upstream, Arc::clone(&shared)));
                }
                // Out of descriptors, or a connection reset before it was accepted: try again
                // shortly rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// Binds the proxy's address again, retrying for a short while in case another process's port
/// probe holds it for a moment.
async fn listen_again(addr: SocketAddr) -> io::Result<TcpListener> {
    let mut attempts = 50;
    loop {
        match listen(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) if attempts == 0 => return Err(e),
            Err(_) => attempts -= 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Carries one client connection to the upstream and back until both directions end, one of
/// them fails, or the proxy aborts it.
async fn relay(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    // Forward each chunk as it comes: delays are the proxy's to add, not Nagle's.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let _ = tokio::try_join!(
        pump(client_read, server_write, Direction::ToUpstream, &shared),
        pump(server_read, client_write, Direction::ToClient, &shared),
    );
}

/// Copies one direction: a reader stamps each chunk with the time it is due, a writer forwards
/// it then, through a bounded queue so that a delay never buffers without limit.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    shared: &Shared,
) -> io::Result<()> {
    let (queue, mut due) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let read = async move {
        let mut buffer = vec![0; CHUNK];
        loop {
            let n = from.read(&mut buffer).await?;
            if n == 0 {
                // Dropping the queue lets the writer drain it and pass the end of stream on.
                return Ok::<_, io::Error>(());
            }
            let fault = shared.fault(direction);
            if fault.drop {
                shared.discarded[direction.index()].fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
            let chunk = (Instant::now() + fault.delay, buffer[..n].to_vec());
            if queue.send(chunk).await.is_err() {
                return Ok(());
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = due.recv().await {
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}
