//! `stateward serve`: wiring of the webhook. Start-up problems (bad certificate, bad
//! policy, port in use) fail the process; later problems (a bad reloaded file) keep the
//! last good state.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{ReadyCheck, admin_router};
use crate::cli::ServeArgs;
use crate::cluster::ClusterContext;
use crate::commands::Exit;
use crate::metrics::Metrics;
use crate::policy::{Context, NoContext, Policy};
use crate::shutdown::Shutdown;
use crate::webhook::admission::Admission;
use crate::webhook::routes::webhook_router;
use crate::webhook::tls::{
    ConnectionLimits, SwappableCert, certificate_expiries, load_certified_key, serve_tls,
    server_config,
};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] crate::webhook::tls::TlsError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Certs(#[from] crate::commands::certs::CertsError),
}

/// Everything `start` needs (tests build it directly).
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// `None`: the built-in baseline.
    pub policy: Option<PathBuf>,
    /// The namespace the webhook runs in (excluded from evaluation).
    pub own_namespace: Option<String>,
    /// Rules the API server enforces natively: switched off here.
    pub native_rules: Vec<crate::policy::RuleId>,
    pub reload_interval: Duration,
    pub max_body_bytes: usize,
    pub limits: ConnectionLimits,
    pub context: Arc<dyn Context>,
    /// Extra readiness conditions (cluster caches).
    pub ready_checks: Vec<ReadyCheck>,
    pub metrics: Metrics,
}

impl ServeConfig {
    /// Both ports on 127.0.0.1 with free ports, the built-in policy, no cluster context and
    /// the default limits (tests, benchmarks and local runs override what they need).
    pub fn local(tls_cert: PathBuf, tls_key: PathBuf) -> ServeConfig {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls_cert,
            tls_key,
            policy: None,
            own_namespace: None,
            native_rules: Vec::new(),
            reload_interval: Duration::from_secs(2),
            max_body_bytes: crate::webhook::routes::DEFAULT_MAX_BODY_BYTES,
            limits: ConnectionLimits::default(),
            context: Arc::new(NoContext),
            ready_checks: Vec::new(),
            metrics: Metrics::new(),
        }
    }
}

