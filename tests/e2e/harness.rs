//! The environment every case runs in: etcd, kube-apiserver and kube-controller-manager
//! started from `STATEWARD_K8S_ASSETS`, the real `stateward serve` binary, and the Helm
//! chart's webhook configurations pointed at it. Processes stop when [`Env`] drops (or
//! when the test process dies, see `process.rs`).
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::params::{PatchParams, PostParams};
use kube::core::{Request, params::Patch};
use kube::{Client, Config};
use serde_json::{Value, json};
use stateward::commands::check::manifest::{Source, documents};

use crate::k8s::{self, Reply, send, to_vec};
use crate::pki::{self, Pki};
use crate::process::{Proc, Spec};

/// The node the cases bind pods to and impersonate as the kubelet.
pub const NODE: &str = "n1";
/// The label the webhooks' namespaceSelector requires.
pub const NS_LABEL: &str = "stateward-e2e";

/// stateward's `--shutdown-delay` in the suite.
/// The alias label the suite's policy has `pod.identity-labels` add to StatefulSet pods.
pub const ALIAS_LABEL: &str = "e2e.stateward.io/pod";
pub const SHUTDOWN_DELAY: Duration = Duration::from_secs(3);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The stateward binary under test (`STATEWARD_E2E_BIN` runs another build, e.g. an older
/// one, for a before/after run).
pub fn stateward_binary() -> PathBuf {
    std::env::var_os("STATEWARD_E2E_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_stateward")))
}

pub fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The processes, stopped in reverse start order on drop.
#[derive(Default)]
struct Procs {
    etcd: Mutex<Option<Proc>>,
    apiserver: Mutex<Option<Proc>>,
    kcm: Mutex<Option<Proc>>,
    stateward: Mutex<Option<Proc>>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for slot in [&self.stateward, &self.kcm, &self.apiserver, &self.etcd] {
            if let Some(mut p) = lock(slot).take() {
                p.stop();
            }
        }
    }
}

/// Panics (with the log path) when the process in `slot` has exited.
fn assert_alive(slot: &Mutex<Option<Proc>>, what: &str) {
    let mut guard = lock(slot);
    if let Some(p) = guard.as_mut()
        && let Some(status) = p.exited()
    {
        panic!("{what} exited ({status}); see its log {}", p.log.display());
    }
}

fn log_of(slot: &Mutex<Option<Proc>>) -> String {
    lock(slot)
        .as_ref()
        .map(|p| p.log.display().to_string())
        .unwrap_or_default()
}

/// Polls `ready` every 300 ms; panics at once when the process exits, or after `limit`.
async fn wait_ready<F, Fut>(slot: &Mutex<Option<Proc>>, what: &str, limit: Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        assert_alive(slot, what);
        match ready().await {
            Ok(()) => return,
            Err(state) if started.elapsed() > limit => panic!(
                "{what} not ready after {limit:?} (last: {state}); see its log {}",
                log_of(slot)
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

fn kubeconfig(path: &Path, api_port: u16, ca_pem: &str, (cert, key): &(String, String)) {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    certificate-authority-data: {}\nusers:\n- name: user\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: user}}\ncurrent-context: e2e\n",
        b64(ca_pem),
        b64(cert),
        b64(key)
    );
    std::fs::write(path, text).expect("write kubeconfig");
}

pub struct Env {
    pub dir: PathBuf,
    pub admin: Client,
    /// The admin identity impersonating `system:node:n1` in group `system:nodes`.
    pub kubelet: Client,
    pub admin_kubeconfig: PathBuf,
    pub stateward_admin: SocketAddr,
    pub stateward_log: PathBuf,
    pub kubectl: Option<PathBuf>,
    pub helm: PathBuf,
    apiserver: Spec,
    procs: Procs,
}

