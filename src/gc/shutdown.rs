//! One SIGTERM/SIGINT listener for the whole `stateward gc` process. It is installed once,
//! before anything else runs, so a signal is never lost between two loop turns; every part
//! of the process reads the same flag (a pass checks it before each write, finishes the
//! request in flight and skips the rest).
use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    /// The sender of a flag nobody sets (kept so that `wait` keeps waiting).
    _unset: Option<Arc<watch::Sender<bool>>>,
}

impl Shutdown {
    /// Registers the SIGTERM and SIGINT handlers now and returns the shared flag. Must be
    /// called inside a Tokio runtime.
    pub fn install() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let term = signal(SignalKind::terminate());
            let int = signal(SignalKind::interrupt());
            tokio::spawn(async move {
                let (Ok(mut term), Ok(mut int)) = (term, int) else {
                    tracing::warn!("cannot listen for SIGTERM/SIGINT");
                    std::future::pending::<()>().await;
                    return;
                };
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                tracing::info!(signal = name, "shutting down after the request in flight");
                let _ = tx.send(true);
                // Keep the handlers registered: a second signal must not kill the process
                // in the middle of a request.
                loop {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = tx.send(true);
            }
        });
        Shutdown { rx, _unset: None }
    }

    /// A flag set by hand (tests), with its sender.
    pub fn manual() -> (Shutdown, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        (Shutdown { rx, _unset: None }, tx)
    }

    /// A flag that is never set.
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            rx,
            _unset: Some(Arc::new(tx)),
        }
    }

    pub fn requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once a signal has arrived.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