/// A running server.
pub struct Running {
    pub tls_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub admission: Arc<Admission>,
    pub metrics: Arc<Metrics>,
    shutting_down: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Makes `/readyz` answer 503 ("shutting down") at once while both ports keep
    /// serving, so the endpoints drop this pod before [`Running::shutdown`] stops
    /// accepting.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Stops accepting, lets in-flight requests finish (bounded), and waits for the end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn load_policy(
    path: Option<&Path>,
    own_namespace: Option<&str>,
    native_rules: &[crate::policy::RuleId],
) -> Result<Policy, crate::policy::PolicyError> {
    let mut policy = crate::commands::check::load_policy(path)?;
    for id in native_rules {
        policy.set_native(*id);
    }
    if let Some(ns) = own_namespace
        && !policy.is_excluded(ns)
    {
        policy.excluded_namespaces.push(ns.to_owned());
    }
    Ok(policy)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Loads certificates and policy (failing on bad ones), binds both ports and starts
/// serving, reloading and answering health checks.
pub async fn start(config: ServeConfig) -> Result<Running, ServeError> {
    let policy = load_policy(
        config.policy.as_deref(),
        config.own_namespace.as_deref(),
        &config.native_rules,
    )?;
    let resolver = SwappableCert::new(load_certified_key(&config.tls_cert, &config.tls_key)?);
    let tls_config = server_config(resolver.clone())?;
    let metrics = Arc::new(config.metrics);
    metrics.certificates(&certificate_expiries(&config.tls_cert));
    let admission = Arc::new(Admission::new(policy, config.context, metrics.clone()));
    let tls_listener = bind(config.listen).await?;
    let admin_listener = bind(config.admin_listen).await?;
    let tls_addr = tls_listener
        .local_addr()
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| ServeError::Bind {
            addr: config.admin_listen,
            source,
        })?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    // Certificate reload.
    {
        let (cert, key) = (config.tls_cert.clone(), config.tls_key.clone());
        let resolver = resolver.clone();
        let metrics = metrics.clone();
        let metrics_certs = metrics.clone();
        tasks.push(tokio::spawn(crate::webhook::reload::watch_files(
            "certificate",
            vec![cert.clone(), key.clone()],
            config.reload_interval,
            move || {
                let loaded = load_certified_key(&cert, &key).map_err(|e| e.to_string())?;
                resolver.swap(loaded);
                metrics_certs.certificates(&certificate_expiries(&cert));
                Ok(())
            },
            metrics.clone(),
            shutdown_rx.clone(),
        )));
    }
    // Policy reload.
    if let Some(path) = config.policy.clone() {
        let admission = admission.clone();
        let metrics = metrics.clone();
        let own = config.own_namespace.clone();
        let native_rules = config.native_rules.clone();
        tasks.push(tokio::spawn(crate::webhook::reload::watch_files(
            "policy",
            vec![path.clone()],
            config.reload_interval,
            move || {
                let policy = load_policy(Some(&path), own.as_deref(), &native_rules)
                    .map_err(|e| e.to_string())?;
                admission.policy.store(Arc::new(policy));
                Ok(())
            },
            metrics.clone(),
            shutdown_rx.clone(),
        )));
    }
    // Admin port.
    let serving = Arc::new(AtomicBool::new(true));
    let shutting_down = Arc::new(AtomicBool::new(false));
    let mut checks = vec![
        ReadyCheck {
            name: "shutting down",
            ready: {
                let shutting_down = shutting_down.clone();
                Box::new(move || !shutting_down.load(Ordering::Relaxed))
            },
        },
        ReadyCheck {
            name: "webhook",
            ready: {
                let serving = serving.clone();
                Box::new(move || serving.load(Ordering::Relaxed))
            },
        },
    ];
    checks.extend(config.ready_checks);
    let admin = admin_router(metrics.clone(), checks);
    {
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let result = axum::serve(admin_listener, admin)
                .with_graceful_shutdown(async move {
                    let _ = rx.changed().await;
                })
                .await;
            if let Err(err) = result {
                tracing::error!(error = %err, "admin server failed");
            }
        }));
    }
    // Webhook port.
    {
        let router = webhook_router(admission.clone(), config.max_body_bytes);
        let limits = config.limits.clone();
        let rx = shutdown_rx.clone();
        let mut not_ready = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            tokio::spawn(async move {
                let _ = not_ready.changed().await;
                serving.store(false, Ordering::Relaxed);
            });
            serve_tls(tls_listener, tls_config, router, limits, rx).await;
        }));
    }
    tracing::info!(%tls_addr, %admin_addr, "stateward webhook serving");
    Ok(Running {
        tls_addr,
        admin_addr,
        admission,
        metrics,
        shutting_down,
        shutdown,
        tasks,
    })
}