impl Env {
    pub async fn start(dir: &Path, assets: &Path, helm: &Path, kubectl: Option<PathBuf>) -> Env {
        let started = Instant::now();
        let procs = Procs::default();
        let pki = pki::create(dir);
        let (etcd_port, peer_port, api_port, kcm_port) =
            (free_port(), free_port(), free_port(), free_port());
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        let kcm_kubeconfig = dir.join("controller-manager.kubeconfig");
        kubeconfig(&admin_kubeconfig, api_port, &pki.ca_pem, &pki.admin);
        kubeconfig(
            &kcm_kubeconfig,
            api_port,
            &pki.ca_pem,
            &pki.controller_manager,
        );

        // etcd
        let etcd = Spec::new(
            "etcd",
            assets.join("etcd"),
            vec![
                "--name=e2e".into(),
                format!("--data-dir={}", dir.join("etcd-data").display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=e2e=http://127.0.0.1:{peer_port}"),
                "--log-level=warn".into(),
            ],
        );
        *lock(&procs.etcd) = Some(Proc::start(&etcd, dir));
        let etcd_addr: SocketAddr = ([127, 0, 0, 1], etcd_port).into();
        wait_ready(
            &procs.etcd,
            "etcd",
            Duration::from_secs(30),
            || async move {
                match k8s::http_get(etcd_addr, "/health").await {
                    Ok((200, body)) if body.contains("true") => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;

        // kube-apiserver
        let apiserver = apiserver_spec(assets, api_port, etcd_port, &pki);
        let mut config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&admin_kubeconfig).expect("read admin kubeconfig"),
            &KubeConfigOptions::default(),
        )
        .await
        .expect("admin kubeconfig");
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(Duration::from_secs(30));
        let admin = Client::try_from(config.clone()).expect("admin client");
        config.auth_info.impersonate = Some(format!("system:node:{NODE}"));
        config.auth_info.impersonate_groups = Some(vec!["system:nodes".into()]);
        let kubelet = Client::try_from(config).expect("kubelet client");
        *lock(&procs.apiserver) = Some(Proc::start(&apiserver, dir));
        wait_apiserver(&procs.apiserver, &admin).await;
        println!(
            "e2e: etcd and kube-apiserver ready on 127.0.0.1:{api_port} after {:.1} s",
            started.elapsed().as_secs_f64()
        );

        // kube-controller-manager
        let kcm = Spec::new(
            "kube-controller-manager",
            assets.join("kube-controller-manager"),
            vec![
                format!("--kubeconfig={}", kcm_kubeconfig.display()),
                format!("--authentication-kubeconfig={}", kcm_kubeconfig.display()),
                format!("--authorization-kubeconfig={}", kcm_kubeconfig.display()),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={kcm_port}"),
                "--controllers=*".into(),
                "--use-service-account-credentials=false".into(),
                format!(
                    "--service-account-private-key-file={}",
                    pki.sa_key.display()
                ),
                format!("--root-ca-file={}", pki.ca_cert.display()),
                format!("--cluster-signing-cert-file={}", pki.ca_cert.display()),
                format!("--cluster-signing-key-file={}", pki.ca_key.display()),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                "--leader-elect=false".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ],
        );
        *lock(&procs.kcm) = Some(Proc::start(&kcm, dir));

        create_node(&admin).await;

        // stateward
        let bundle =
            stateward::commands::certs::generate(&["localhost".into(), "127.0.0.1".into()], 30)
                .expect("stateward certificates");
        let tls_cert = dir.join("stateward.crt");
        let tls_key = dir.join("stateward.key");
        std::fs::write(&tls_cert, &bundle.cert).expect("write cert");
        std::fs::write(&tls_key, &bundle.key).expect("write key");
        let (webhook_port, admin_port) = (free_port(), free_port());
        let stateward_admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
        // The shipped baseline with one alias label, so that a pod the StatefulSet
        // controller creates shows the pod mutation at work (the controller sets the
        // pod-name and pod-index labels itself).
        let baseline = include_str!("../../policies/baseline.yaml");
        let aliased = baseline.replace(
            "pod.identity-labels: {enabled: true, skippable: true, aliasLabels: []}",
            &format!("pod.identity-labels: {{enabled: true, skippable: true, aliasLabels: [{ALIAS_LABEL}]}}"),
        );
        assert_ne!(aliased, baseline, "the baseline's identity-labels line");
        let policy = dir.join("e2e-policy.yaml");
        std::fs::write(&policy, aliased).expect("write policy");
        let binary = stateward_binary();
        println!("e2e: stateward binary {}", binary.display());
        let sw = Spec::new(
            "stateward",
            binary,
            vec![
                "serve".into(),
                "--policy".into(),
                policy.display().to_string(),
                "--listen".into(),
                format!("127.0.0.1:{webhook_port}"),
                "--admin-listen".into(),
                stateward_admin.to_string(),
                "--tls-cert".into(),
                tls_cert.display().to_string(),
                "--tls-key".into(),
                tls_key.display().to_string(),
                "--cluster".into(),
                "required".into(),
                "--kubeconfig".into(),
                admin_kubeconfig.display().to_string(),
                "--log-format".into(),
                "json".into(),
                "--log-level".into(),
                "info".into(),
                // Long enough to see a rolling restart at work, short for the teardown.
                "--shutdown-delay".into(),
                SHUTDOWN_DELAY.as_secs().to_string(),
            ],
        );
        let sw_proc = Proc::start(&sw, dir);
        let stateward_log = sw_proc.log.clone();
        *lock(&procs.stateward) = Some(sw_proc);
        wait_ready(
            &procs.stateward,
            "stateward",
            Duration::from_secs(60),
            || async move {
                match k8s::http_get(stateward_admin, "/readyz").await {
                    Ok((200, _)) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        println!(
            "e2e: stateward ready (webhook 127.0.0.1:{webhook_port}, admin {stateward_admin}) after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert_alive(&procs.kcm, "kube-controller-manager");

        register_webhooks(
            &admin,
            helm,
            webhook_port,
            &bundle.ca_cert,
            &Webhooks::suite(),
        )
        .await;
        let env = Env {
            helm: helm.to_owned(),
            dir: dir.to_owned(),
            admin,
            kubelet,
            admin_kubeconfig,
            stateward_admin,
            stateward_log,
            kubectl,
            apiserver,
            procs,
        };
        env.wait_webhook_in_effect().await;
        println!(
            "e2e: webhooks in effect after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        env
    }

    /// Every process log, for the failure report.
    pub fn logs(&self) -> Vec<String> {
        [
            &self.procs.etcd,
            &self.procs.apiserver,
            &self.procs.kcm,
            &self.procs.stateward,
        ]
        .into_iter()
        .map(log_of)
        .filter(|l| !l.is_empty())
        .collect()
    }

    /// Sends SIGTERM to stateward, as the kubelet does on a rolling restart.
    pub fn terminate_stateward(&self) {
        let pid = lock(&self.procs.stateward).as_ref().and_then(Proc::pid);
        let pid = pid.expect("stateward's pid");
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Stops kube-controller-manager for good (a benchmark that must not see its writes).
    #[allow(dead_code)] // benches/apiserver.rs, not the suite.
    pub fn stop_controller_manager(&self) {
        let kcm = lock(&self.procs.kcm).take();
        if let Some(mut kcm) = kcm {
            tokio::task::block_in_place(|| kcm.stop());
        }
    }

    /// stateward's exit status once it has ended.
    pub fn stateward_exited(&self) -> Option<std::process::ExitStatus> {
        lock(&self.procs.stateward).as_mut().and_then(Proc::exited)
    }

    pub fn assert_stateward_alive(&self) {
        assert_alive(&self.procs.stateward, "stateward");
    }

    /// Stops kube-apiserver (SIGTERM, SIGKILL after 5 s) and starts it again with the same
    /// flags, ports and etcd data; returns once /readyz says ok.
    pub async fn restart_apiserver(&self) {
        let started = Instant::now();
        let old = lock(&self.procs.apiserver).take();
        if let Some(mut old) = old {
            // This kube-apiserver stops listening at once on SIGTERM but keeps its watch
            // connections open for a long time; SIGKILL after 5 s ends them.
            tokio::task::block_in_place(|| old.stop_within(Duration::from_secs(5)));
        }
        let stopped = started.elapsed();
        *lock(&self.procs.apiserver) = Some(Proc::start(&self.apiserver, &self.dir));
        wait_apiserver(&self.procs.apiserver, &self.admin).await;
        println!(
            "e2e: kube-apiserver stopped in {:.1} s, ready again {:.1} s later",
            stopped.as_secs_f64(),
            (started.elapsed() - stopped).as_secs_f64()
        );
    }

    /// A copy of the admin kubeconfig that impersonates `user` (for RBAC-limited clients:
    /// the admin may impersonate anyone).
    pub fn kubeconfig_as(&self, user: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.admin_kubeconfig).expect("admin kubeconfig");
        let text = text.replacen("  user:\n", &format!("  user:\n    as: {user}\n"), 1);
        let path = self.dir.join(format!("{user}.kubeconfig"));
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// stateward's log (JSON lines).
    pub fn stateward_log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.stateward_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Creates namespace `e2e-<case>` labelled for the webhooks and waits for its default
    /// ServiceAccount (pods are rejected until it exists).
    pub async fn namespace(&self, case: &str) -> String {
        self.namespace_labelled(case, json!({NS_LABEL: "on"})).await
    }

    /// [`Env::namespace`] with other labels (another set of webhooks, or none).
    pub async fn namespace_labelled(&self, case: &str, labels: Value) -> String {
        let name = format!("e2e-{}", case.replace('_', "-"));
        let name = name[..name.len().min(63)].trim_end_matches('-').to_owned();
        let ns = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels}
        });
        let reply = send(
            &self.admin,
            Request::new("/api/v1/namespaces").create(&PostParams::default(), to_vec(&ns)),
        )
        .await;
        assert!(
            reply.status == 201 || reply.status == 409,
            "create namespace {name}: {reply}"
        );
        let sa = &Request::new(format!("/api/v1/namespaces/{name}/serviceaccounts"));
        let admin = &self.admin;
        k8s::wait_for(
            &format!("ServiceAccount {name}/default"),
            Duration::from_secs(30),
            || async move {
                let r = send(admin, sa.get("default", &Default::default())).await;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(r.to_string())
                }
            },
        )
        .await;
        name
    }

    /// Dry-run creates of a set with grace 0 until the validating webhook denies one.
    async fn wait_webhook_in_effect(&self) {
        let ns = self.namespace("probe").await;
        let mut sts = k8s::statefulset("probe", 1, "probe");
        sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(0);
        let pp = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let (ns, sts, pp, admin) = (&ns, &sts, &pp, &self.admin);
        let reply: Reply = k8s::wait_for(
            "the validating webhook to deny a set with terminationGracePeriodSeconds 0",
            Duration::from_secs(30),
            || async move {
                let r = send(admin, k8s::statefulsets(ns).create(pp, to_vec(sts))).await;
                if r.denied() {
                    Ok(r)
                } else {
                    Err(r.to_string())
                }
            },
        )
        .await;
        println!("e2e: probe dry-run create: {reply}");
    }
}

fn apiserver_spec(assets: &Path, api_port: u16, etcd_port: u16, pki: &Pki) -> Spec {
    Spec::new(
        "kube-apiserver",
        assets.join("kube-apiserver"),
        vec![
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            "--advertise-address=127.0.0.1".into(),
            "--endpoint-reconciler-type=none".into(),
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            format!("--tls-cert-file={}", pki.apiserver_cert.display()),
            format!("--tls-private-key-file={}", pki.apiserver_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", pki.sa_pub.display()),
            format!("--service-account-signing-key-file={}", pki.sa_key.display()),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ],
    )
}

async fn wait_apiserver(slot: &Mutex<Option<Proc>>, admin: &Client) {
    wait_ready(
        slot,
        "kube-apiserver",
        Duration::from_secs(60),
        || async move {
            let req = hyper::Request::get("/readyz")
                .body(Vec::new())
                .expect("request");
            match tokio::time::timeout(Duration::from_secs(3), admin.request_text(req)).await {
                Ok(Ok(text)) if text == "ok" => Ok(()),
                Ok(Ok(text)) => Err(text),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timeout".into()),
            }
        },
    )
    .await;
}

/// Node `n1`, Ready, for pods the cases bind.
async fn create_node(admin: &Client) {
    let nodes = Request::new("/api/v1/nodes");
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}}
    });
    let reply = send(admin, nodes.create(&PostParams::default(), to_vec(&node))).await;
    assert_eq!(reply.status, 201, "create node: {reply}");
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let status = json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "played by the e2e test", "lastHeartbeatTime": now, "lastTransitionTime": now
    }]}});
    let reply = send(
        admin,
        nodes.patch_subresource(
            "status",
            NODE,
            &PatchParams::default(),
            &Patch::Merge(&status),
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "node status: {reply}");
}

