//! The scaffold of the long-running commands `gc --watch` and `audit --watch`: one runtime,
//! one signal listener ([`Shutdown`]), the client, the admin port over the process's own
//! metrics ([`Process`]), leader election over a Lease, and the pacing of passes. Each
//! command brings its [`Loop`]: what a pass does, and what it says.
//!
//! Pacing: a replica that leads runs a pass at once (at start, and when it becomes the
//! leader), then the next one `interval` after the end of the last; leadership is looked
//! at every second at least (every 200 ms while following). Before the first pass the
//! loop may wait to be [`Loop::ready`] (the stores of `gc --watch` listed once).
//!
//! Memory: before and after every pass the allocator gives its free pages back to the
//! kernel ([`release_free_memory`]). The stores' views are allocated among the list pages
//! and a pass's transient sets; what those free stays resident under glibc's malloc
//! (only the heap's top is returned by itself), so the process would hold its
//! high-water mark between passes.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use prometheus_client::metrics::gauge::Gauge;

use super::Exit;
use crate::admin::{ReadyCheck, admin_router};
use crate::gc::collect::Gate;
use crate::leader::{Elector, Leadership, LeaseSettings};
use crate::metrics::Process;
use crate::shutdown::Shutdown;

/// How a daemon runs, whatever it does: from the shared flags of `gc` and `audit`.
pub struct Settings {
    pub admin_listen: SocketAddr,
    /// `None`: no election, this replica leads.
    pub lease: Option<LeaseSettings>,
    pub interval: Duration,
}

/// What a daemon does: its passes.
pub trait Loop {
    /// 1 while this replica leads (the loop's own gauge).
    fn leader_gauge(&self) -> Gauge;
    /// Says what starts, once the admin port listens and election has begun.
    fn started(&self, leader_elect: bool, identity: &str);
    /// Whether the first pass may run (asked every 100 ms until it is).
    fn ready(&self) -> bool {
        true
    }
    /// One pass; `gate` says before each write whether to stop (a signal, lost
    /// leadership). A failed pass is the loop's to count and log: the next one is
    /// `interval` later.
    fn pass(&mut self, gate: Gate<'_>) -> impl std::future::Future<Output = ()>;
    /// This replica stopped leading.
    fn step_down(&mut self) {}
}

/// The pieces of a daemon a command builds from the client, its metrics in `process`.
pub struct Start<L> {
    pub pass: L,
    /// Readiness conditions of the admin port.
    pub checks: Vec<ReadyCheck>,
}

/// Runs a daemon to its end: a signal (exit 0), or a start-up error (printed, exit 2).
/// `start` builds the loop from the client and the process's metrics registry (after
/// the client, before the admin port listens).
pub fn run<L, F>(
    cluster: &crate::cli::ClusterArgs,
    settings: Settings,
    start: F,
) -> anyhow::Result<Exit>
where
    L: Loop,
    F: FnOnce(&Client, &mut Process) -> Start<L>,
{
    // Two workers: a pass works on one while the other serves /metrics and renews the
    // lease.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let exit = runtime.block_on(async {
        // The one signal listener of the process, before anything else.
        let shutdown = Shutdown::install();
        shutdown.log_first();
        let Some(client) =
            super::command_client(cluster.kubeconfig.as_deref(), cluster.context.as_deref()).await
        else {
            return Exit::Usage;
        };
        serve(client, shutdown, settings, start).await
    });
    // Watches and the admin server end with the runtime; nothing of theirs is awaited.
    runtime.shutdown_timeout(Duration::from_millis(200));
    Ok(exit)
}

async fn serve<L, F>(client: Client, shutdown: Shutdown, settings: Settings, start: F) -> Exit
where
    L: Loop,
    F: FnOnce(&Client, &mut Process) -> Start<L>,
{
    let mut process = Process::new();
    let Start {
        pass: mut each,
        checks,
    } = start(&client, &mut process);
    let admin = admin_router(Arc::new(process), checks);
    if super::spawn_admin(settings.admin_listen, admin)
        .await
        .is_none()
    {
        return Exit::Usage;
    }
    let (leadership, elector) = lead(&client, settings.lease, each.leader_gauge());
    each.started(elector.is_some(), leadership.identity());
    let stop = |elector: Option<Elector>| async move {
        if let Some(elector) = elector {
            elector.release(Duration::from_millis(800)).await;
        }
        tracing::info!("stopped");
        Exit::Ok
    };
    while !each.ready() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.wait() => return stop(elector).await,
        }
    }
    let mut leading = false;
    let mut next = Instant::now();
    loop {
        let wait = if leading {
            next.saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1))
        } else {
            Duration::from_millis(200)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => break,
        }
        if !leadership.is_leader() {
            if leading {
                each.step_down();
                leading = false;
            }
            continue;
        }
        if leading && Instant::now() < next {
            continue;
        }
        leading = true;
        let gate = || {
            if shutdown.requested() {
                Some("stopped by a signal")
            } else if !leadership.is_leader() {
                Some("this replica is not the leader any more")
            } else {
                None
            }
        };
        release_free_memory();
        each.pass(&gate).await;
        release_free_memory();
        next = Instant::now() + settings.interval;
        if shutdown.requested() {
            break;
        }
    }
    stop(elector).await
}

