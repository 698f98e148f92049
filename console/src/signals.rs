//! Ctrl+C, SIGTERM and SIGHUP as values the console can race against its waits.
//!
//! Once installed, these signals no longer kill `lr`: the code that holds a session decides what
//! to do (cancel the running command, close the session) and then exits.

use std::sync::Arc;

use tokio::sync::watch;

/// What has been received since the signals were installed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Ctrl+C presses.
    pub interrupts: u64,
    /// SIGTERM or SIGHUP: the process should end.
    pub terminate: bool,
}

/// A cheap clonable view of the received signals.
#[derive(Debug, Clone)]
pub struct Signals {
    rx: watch::Receiver<Received>,
    /// Keeps the channel open for a handle that never fires.
    _idle: Option<Arc<watch::Sender<Received>>>,
}

impl Signals {
    /// Starts listening. Must be called inside the tokio runtime. The handlers are registered
    /// before this returns, so a signal right after it is already ours.
    pub fn install() -> std::io::Result<Signals> {
        let (tx, rx) = watch::channel(Received::default());
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt())?;
            let mut term = signal(SignalKind::terminate())?;
            let mut hup = signal(SignalKind::hangup())?;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        got = int.recv() => match got {
                            Some(()) => tx.send_modify(|r| r.interrupts += 1),
                            None => break,
                        },
                        got = term.recv() => match got {
                            Some(()) => tx.send_modify(|r| r.terminate = true),
                            None => break,
                        },
                        got = hup.recv() => match got {
                            Some(()) => tx.send_modify(|r| r.terminate = true),
                            None => break,
                        },
                    }
                }
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                tx.send_modify(|r| r.interrupts += 1);
            }
        });
        Ok(Signals { rx, _idle: None })
    }

    /// A handle that never fires, for tests and non-interactive use.
    pub fn none() -> Signals {
        let (tx, rx) = watch::channel(Received::default());
        Signals {
            rx,
            _idle: Some(Arc::new(tx)),
        }
    }

    pub fn now(&self) -> Received {
        *self.rx.borrow()
    }

    pub fn terminating(&self) -> bool {
        self.now().terminate
    }

    /// Resolves at the first Ctrl+C or termination after `mark`.
    pub async fn after(&self, mark: Received) {
        let mut rx = self.rx.clone();
        let fired = rx
            .wait_for(|r| r.interrupts > mark.interrupts || (r.terminate && !mark.terminate))
            .await;
        if fired.is_err() {
            // The listener is gone: no signal can come any more.
            std::future::pending::<()>().await;
        }
    }

    /// Resolves when SIGTERM or SIGHUP arrives.
    pub async fn terminated(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|r| r.terminate).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