/// A `stateward serve` of its own (`--cluster off`, `policy`, a new certificate), with the
/// chart's configurations of `which` pointed at it; returns once it answers `/readyz`.
/// Its log is `<dir>/<name>/<name>.log`.
pub async fn serve_with_webhooks(env: &Env, name: &str, policy: &Path, which: &Webhooks) -> Proc {
    let bundle =
        stateward::commands::certs::generate(&["localhost".into(), "127.0.0.1".into()], 30)
            .expect("certificates");
    let dir = env.dir.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, &bundle.cert).expect("write cert");
    std::fs::write(&key, &bundle.key).expect("write key");
    let (port, admin) = (free_port(), free_port());
    let docs = render_chart(&env.helm, which);
    // The rules the rendering runs natively (hybrid), as the chart's Deployment passes them.
    let native_rules: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a.as_str().map(String::from))
        .filter(|a| a.starts_with("--native-rules="))
        .collect();
    let spec = Spec::new(
        name,
        stateward_binary(),
        [
            "serve".into(),
            "--policy".into(),
            policy.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--admin-listen".into(),
            format!("127.0.0.1:{admin}"),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
            "--cluster".into(),
            "off".into(),
            "--log-format".into(),
            "json".into(),
        ]
        .into_iter()
        .chain(native_rules)
        .collect(),
    );
    let proc = Proc::start(&spec, &dir);
    let admin_addr: SocketAddr = ([127, 0, 0, 1], admin).into();
    k8s::wait_for(
        &format!("{name} to be ready"),
        Duration::from_secs(30),
        || async move {
            match k8s::http_get(admin_addr, "/readyz").await {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    register_rendered(&env.admin, &docs, port, &bundle.ca_cert, which).await;
    proc
}

/// Deletes the configurations and native policies [`register_rendered`] created for
/// `which`.
pub async fn unregister_webhooks(admin: &Client, which: &Webhooks) {
    for (name, plural) in which.names().into_iter().zip([
        "validatingwebhookconfigurations",
        "mutatingwebhookconfigurations",
    ]) {
        let r = send(
            admin,
            Request::new(format!("/apis/admissionregistration.k8s.io/v1/{plural}"))
                .delete(&name, &Default::default()),
        )
        .await;
        assert!(matches!(r.status, 200 | 404), "delete {name}: {r}");
    }
    for plural in [
        "validatingadmissionpolicybindings",
        "validatingadmissionpolicies",
    ] {
        let list = send(
            admin,
            Request::new(format!("/apis/admissionregistration.k8s.io/v1/{plural}"))
                .list(&Default::default()),
        )
        .await;
        for item in list.body["items"].as_array().into_iter().flatten() {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            if name.starts_with(&format!("{}.", which.prefix)) {
                let r = send(
                    admin,
                    Request::new(format!("/apis/admissionregistration.k8s.io/v1/{plural}"))
                        .delete(name, &Default::default()),
                )
                .await;
                assert_eq!(r.status, 200, "delete {name}: {r}");
            }
        }
    }
}

/// Which chart rendering to register, under which names, for which namespaces.
pub struct Webhooks {
    /// The configurations' names start with it.
    pub prefix: String,
    /// `--set` values for `helm template`.
    pub sets: Vec<String>,
    /// The namespaceSelector's `matchLabels`.
    pub selector: Value,
    /// `--api-versions` for `helm template` (what the cluster serves beyond helm's defaults).
    pub api_versions: Vec<String>,
}

impl Webhooks {
    /// The suite's: the chart's defaults, for namespaces labelled `stateward-e2e: on`.
    fn suite() -> Webhooks {
        Webhooks {
            prefix: "stateward-e2e".into(),
            sets: Vec::new(),
            selector: json!({NS_LABEL: "on"}),
            api_versions: Vec::new(),
        }
    }

    /// The configurations' names, validating first.
    pub fn names(&self) -> [String; 2] {
        [
            format!("{}-validatingwebhookconfiguration", self.prefix),
            format!("{}-mutatingwebhookconfiguration", self.prefix),
        ]
    }
}

/// Renders the chart, points every webhook at `127.0.0.1:port` (same path) with the test
/// CA, limits it to namespaces with the labels of `which`, and creates both
/// configurations. Everything else (rules, failurePolicy, matchConditions, timeouts) is
/// as the chart rendered it.
pub async fn register_webhooks(
    admin: &Client,
    helm: &Path,
    port: u16,
    ca_pem: &str,
    which: &Webhooks,
) {
    let docs = render_chart(helm, which);
    register_rendered(admin, &docs, port, ca_pem, which).await;
}

/// `helm template` of the chart for `which`.
pub fn render_chart(helm: &Path, which: &Webhooks) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // STATEWARD_E2E_CHART renders another copy of the chart (before/after runs).
    let chart = std::env::var_os("STATEWARD_E2E_CHART")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("charts/stateward"));
    println!("e2e: chart {}", chart.display());
    let out = Command::new(helm)
        .arg("template")
        .arg("sw")
        .arg(&chart)
        .args([
            "--namespace",
            "stateward-system",
            "--kube-version",
            "1.36.0",
        ])
        .args(which.sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .args(
            which
                .api_versions
                .iter()
                .flat_map(|v| ["--api-versions", v.as_str()]),
        )
        .current_dir(root)
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = documents(&Source {
        name: "chart".into(),
        text: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
    .into_iter()
    .filter_map(|d| d.value.ok())
    .collect();
    docs
}

/// Creates the webhook configurations of rendered `docs` (pointed at `127.0.0.1:port`) and
/// their native policies, if any (bindings limited to the namespaces of `which` too).
pub async fn register_rendered(
    admin: &Client,
    docs: &[Value],
    port: u16,
    ca_pem: &str,
    which: &Webhooks,
) {
    for object in docs.iter().filter(|d| {
        d["kind"] == "ValidatingAdmissionPolicy" || d["kind"] == "ValidatingAdmissionPolicyBinding"
    }) {
        let mut object = object.clone();
        let plural = if object["kind"] == "ValidatingAdmissionPolicy" {
            "validatingadmissionpolicies"
        } else {
            object["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] =
                which.selector.clone();
            "validatingadmissionpolicybindings"
        };
        let name = format!(
            "{}.{}",
            which.prefix,
            object["metadata"]["name"].as_str().unwrap_or_default()
        );
        object["metadata"]["name"] = json!(name);
        if plural == "validatingadmissionpolicybindings" {
            let policy = format!(
                "{}.{}",
                which.prefix,
                object["spec"]["policyName"].as_str().unwrap_or_default()
            );
            object["spec"]["policyName"] = json!(policy);
        }
        let reply = send(
            admin,
            Request::new(format!("/apis/admissionregistration.k8s.io/v1/{plural}"))
                .create(&PostParams::default(), to_vec(&object)),
        )
        .await;
        assert_eq!(reply.status, 201, "create {plural} {name}: {reply}");
    }
    let mut summary = Vec::new();
    for (kind, plural) in [
        (
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
        (
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
    ] {
        let Some(config) = docs.iter().find(|d| d["kind"] == kind) else {
            continue;
        };
        let mut config = config.clone();
        let name = format!("{}-{}", which.prefix, kind.to_lowercase());
        config["metadata"] = json!({"name": name, "labels": config["metadata"]["labels"].clone()});
        for webhook in config["webhooks"]
            .as_array_mut()
            .expect("webhooks")
            .iter_mut()
        {
            let path = webhook
                .pointer("/clientConfig/service/path")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_owned();
            webhook["clientConfig"] = json!({
                "url": format!("https://127.0.0.1:{port}{path}"),
                "caBundle": b64(ca_pem),
            });
            webhook["namespaceSelector"] = json!({"matchLabels": which.selector.clone()});
            let words = |v: &Value| -> String {
                let items: Vec<&str> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                items.join(",")
            };
            let rules: Vec<String> = webhook["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| format!("{}:{}", words(&r["resources"]), words(&r["operations"])))
                .collect();
            summary.push(format!(
                "{} -> {path} failurePolicy={} rules={}",
                webhook["name"].as_str().unwrap_or("?"),
                webhook["failurePolicy"].as_str().unwrap_or("?"),
                rules.join(" ")
            ));
        }
        let reply = send(
            admin,
            Request::new(format!("/apis/admissionregistration.k8s.io/v1/{plural}"))
                .create(&PostParams::default(), to_vec(&config)),
        )
        .await;
        assert_eq!(reply.status, 201, "create {kind}: {reply}");
    }
    for line in &summary {
        println!("e2e: webhook {line}");
    }
}