/// Cluster context per `--cluster`: watch-fed caches when a cluster is configured (under
/// `required`, readiness waits for them), otherwise none (context rules warn, never deny).
async fn cluster_context(
    mode: crate::cluster::Mode,
    kubeconfig: Option<&Path>,
    kube_context: Option<&str>,
    metrics: &mut Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(Arc<dyn Context>, Vec<ReadyCheck>), crate::cluster::ClusterError> {
    let Some(client) = crate::cluster::client(mode, kubeconfig, kube_context).await? else {
        return Ok((Arc::new(NoContext), Vec::new()));
    };
    let context = ClusterContext::spawn(client, metrics.registry_mut(), shutdown);
    let mut checks = Vec::new();
    if mode == crate::cluster::Mode::Required {
        let caches = context.clone();
        checks.push(ReadyCheck {
            name: "cluster caches",
            ready: Box::new(move || caches.first_synced()),
        });
    }
    Ok((Arc::new(context), checks))
}

/// On the first signal: not ready at once, but keep serving for `delay` (endpoints and
/// the API server's routing need a moment to drop this pod; requests already routed here
/// still get answers); a second signal cuts the delay short. Then stop accepting and
/// drain.
async fn stop_on_signal(shutdown: Shutdown, running: Running, delay: Duration) {
    let signal = shutdown.wait().await;
    running.set_shutting_down();
    if delay.is_zero() {
        tracing::info!("{signal} received; shutting down");
    } else {
        let seconds = delay.as_secs();
        tracing::info!(
            delay_seconds = seconds,
            "{signal} received; not ready, serving for {seconds} s before draining"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            second = shutdown.wait_for(2) => {
                tracing::info!("{second} received; skipping the rest of the shutdown delay");
            }
        }
    }
    tracing::info!("draining: no new connections, finishing requests in flight");
    running.shutdown().await;
}

/// The rule ids of `--native-rules`; an unknown id stops the start (a typo would leave a
/// rule evaluated twice, or nowhere).
fn parse_native_rules(ids: &[String]) -> anyhow::Result<Vec<crate::policy::RuleId>> {
    ids.iter()
        .filter(|id| !id.trim().is_empty())
        .map(|id| {
            id.trim()
                .parse::<crate::policy::RuleId>()
                .map_err(|e| anyhow::anyhow!("--native-rules: {e}"))
        })
        .collect()
}

pub fn run(args: ServeArgs) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: ServeArgs) -> anyhow::Result<Exit> {
    let (tls_cert, tls_key) = if args.dev {
        let dir = crate::commands::certs::generate_dev(Path::new("certs/dev"))?;
        (dir.join("tls.crt"), dir.join("tls.key"))
    } else {
        match (args.tls_cert.clone(), args.tls_key.clone()) {
            (Some(cert), Some(key)) => (cert, key),
            _ => anyhow::bail!("--tls-cert and --tls-key are required (or --dev)"),
        }
    };
    let mut metrics = Metrics::new();
    let (stop_watches, watches_stopped) = watch::channel(false);
    let (context, ready_checks) = cluster_context(
        args.cluster.into(),
        args.kubeconfig.as_deref(),
        args.context.as_deref(),
        &mut metrics,
        watches_stopped,
    )
    .await?;
    let config = ServeConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        tls_cert,
        tls_key,
        policy: args.policy.policy.clone(),
        native_rules: parse_native_rules(&args.native_rules)?,
        own_namespace: std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|s| !s.is_empty()),
        reload_interval: Duration::from_secs_f64(args.reload_interval.clamp(0.1, 3600.0)),
        max_body_bytes: args.max_body_bytes,
        limits: ConnectionLimits {
            max_connections: args.max_connections,
            ..ConnectionLimits::default()
        },
        context,
        ready_checks,
        metrics,
    };
    // Registered before the server announces itself, so that a signal sent right after
    // start-up is never lost to the default action.
    let shutdown = Shutdown::install();
    let running = start(config).await?;
    if args.dev {
        print_dev_help(running.tls_addr, running.admin_addr);
    }
    stop_on_signal(shutdown, running, args.shutdown_delay()).await;
    let _ = stop_watches.send(true);
    tracing::info!("stopped");
    Ok(Exit::Ok)
}

fn print_dev_help(addr: SocketAddr, admin: SocketAddr) {
    let port = addr.port();
    let admin_port = admin.port();
    println!(
        "stateward is serving with a development certificate for localhost and 127.0.0.1.\n\
         Try it (a StatefulSet with terminationGracePeriodSeconds: 0 is denied):\n\n  \
         curl --cacert certs/dev/ca.crt -H 'Content-Type: application/json' \\\n    \
         --data @examples/review-statefulset-create.json https://localhost:{port}/validate\n\n\
         The defaults it would add: the same request to https://localhost:{port}/mutate\n\
         Health and metrics: http://localhost:{admin_port}/readyz and http://localhost:{admin_port}/metrics\n\
         Stop with Ctrl-C."
    );
}
