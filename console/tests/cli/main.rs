//! Runs the built `lr` binary against an in-test broker and checks what it prints, what it
//! returns, and what it asked the broker to do.

mod fake_admin;
mod fake_audit;
mod fake_broker;

mod admin;
mod contract;
mod errors;
mod exec;
mod failover;
mod log;
mod repl;
mod transfer;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use fake_broker::{FakeBroker, TOKEN};

/// Upper bound for one `lr` run; the binary's own waits are shorter.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// An `lr` invocation with a clean environment: no user config, no proxies, no history.
pub struct Lr {
    cmd: tokio::process::Command,
    _home: tempfile::TempDir,
    stdin: Option<Vec<u8>>,
}

impl Lr {
    pub fn bare() -> Lr {
        let home = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_lr"));
        cmd.env_clear()
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_STATE_HOME", home.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        Lr {
            cmd,
            _home: home,
            stdin: None,
        }
    }

    /// Points at `broker` with the right token: for HTTPS with its CA, for plain HTTP (on
    /// 127.0.0.1) with the analyst's opt-in, `LR_INSECURE_HTTP=1`.
    pub fn at(broker: &FakeBroker) -> Lr {
        let mut lr = Lr::bare();
        lr.env("LR_API_URL", &broker.url).env("LR_TOKEN", TOKEN);
        match &broker.ca_pem {
            Some(pem) => {
                let path = lr.home().join("ca.pem");
                std::fs::write(&path, pem).unwrap();
                lr.env("LR_CA_CERT", path.to_str().unwrap());
            }
            None => {
                lr.env("LR_INSECURE_HTTP", "1");
            }
        }
        lr
    }

    pub fn home(&self) -> PathBuf {
        self._home.path().to_owned()
    }

    pub fn env(&mut self, key: &str, value: &str) -> &mut Lr {
        self.cmd.env(key, value);
        self
    }

    pub fn stdin(&mut self, input: &str) -> &mut Lr {
        self.stdin = Some(input.as_bytes().to_vec());
        self.cmd.stdin(Stdio::piped());
        self
    }

    pub fn spawn(&mut self, args: &[&str]) -> tokio::process::Child {
        self.cmd.args(args).spawn().unwrap()
    }

    pub async fn run(&mut self, args: &[&str]) -> Run {
        let mut child = self.spawn(args);
        if let Some(input) = self.stdin.take() {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(&input).await.unwrap();
            drop(stdin);
        }
        let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
            .await
            .expect("lr did not finish in time")
            .unwrap();
        Run::from(output)
    }
}

/// What one `lr` run did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// What a spawned `lr` did, once it ends (within [`RUN_LIMIT`]).
    pub async fn of(child: tokio::process::Child) -> Run {
        Run::from(
            tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
                .await
                .expect("lr did not finish in time")
                .unwrap(),
        )
    }

    /// Stdout parsed as exactly one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }

    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }
}
