//! A real `nats-server` child process on a free loopback port, killed on drop. Its
//! configuration comes from the caller (the broker's, which admits brokers alone); its log is
//! kept for assertions and failure reports.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Test ports come from below the kernel's ephemeral range (32768 and up on Linux), so a client
/// socket's local port can never take one between the moment it is chosen and the moment a
/// server process binds it.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port nobody listens on, never handed out twice by this process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Spread processes apart: start from a point derived from the pid and the clock.
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let span = u64::from(PORTS.end - PORTS.start);
    for step in 0..span {
        let port = PORTS.start + ((seed.wrapping_add(step.wrapping_mul(7919))) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free loopback port in {PORTS:?}");
}

impl NatsServer {
    /// Starts nats-server with the configuration `config` writes for a listen address
    /// (`127.0.0.1:<port>`) and a JetStream store directory, and waits until it accepts
    /// connections.
    pub fn start_with(config: impl FnOnce(&str, &Path) -> String) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let port = free_port();
        let binary = std::env::var_os("NATS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| "nats-server".into());
        let path = dir.path().join("nats.conf");
        let text = config(&format!("127.0.0.1:{port}"), &dir.path().join("js"));
        std::fs::write(&path, text).expect("write nats.conf");
        let log = std::fs::File::create(dir.path().join("nats.log")).expect("nats.log");
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; run scripts/setup.sh to install it",
                    binary.display()
                )
            });
        let server = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// nats-server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// The server's process id, to watch its memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Rewrites the configuration with `edit` and has the running server reload it (SIGHUP):
    /// for faults such as JetStream switched off while core NATS stays up.
    pub fn reconfigure(&self, edit: impl FnOnce(String) -> String) {
        let path = self.dir.path().join("nats.conf");
        let text = std::fs::read_to_string(&path).expect("read nats.conf");
        std::fs::write(&path, edit(text)).expect("write nats.conf");
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "cannot signal nats-server to reload");
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