/// Gives the allocator's free pages back to the kernel: glibc's `malloc_trim(0)`, which
/// returns every whole free page inside the heap, not only at its top. With it called
/// every half second (preloaded), `gc --watch` at 10,000 pods held 23.8 MiB after its
/// lists with the image's `GLIBC_TUNABLES` instead of 30.0, and 44.9 instead of 59.6
/// without them (docs/gc.md, "Memory"). It walks the free lists once; called before and
/// after each pass. Elsewhere than on glibc it does nothing.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: `malloc_trim` takes no pointer; it walks glibc's own free lists under the
    // arenas' locks. The Rust global allocator here is glibc's malloc (no other is set).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The image's and the chart's `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072`.
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Fixes glibc's mmap threshold at 128 KiB, as the image and the chart do with
/// `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072`, unless `GLIBC_TUNABLES` sets a
/// threshold itself (that one stands). An allocation that large (the text of a list page)
/// is then mapped on its own and unmapped when freed. glibc's default threshold is
/// dynamic: the first such block freed raises it to that block's size, and the next pages
/// are allocated in the heap, where they stay resident among the views built from them.
/// With it, the binary run outside the image holds what it holds in the image:
/// `gc --watch` at 100,000 pods 63.0 MiB after its lists where the binary before it held
/// 78.9, and 24.0 against 41.8 at 10,000 (docs/gc.md, "Names inline"). Called by `main`
/// at start-up for every command, before any thread; elsewhere than on glibc it does
/// nothing.
#[allow(unsafe_code)]
pub fn fix_mmap_threshold() {
    let set_by_user = std::env::var("GLIBC_TUNABLES")
        .is_ok_and(|tunables| tunables.contains("glibc.malloc.mmap_threshold"));
    if set_by_user {
        return;
    }
    // SAFETY: `mallopt` takes no pointer; it sets one of glibc's malloc parameters under
    // the main arena's lock. The Rust global allocator here is glibc's malloc.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// The Lease of `--leader-elect` (none with `--leader-elect=false`), in `--lease-namespace`,
/// else POD_NAMESPACE, else the namespace looked at, else `default`.
pub fn lease(
    args: &crate::cli::LeaseArgs,
    namespace: Option<&str>,
) -> Result<Option<LeaseSettings>, String> {
    if !args.leader_elect {
        return Ok(None);
    }
    if args.lease_duration < Duration::from_secs(3) {
        return Err(format!(
            "invalid --lease-duration: {}s (at least 3s)",
            args.lease_duration.as_secs()
        ));
    }
    let lease_namespace =
        crate::leader::lease_namespace(args.lease_namespace.as_deref(), namespace);
    Ok(Some(LeaseSettings::new(
        &args.lease_name,
        &lease_namespace,
        &crate::leader::default_identity(),
        args.lease_duration,
    )))
}

/// Starts leader election over `lease`, or leads alone without one (`leader` is set to 1).
fn lead(
    client: &Client,
    lease: Option<LeaseSettings>,
    leader: Gauge,
) -> (Leadership, Option<Elector>) {
    match lease {
        Some(settings) => {
            let (leadership, elector) = Elector::spawn(client.clone(), settings, leader);
            (leadership, Some(elector))
        }
        None => {
            leader.set(1);
            (Leadership::always(), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, duration};

    #[test]
    fn durations_are_checked() {
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        // A bare number is seconds (gc's --interval always was).
        assert_eq!(duration("5"), Ok(Duration::from_secs(5)));
        assert!(duration("1.5s").is_err());
        assert!(duration("5x").is_err());
        let lease = |argv: &[&str]| match Cli::parse_from(argv).command {
            Command::Audit(args) => lease(&args.lease, None),
            _ => unreachable!(),
        };
        assert!(lease(&["stateward", "audit", "--watch", "--lease-duration", "2s"]).is_err());
        let settings = lease(&["stateward", "audit", "--watch"]).expect("default lease");
        assert_eq!(settings.map(|s| s.name).as_deref(), Some("stateward-audit"));
        let Command::Gc(gc) = Cli::parse_from(["stateward", "gc", "--watch"]).command else {
            unreachable!()
        };
        assert_eq!(gc.lease.lease_name, "stateward-gc");
        assert_eq!(gc.interval, Duration::from_secs(30));
        assert!(
            lease(&["stateward", "audit", "--watch", "--leader-elect=false"])
                .expect("no lease")
                .is_none()
        );
    }
}
