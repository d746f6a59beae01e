//! Live reload of files (certificate and key, policy): poll the files' contents, parse and
//! validate a changed set, and swap it in. Content is compared, not modification times,
//! so the kubelet's atomic `..data` symlink swap on Secret and ConfigMap volumes is seen
//! like any other change. A bad new file keeps the last good one.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::Metrics;

/// Reads the watched files; `None` for a file that cannot be read right now.
fn snapshot(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    paths.iter().map(|p| std::fs::read(p).ok()).collect()
}

/// Polls `paths` every `interval` and calls `apply` with their contents when they change.
/// `apply` parses, validates and swaps; it returns an error to keep the old state. Each
/// attempt is logged and counted as `stateward_reloads_total{resource, outcome}`; a success
/// (and the start) sets `stateward_last_reload_success_timestamp_seconds{resource}`.
pub async fn watch_files<F>(
    resource: &'static str,
    paths: Vec<PathBuf>,
    interval: Duration,
    mut apply: F,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) where
    F: FnMut() -> Result<(), String> + Send,
{
    // The files were loaded at start-up, just before the watch began.
    metrics.loaded(resource);
    let mut last = snapshot(&paths);
    let mut failed_for: Option<Vec<Option<Vec<u8>>>> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = snapshot(&paths);
        // Half-written state (a file missing mid-swap): wait for the next tick.
        if now == last || now.iter().any(Option::is_none) {
            continue;
        }
        // Do not retry (and re-report) a failed set until it changes again.
        if failed_for.as_ref() == Some(&now) {
            continue;
        }
        match apply() {
            Ok(()) => {
                last = now;
                failed_for = None;
                tracing::info!(resource, "reloaded");
                metrics.reload(resource, true);
            }
            Err(message) => {
                failed_for = Some(now);
                tracing::error!(resource, error = %message, "new file rejected; keeping the last good one");
                metrics.reload(resource, false);
            }
        }
    }
}
