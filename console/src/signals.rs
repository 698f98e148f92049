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
    /// Ctrl+Z (SIGTSTP), when the console watches it: a foreground transfer goes to the
    /// background instead of the whole console being stopped.
    pub suspends: u64,
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
        Signals::listen(false)
    }

    /// As [`Signals::install`], and Ctrl+Z no longer stops the process but counts as
    /// [`Received::suspends`] (the interactive console, where it detaches a transfer). At the
    /// line editor's prompt the terminal is raw and Ctrl+Z is a key, not a signal.
    pub fn install_with_suspend() -> std::io::Result<Signals> {
        Signals::listen(true)
    }

    fn listen(suspend: bool) -> std::io::Result<Signals> {
        let (tx, rx) = watch::channel(Received::default());
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt())?;
            let mut term = signal(SignalKind::terminate())?;
            let mut hup = signal(SignalKind::hangup())?;
            let mut tstp = if suspend {
                Some(signal(SignalKind::from_raw(libc::SIGTSTP))?)
            } else {
                None
            };
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        Some(()) = async { tstp.as_mut()?.recv().await } => {
                            tx.send_modify(|r| r.suspends += 1);
                        }
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
        let _ = suspend;
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

    /// Resolves at the first Ctrl+Z after `mark` (never, unless installed with suspend).
    pub async fn suspended_after(&self, mark: Received) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|r| r.suspends > mark.suspends).await.is_err() {
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
