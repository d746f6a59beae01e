//! The one SIGTERM/SIGINT listener of a process (`serve`, `gc`, `gc --watch`,
//! `audit --watch`). It is installed once, before anything else runs, so a signal is never
//! lost between two loop turns or to the default action; every part of the process reads
//! the same flag (a pass checks it before each write, finishes the request in flight and
//! skips the rest). The handlers stay registered: a second signal never kills the process
//! in the middle of a request, and `serve` waits for it to cut its shutdown delay short.
use tokio::sync::watch;

/// The signals seen so far: how many, and the name of the last one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    count: u32,
    last: &'static str,
}

#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<Seen>,
}

impl Shutdown {
    /// Registers the SIGTERM and SIGINT handlers now and returns the shared flag. Must be
    /// called inside a Tokio runtime. A handler that cannot be registered is logged; that
    /// signal keeps its default action.
    pub fn install() -> Shutdown {
        let (tx, rx) = watch::channel(Seen::default());
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
                loop {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    tx.send_modify(|seen| {
                        seen.count += 1;
                        seen.last = name;
                    });
                }
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                tx.send_modify(|seen| {
                    seen.count += 1;
                    seen.last = "Ctrl-C";
                });
            }
        });
        Shutdown { rx }
    }

    /// Logs the first signal as the loops of `gc` and `audit` stop on it: after the request
    /// in flight.
    pub fn log_first(&self) {
        let shutdown = self.clone();
        tokio::spawn(async move {
            let name = shutdown.wait().await;
            tracing::info!(signal = name, "shutting down after the request in flight");
        });
    }

    pub fn requested(&self) -> bool {
        self.rx.borrow().count > 0
    }

    /// Resolves once a signal has arrived, with its name.
    pub async fn wait(&self) -> &'static str {
        self.wait_for(1).await
    }

    /// Resolves once `n` signals have arrived, with the name of the last.
    pub async fn wait_for(&self, n: u32) -> &'static str {
        let mut rx = self.rx.clone();
        let last = rx
            .wait_for(|seen| seen.count >= n)
            .await
            .map(|seen| seen.last);
        match last {
            Ok(name) => name,
            Err(_) => std::future::pending().await,
        }
    }
}
