//! `stateward audit` on the real control plane: the binary, run with the admin kubeconfig,
//! against objects the controllers made and statuses set as the kubelet would. Logs go to
//! the work directory (`audit-*.log`). A policy with 1 s thresholds (`audit-policy.yaml`)
//! keeps the live-state cases short.
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kube::core::Request;
use kube::core::params::{DeleteParams, GetParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::cases::{WAIT, check, get_pod, run_on_node, say, verdict, wait_pods};
use crate::harness::{Env, NODE, free_port, stateward_binary};
use crate::k8s::{
    headless_service, pods, send, services, statefulset, statefulsets, to_vec, wait_for,
};
use crate::process::{Proc, Spec};

static RUNS: AtomicUsize = AtomicUsize::new(0);

const POLICY: &str = "apiVersion: stateward.io/v1alpha1
kind: Policy
metadata: {name: e2e-audit}
spec:
  rules:
    statefulset.rollout-blocked: {notReadyFor: 1s}
    statefulset.pod-stuck-terminating: {margin: 1s}
    statefulset.claim-unbound: {pendingFor: 1s}
";

/// A finished `stateward audit`.
struct AuditRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl AuditRun {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "audit -o json printed no JSON ({e}): {}\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// (rule, mode, name, field, message) of every finding.
    fn findings(&self) -> Vec<(String, String, String, String, String)> {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        self.json()["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                (
                    s(&f["rule"]),
                    s(&f["mode"]),
                    s(&f["name"]),
                    s(&f["field"]),
                    s(&f["message"]),
                )
            })
            .collect()
    }

    fn has(&self, rule: &str, field: &str) -> Option<String> {
        self.findings()
            .into_iter()
            .find(|(r, _, _, f, _)| r == rule && f == field)
            .map(|(_, mode, _, _, message)| format!("{mode}: {message}"))
    }
}

fn policy_file(env: &Env) -> PathBuf {
    let path = env.dir.join("audit-policy.yaml");
    if !path.exists() {
        std::fs::write(&path, POLICY).expect("write the audit policy");
    }
    path
}

/// Runs `stateward audit ARGS --kubeconfig ADMIN` to the end.
async fn audit_once(env: &Env, args: &[&str]) -> AuditRun {
    let mut argv = vec!["audit".to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    argv.extend([
        "--kubeconfig".into(),
        env.admin_kubeconfig.display().to_string(),
    ]);
    let name = format!("audit-{}", RUNS.fetch_add(1, Ordering::Relaxed));
    let spec = Spec::new(&name, stateward_binary(), argv);
    let mut proc = Proc::start_split(&spec, &env.dir);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = proc.exited() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stateward audit {args:?} still running after 60 s; log {}",
            proc.log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    AuditRun {
        status,
        stdout: proc.out.as_deref().map(read).unwrap_or_default(),
        stderr: read(&proc.log),
    }
}

/// Runs audit until `found` says what it looked for is there (the clock must pass the
/// 1 s thresholds; the controllers must catch up).
async fn audit_until(
    env: &Env,
    args: &[&str],
    what: &str,
    found: impl Fn(&AuditRun) -> Option<String>,
) -> (AuditRun, String) {
    let started = Instant::now();
    loop {
        let run = audit_once(env, args).await;
        if let Some(hit) = found(&run) {
            return (run, hit);
        }
        assert!(
            started.elapsed() < WAIT,
            "no {what} within {WAIT:?}; last run exit {:?}:\n{}\n{}",
            run.status.code(),
            run.stdout,
            run.stderr
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A namespace without the label that sends it to the webhook.
pub(crate) async fn unwatched_namespace(env: &Env, case: &str) -> String {
    let name = format!("e2e-{}", case.replace('_', "-"));
    let name = name[..name.len().min(63)].trim_end_matches('-').to_owned();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let r = send(
        &env.admin,
        Request::new("/api/v1/namespaces").create(&PostParams::default(), to_vec(&ns)),
    )
    .await;
    assert!(
        r.status == 201 || r.status == 409,
        "create namespace {name}: {r}"
    );
    name
}

pub(crate) async fn create(env: &Env, ns: &str, service: Value, set: Value) {
    let r = send(
        &env.admin,
        services(ns).create(&PostParams::default(), to_vec(&service)),
    )
    .await;
    assert_eq!(r.status, 201, "create Service: {r}");
    let r = send(
        &env.admin,
        statefulsets(ns).create(&PostParams::default(), to_vec(&set)),
    )
    .await;
    assert_eq!(r.status, 201, "create StatefulSet: {r}");
}

/// A set the webhook would deny (grace 0), created where the webhook does not look, as if
/// before it was installed: audit reports it at enforce and exits 1.
pub async fn sets_created_before_the_webhook_are_reported(env: std::sync::Arc<Env>) {
    let c = "audit_sets_created_before_the_webhook";
    let env = &*env;
    let ns = &unwatched_namespace(env, c).await;
    let mut set = statefulset("legacy", 1, "legacy");
    set["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(0);
    create(env, ns, headless_service("legacy", "legacy"), set).await;
    say(
        c,
        format!("created {ns}/legacy with grace 0 (namespace not watched)"),
    );

    let run = audit_once(env, &["-n", ns, "-o", "json"]).await;
    say(
        c,
        format!("audit -n {ns} -o json: exit {:?}", run.status.code()),
    );
    let mut problems = Vec::new();
    let hit = run.has(
        "statefulset.termination-grace-period",
        "spec.template.spec.terminationGracePeriodSeconds",
    );
    say(c, format!("termination-grace-period: {hit:?}"));
    check(
        &mut problems,
        hit.as_deref().is_some_and(|h| h.starts_with("enforce")),
        format!("grace 0 reported at enforce: {}", run.stdout),
    );
    check(
        &mut problems,
        run.status.code() == Some(1),
        format!(
            "exit 1 with an enforce finding, got {:?}",
            run.status.code()
        ),
    );
    check(
        &mut problems,
        run.json()["summary"]["statefulsets"] == 1,
        format!("one set evaluated: {}", run.json()["summary"]),
    );
    let text = audit_once(env, &["-n", ns]).await;
    say(c, format!("text output:\n{}", text.stdout));
    check(
        &mut problems,
        text.stdout
            .starts_with(&format!("StatefulSet {ns}/legacy\n  ENFORCE")),
        "text output grouped by set, enforce first",
    );
    // The live state of the same namespace is read without error.
    check(
        &mut problems,
        run.stderr.is_empty() || !run.stderr.contains("error"),
        format!("no error: {}", run.stderr),
    );
    verdict(problems);
}

/// OrderedReady + RollingUpdate: a template change whose new pod never becomes Ready (set
/// Running but not Ready as the kubelet would) blocks the rollout; audit names the pod.
pub async fn rollout_blocked_by_never_ready_pod(env: std::sync::Arc<Env>) {
    let c = "audit_rollout_blocked";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let mut set = statefulset("web", 1, "web");
    set["spec"]["podManagementPolicy"] = json!("OrderedReady");
    set["spec"]["updateStrategy"] = json!({"type": "RollingUpdate"});
    create(env, ns, headless_service("web", "web"), set).await;
    wait_pods(env, ns, "web", 1).await;
    let uid = run_on_node(env, ns, "web-0").await;
    let (ns_ref, env_ref) = (ns.as_str(), env);
    let current = wait_for("the set's revisions to settle", WAIT, || async move {
        let r = send(
            &env_ref.admin,
            statefulsets(ns_ref).get("web", &GetParams::default()),
        )
        .await;
        let s = &r.body["status"];
        match (s["currentRevision"].as_str(), s["updateRevision"].as_str()) {
            (Some(c), Some(u)) if c == u && s["readyReplicas"] == 1 => Ok(c.to_owned()),
            _ => Err(s.to_string()),
        }
    })
    .await;
    say(c, format!("web-0 Ready, revision {current}"));

    let change = json!({"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}});
    let r = send(
        &env.admin,
        statefulsets(ns).patch("web", &PatchParams::default(), &Patch::Merge(&change)),
    )
    .await;
    assert_eq!(r.status, 200, "template change: {r}");
    // The controller deletes web-0 gracefully; the kubelet (played here) finishes it.
    let uid_ref = uid.as_str();
    wait_for("web-0 to be terminating", WAIT, || async move {
        let r = get_pod(env_ref, ns_ref, "web-0").await;
        if r.body["metadata"]["deletionTimestamp"].is_string() || r.status == 404 {
            Ok(())
        } else {
            Err(r.to_string())
        }
    })
    .await;
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::core::params::Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let r = send(&env.kubelet, pods(ns).delete("web-0", &dp)).await;
    say(
        c,
        format!(
            "as the kubelet: final delete of the old web-0: {}",
            r.status
        ),
    );
    let (update, new_uid) = wait_for("web-0 of the update revision", WAIT, || async move {
        let r = get_pod(env_ref, ns_ref, "web-0").await;
        let hash = r.body["metadata"]["labels"]["controller-revision-hash"].as_str();
        let new_uid = r.body["metadata"]["uid"].as_str();
        match (hash, new_uid) {
            (Some(h), Some(u)) if r.status == 200 && u != uid_ref => {
                Ok((h.to_owned(), u.to_owned()))
            }
            _ => Err(r.to_string()),
        }
    })
    .await;
    say(
        c,
        format!("replacement web-0 uid {new_uid}, revision {update}"),
    );
    // As the scheduler and the kubelet: bound, Running, never Ready.
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web-0"},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
    let r = send(
        &env.admin,
        pods(ns).create_subresource("binding", "web-0", &PostParams::default(), to_vec(&binding)),
    )
    .await;
    assert_eq!(r.status, 201, "bind the replacement: {r}");
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let status = json!({"status": {
        "phase": "Running", "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
             "lastTransitionTime": now}],
        "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "",
            "ready": false, "restartCount": 3, "started": false,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]
    }});
    let r = send(
        &env.kubelet,
        pods(ns).patch_subresource(
            "status",
            "web-0",
            &PatchParams::default(),
            &Patch::Merge(&status),
        ),
    )
    .await;
    assert_eq!(
        r.status, 200,
        "as the kubelet: web-0 Running, not Ready: {r}"
    );

    let policy = policy_file(env);
    let policy = policy.display().to_string();
    let args = ["-n", ns.as_str(), "-o", "json", "--policy", policy.as_str()];
    let (run, hit) = audit_until(env, &args, "statefulset.rollout-blocked", |run| {
        run.has("statefulset.rollout-blocked", "pods/web-0")
    })
    .await;
    say(c, format!("audit: exit {:?}; {hit}", run.status.code()));
    let mut problems = Vec::new();
    check(
        &mut problems,
        hit.contains("kubectl delete pod web-0") && hit.contains(&update),
        format!("names the pod and the update revision: {hit}"),
    );
    check(
        &mut problems,
        run.status.code() == Some(0),
        format!("a warning only: exit 0, got {:?}", run.status.code()),
    );
    verdict(problems);
}

/// A pod deleted gracefully on a node whose Ready condition is Unknown stays Terminating:
/// audit says to confirm the node is down, then force delete with the override.
pub async fn pod_stuck_terminating_on_unknown_node(env: std::sync::Arc<Env>) {
    let c = "audit_pod_stuck_terminating";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let node = "e2e-audit-down";
    let nodes = Request::new("/api/v1/nodes");
    let body = json!({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}});
    let r = send(
        &env.admin,
        nodes.create(&PostParams::default(), to_vec(&body)),
    )
    .await;
    assert!(r.status == 201 || r.status == 409, "create node: {r}");
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let status = json!({"status": {"conditions": [{
        "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
        "lastHeartbeatTime": now, "lastTransitionTime": now
    }]}});
    let r = send(
        &env.admin,
        nodes.patch_subresource(
            "status",
            node,
            &PatchParams::default(),
            &Patch::Merge(&status),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "node status Unknown: {r}");

    create(
        env,
        ns,
        headless_service("db", "db"),
        statefulset("db", 1, "db"),
    )
    .await;
    wait_pods(env, ns, "db", 1).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "db-0"},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let r = send(
        &env.admin,
        pods(ns).create_subresource("binding", "db-0", &PostParams::default(), to_vec(&binding)),
    )
    .await;
    assert_eq!(r.status, 201, "bind db-0 to {node}: {r}");
    let dp = DeleteParams {
        grace_period_seconds: Some(1),
        ..DeleteParams::default()
    };
    let r = send(&env.admin, pods(ns).delete("db-0", &dp)).await;
    assert_eq!(r.status, 200, "graceful delete of db-0: {r}");
    let pod = get_pod(env, ns, "db-0").await;
    say(
        c,
        format!(
            "db-0 on {node} (Ready Unknown) deleted with grace 1: deletionTimestamp {}",
            pod.body["metadata"]["deletionTimestamp"]
        ),
    );

    let policy = policy_file(env);
    let policy = policy.display().to_string();
    let args = ["-n", ns.as_str(), "-o", "json", "--policy", policy.as_str()];
    let (run, hit) = audit_until(env, &args, "statefulset.pod-stuck-terminating", |run| {
        run.has("statefulset.pod-stuck-terminating", "pods/db-0")
    })
    .await;
    say(c, format!("audit: exit {:?}; {hit}", run.status.code()));
    let mut problems = Vec::new();
    check(
        &mut problems,
        hit.contains(node) && hit.contains("Unknown"),
        format!("names the node and its condition: {hit}"),
    );
    check(
        &mut problems,
        hit.contains("Confirm the node is down")
            && hit.contains("stateward.io/allow-force-delete=true")
            && hit.contains("--grace-period=0 --force"),
        format!("says confirm first, then how: {hit}"),
    );
    // Leave nothing bound to the fake node (the pod garbage collector removes its pods).
    let r = send(&env.admin, nodes.delete(node, &DeleteParams::default())).await;
    say(c, format!("deleted node {node}: {}", r.status));
    verdict(problems);
}

/// No provisioner: the controller's claim stays Pending; past the 1 s threshold audit names
/// it and its storage class.
pub async fn pending_claim_is_reported(env: std::sync::Arc<Env>) {
    let c = "audit_pending_claim";
    let env = &*env;
    let ns = &env.namespace(c).await;
    create(
        env,
        ns,
        headless_service("kv", "kv"),
        statefulset("kv", 1, "kv"),
    )
    .await;
    let policy = policy_file(env);
    let policy = policy.display().to_string();
    let args = ["-n", ns.as_str(), "-o", "json", "--policy", policy.as_str()];
    let (run, hit) = audit_until(env, &args, "statefulset.claim-unbound", |run| {
        run.has(
            "statefulset.claim-unbound",
            "persistentvolumeclaims/data-kv-0",
        )
    })
    .await;
    say(c, format!("audit: exit {:?}; {hit}", run.status.code()));
    let mut problems = Vec::new();
    check(
        &mut problems,
        hit.contains("data-kv-0") && hit.contains("storage class `standard`"),
        format!("names the claim and its class: {hit}"),
    );
    check(
        &mut problems,
        run.status.code() == Some(0),
        format!("a warning only: exit 0, got {:?}", run.status.code()),
    );
    verdict(problems);
}

/// Without the right to list nodes, audit exits 2 and names the list that failed.
pub async fn forbidden_list_is_named(env: std::sync::Arc<Env>) {
    let c = "audit_forbidden_list";
    let env = &*env;
    let ns = &env.namespace(c).await;
    // A user with no RBAC at all: the first list (statefulsets) is forbidden.
    let kubeconfig = env.kubeconfig_as("e2e-audit-nobody");
    let mut argv = vec!["audit".to_owned(), "-n".into(), ns.clone()];
    argv.extend(["--kubeconfig".into(), kubeconfig.display().to_string()]);
    let spec = Spec::new(
        &format!("audit-{}", RUNS.fetch_add(1, Ordering::Relaxed)),
        stateward_binary(),
        argv,
    );
    let mut proc = Proc::start_split(&spec, &env.dir);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = proc.exited() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "audit hangs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stderr = std::fs::read_to_string(&proc.log).unwrap_or_default();
    say(c, format!("exit {:?}: {}", status.code(), stderr.trim()));
    let mut problems = Vec::new();
    check(&mut problems, status.code() == Some(2), "exit 2");
    check(
        &mut problems,
        stderr.contains(&format!("cannot list statefulsets in namespace {ns}"))
            && stderr.contains("forbidden"),
        format!("names the list: {stderr}"),
    );
    verdict(problems);
}

// ---- audit --watch: OpenReports reports ----

const CRD_FILE: &str = "charts/stateward/files/openreports-crds.yaml";
const CRD_NAMES: [&str; 2] = ["reports.openreports.io", "clusterreports.openreports.io"];

fn crds() -> Request {
    Request::new("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
}

fn reports(ns: &str) -> Request {
    Request::new(format!(
        "/apis/openreports.io/v1alpha1/namespaces/{ns}/reports"
    ))
}

/// Creates the CRDs the chart ships (generated from stateward's types) and waits until
/// reports can be listed.
pub(crate) async fn install_crds(env: &Env) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD_FILE);
    let text = std::fs::read_to_string(&path).expect("the chart's CRD file");
    let docs = stateward::commands::check::manifest::documents(
        &stateward::commands::check::manifest::Source {
            name: CRD_FILE.into(),
            text,
        },
    );
    for doc in docs {
        let crd = doc.value.expect("CRD YAML parses");
        let r = send(
            &env.admin,
            crds().create(&PostParams::default(), to_vec(&crd)),
        )
        .await;
        assert!(
            r.status == 201 || r.status == 409,
            "create CRD {}: {r}",
            crd["metadata"]["name"]
        );
    }
    wait_for("the reports resource to be served", WAIT, || async move {
        let r = send(&env.admin, reports("default").list(&ListParams::default())).await;
        if r.status == 200 {
            Ok(())
        } else {
            Err(r.to_string())
        }
    })
    .await;
}

/// Deletes the CRDs if they are there and waits until the resource is gone.
async fn remove_crds(env: &Env) {
    for name in CRD_NAMES {
        let r = send(&env.admin, crds().delete(name, &DeleteParams::default())).await;
        assert!(r.status == 200 || r.status == 404, "delete CRD {name}: {r}");
    }
    wait_for("the reports resource to be gone", WAIT, || async move {
        let r = send(&env.admin, reports("default").list(&ListParams::default())).await;
        if r.status == 404 {
            Ok(())
        } else {
            Err(r.to_string())
        }
    })
    .await;
}

/// Waits until a GET of the report answers `status` (200: it exists, 404: it is gone).
async fn wait_report(env: &Env, ns: &str, name: &str, status: u16, what: &str, within: Duration) {
    wait_for(what, within, || async move {
        let r = get_report(env, ns, name).await;
        if r.status == status {
            Ok(())
        } else {
            Err(r.to_string())
        }
    })
    .await;
}

async fn get_report(env: &Env, ns: &str, name: &str) -> crate::k8s::Reply {
    send(&env.admin, reports(ns).get(name, &GetParams::default())).await
}

/// The rule and field of each result.
fn results(report: &Value) -> Vec<(String, String)> {
    report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["rule"].as_str().unwrap_or_default().to_owned(),
                r["properties"]["field"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn has_result(report: &Value, rule: &str, field: &str) -> bool {
    results(report).iter().any(|(r, f)| r == rule && f == field)
}

/// A running `stateward audit --watch --interval 1s` in one namespace, with its own Lease
/// there and its admin port.
pub(crate) struct AuditWatch {
    proc: Proc,
    pub(crate) admin: std::net::SocketAddr,
}

impl AuditWatch {
    pub(crate) fn start(env: &Env, ns: &str, extra: &[&str]) -> AuditWatch {
        let admin: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut argv: Vec<String> = [
            "audit",
            "--watch",
            "--interval",
            "1s",
            "-n",
            ns,
            "--lease-name",
            "stateward-audit-e2e",
            "--lease-namespace",
            ns,
            "--log-format",
            "json",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        argv.extend(["--admin-listen".into(), admin.to_string()]);
        argv.extend([
            "--kubeconfig".into(),
            env.admin_kubeconfig.display().to_string(),
        ]);
        argv.extend(extra.iter().map(|a| (*a).to_owned()));
        let name = format!("audit-watch-{}", RUNS.fetch_add(1, Ordering::Relaxed));
        AuditWatch {
            proc: Proc::start(&Spec::new(&name, stateward_binary(), argv), &env.dir),
            admin,
        }
    }

    fn log(&self) -> Vec<Value> {
        self.proc.json_lines()
    }

    fn lines(&self, needle: &str) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|l| {
                l["fields"]["message"]
                    .as_str()
                    .or(l["message"].as_str())
                    .is_some_and(|m| m.contains(needle))
            })
            .collect()
    }

    /// Passes completed so far.
    fn passes(&self) -> usize {
        self.lines("audit pass")
            .iter()
            .filter(|l| l["message"] == "audit pass" || l["fields"]["message"] == "audit pass")
            .count()
    }

    fn assert_alive(&mut self) {
        if let Some(status) = self.proc.exited() {
            panic!(
                "audit --watch exited {status}; log {}",
                self.proc.log.display()
            );
        }
    }

    /// Waits until `n` more passes than `after` have completed.
    pub(crate) async fn wait_passes(&mut self, after: usize, n: usize) {
        let started = Instant::now();
        while self.passes() < after + n {
            self.assert_alive();
            assert!(
                started.elapsed() < WAIT,
                "fewer than {n} passes after {after} within {WAIT:?}; log {}",
                self.proc.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = crate::k8s::http_get(self.admin, "/metrics").await.ok()?;
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    pub(crate) async fn stop(&mut self) -> ExitStatus {
        self.proc.signal("TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.proc.exited() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "audit --watch still running 10 s after SIGTERM; log {}",
                self.proc.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn crd_warnings(watch: &AuditWatch) -> Vec<Value> {
    watch
        .lines("OpenReports CRDs")
        .into_iter()
        .filter(|l| l["level"] == "WARN")
        .collect()
}

/// Without the OpenReports CRDs `audit --watch` runs on with logs and metrics and says once
/// how to install them; CRDs installed later are picked up without a restart.
pub async fn watch_without_crds_then_with(env: std::sync::Arc<Env>) {
    let c = "audit_watch_without_crds";
    let env = &*env;
    remove_crds(env).await;
    let ns = &env.namespace(c).await;
    crate::cases::create_set(env, ns, "solo", 1).await;
    let mut watch = AuditWatch::start(env, ns, &[]);
    watch.wait_passes(0, 3).await;
    watch.assert_alive();
    let warnings = crd_warnings(&watch);
    say(
        c,
        format!(
            "{} passes without CRDs; warnings: {:?}",
            watch.passes(),
            warnings
                .iter()
                .map(|w| format!("{} {}", w["level"], w["message"]))
                .collect::<Vec<_>>()
        ),
    );
    let mut problems = Vec::new();
    check(
        &mut problems,
        warnings.len() == 1,
        format!("exactly one warning about the CRDs: {warnings:?}"),
    );
    check(
        &mut problems,
        warnings
            .first()
            .is_some_and(|w| w.to_string().contains("--print-crds")),
        "the warning says how to install them",
    );
    let enabled = watch.metric("stateward_audit_reports_enabled").await;
    let last = watch
        .metric("stateward_audit_last_pass_timestamp_seconds")
        .await;
    say(c, format!("reports_enabled={enabled:?} last_pass={last:?}"));
    check(&mut problems, enabled == Some(0.0), "reports_enabled 0");
    check(
        &mut problems,
        last.is_some_and(|t| t > 1.7e9),
        "the last pass is timestamped",
    );

    install_crds(env).await;
    let installed = Instant::now();
    let (ns_ref, env_ref) = (ns.as_str(), env);
    wait_report(
        env_ref,
        ns_ref,
        "stateward-sts-solo",
        200,
        "the report of solo once the CRDs exist",
        WAIT,
    )
    .await;
    say(
        c,
        format!(
            "CRDs installed: report written {:.1} s later",
            installed.elapsed().as_secs_f64()
        ),
    );
    check(
        &mut problems,
        crd_warnings(&watch).len() == 1,
        "still one warning",
    );
    check(
        &mut problems,
        watch.lines("CRDs are served").len() == 1,
        "the CRDs are noticed once",
    );
    let status = watch.stop().await;
    check(
        &mut problems,
        status.success(),
        format!("exit 0 on SIGTERM: {status}"),
    );
    verdict(problems);
}

/// Reports per set, owned by it, untouched while nothing changes (resourceVersion kept over
/// several passes although the claim-unbound messages count the seconds), rewritten when a
/// finding appears or clears, an orphaned-claims report while there is an orphan, and the
/// garbage collector removing the report of a deleted set.
pub async fn watch_keeps_reports(env: std::sync::Arc<Env>) {
    let c = "audit_watch_reports";
    let env = &*env;
    install_crds(env).await;
    let ns = &env.namespace(c).await;
    let web = crate::cases::create_set(env, ns, "web", 1).await;
    let db = crate::cases::create_set(env, ns, "db", 1).await;
    let uid = |r: &crate::k8s::Reply| r.body["metadata"]["uid"].as_str().unwrap_or("").to_owned();
    let (web_uid, db_uid) = (uid(&web), uid(&db));
    let policy = policy_file(env).display().to_string();
    let mut watch = AuditWatch::start(env, ns, &["--policy", &policy]);
    let (ns_ref, env_ref) = (ns.as_str(), env);

    // Both reports with their set's claim Pending past the 1 s threshold. db's claim
    // crosses it a moment after web's (db is made second) and its report is rewritten
    // then, so the "nothing changes" baseline below waits for both.
    let unbound = |set: &'static str| async move {
        let what = format!("{set}'s report with claim-unbound");
        wait_for(&what, WAIT, move || async move {
            let r = get_report(env_ref, ns_ref, &format!("stateward-sts-{set}")).await;
            let claim = format!("persistentvolumeclaims/data-{set}-0");
            if r.status == 200 && has_result(&r.body, "statefulset.claim-unbound", &claim) {
                Ok(r.body)
            } else {
                Err(r.to_string())
            }
        })
        .await
    };
    let web_report = unbound("web").await;
    unbound("db").await;
    let db_report = get_report(env, ns, "stateward-sts-db").await;
    say(
        c,
        format!(
            "web: summary {} results {:?}",
            web_report["summary"],
            results(&web_report)
        ),
    );
    let mut problems = Vec::new();
    check(
        &mut problems,
        db_report.status == 200,
        format!("db's report: {db_report}"),
    );
    let owner = &web_report["metadata"]["ownerReferences"][0];
    check(
        &mut problems,
        owner["uid"] == web_uid.as_str()
            && owner["kind"] == "StatefulSet"
            && owner["controller"] == false
            && owner["blockOwnerDeletion"] == false,
        format!("owned by web ({web_uid}): {owner}"),
    );
    check(
        &mut problems,
        db_report.body["metadata"]["ownerReferences"][0]["uid"] == db_uid.as_str(),
        "db's report owned by db",
    );
    check(
        &mut problems,
        web_report["scope"]["uid"] == web_uid.as_str()
            && web_report["source"] == "stateward"
            && web_report["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "stateward"
            && web_report["metadata"]["annotations"]["stateward.io/results-hash"].is_string(),
        format!("scope, source, label, hash: {web_report}"),
    );
    check(
        &mut problems,
        web_report["summary"]["pass"]
            .as_i64()
            .is_some_and(|p| p > 5)
            && web_report["summary"]["warn"]
                .as_i64()
                .is_some_and(|w| w >= 1),
        format!(
            "summary counts passes and warnings: {}",
            web_report["summary"]
        ),
    );
    let managers: Vec<&str> = web_report["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    check(
        &mut problems,
        managers == ["stateward-audit"],
        format!("one field manager: {managers:?}"),
    );

    // Unchanged fleet: no write over several passes.
    let rv = |v: &Value| {
        v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let (web_rv, db_rv) = (rv(&web_report), rv(&db_report.body));
    let writes = watch
        .metric("stateward_audit_report_writes_total{action=\"apply\",result=\"ok\"}")
        .await;
    let before = watch.passes();
    watch.wait_passes(before, 3).await;
    let web_after = get_report(env, ns, "stateward-sts-web").await;
    let db_after = get_report(env, ns, "stateward-sts-db").await;
    let writes_after = watch
        .metric("stateward_audit_report_writes_total{action=\"apply\",result=\"ok\"}")
        .await;
    say(
        c,
        format!(
            "after {} more passes: web rv {web_rv} -> {}, db rv {db_rv} -> {}, applies {writes:?} -> {writes_after:?}",
            watch.passes() - before,
            rv(&web_after.body),
            rv(&db_after.body)
        ),
    );
    check(
        &mut problems,
        rv(&web_after.body) == web_rv && rv(&db_after.body) == db_rv,
        "resourceVersions kept while nothing changes",
    );
    check(
        &mut problems,
        writes == writes_after,
        "no apply while nothing changes",
    );

    // A finding appears: a second replica whose claim stays Pending.
    let scale = |n: i32| json!({"spec": {"replicas": n}});
    let r = send(
        &env.admin,
        statefulsets(ns).patch("web", &PatchParams::default(), &Patch::Merge(&scale(2))),
    )
    .await;
    assert_eq!(r.status, 200, "scale web to 2: {r}");
    let web_rv_ref = web_rv.as_str();
    let grown = wait_for("web's report to name data-web-1", WAIT, || async move {
        let r = get_report(env_ref, ns_ref, "stateward-sts-web").await;
        if has_result(
            &r.body,
            "statefulset.claim-unbound",
            "persistentvolumeclaims/data-web-1",
        ) {
            Ok(r.body)
        } else {
            Err(format!("{:?}", results(&r.body)))
        }
    })
    .await;
    check(
        &mut problems,
        rv(&grown) != web_rv_ref,
        "rewritten when a finding appears",
    );
    // Scaled back: data-web-1 is an orphan, in the namespace's orphaned-claims report.
    let r = send(
        &env.admin,
        statefulsets(ns).patch("web", &PatchParams::default(), &Patch::Merge(&scale(1))),
    )
    .await;
    assert_eq!(r.status, 200, "scale web to 1: {r}");
    let orphans = wait_for("the orphaned-claims report", WAIT, || async move {
        let r = get_report(env_ref, ns_ref, "stateward-orphaned-claims").await;
        if has_result(
            &r.body,
            "statefulset.orphaned-claim",
            "persistentvolumeclaims/data-web-1",
        ) {
            Ok(r.body)
        } else {
            Err(r.to_string())
        }
    })
    .await;
    say(
        c,
        format!(
            "scaled 2 -> 1: orphaned-claims report {:?} properties {}",
            results(&orphans),
            orphans["results"][0]["properties"]
        ),
    );
    check(
        &mut problems,
        orphans["results"][0]["properties"]["reason"] == "scaled-down"
            && orphans["results"][0]["resources"][0]["name"] == "data-web-1"
            && orphans["metadata"]["ownerReferences"].is_null(),
        "the orphan, its reason and claim; no owner",
    );
    // The orphan is deleted: the findings clear and the orphaned-claims report goes.
    let claims = Request::new(format!("/api/v1/namespaces/{ns}/persistentvolumeclaims"));
    let r = send(
        &env.admin,
        claims.delete("data-web-1", &DeleteParams::default()),
    )
    .await;
    assert_eq!(r.status, 200, "delete data-web-1: {r}");
    wait_for("the orphaned-claims report to go", WAIT, || async move {
        let r = get_report(env_ref, ns_ref, "stateward-orphaned-claims").await;
        if r.status == 404 {
            Ok(())
        } else {
            Err(r.to_string())
        }
    })
    .await;
    let cleared = wait_for("web's report without data-web-1", WAIT, || async move {
        let r = get_report(env_ref, ns_ref, "stateward-sts-web").await;
        if results(&r.body)
            .iter()
            .any(|(_, f)| f.ends_with("data-web-1"))
        {
            Err(format!("{:?}", results(&r.body)))
        } else {
            Ok(r.body)
        }
    })
    .await;
    say(
        c,
        format!("orphan deleted: web's results {:?}", results(&cleared)),
    );
    let status = watch.stop().await;
    check(&mut problems, status.success(), format!("exit 0: {status}"));

    // With the watch stopped, the garbage collector removes the report of a deleted set.
    let r = send(
        &env.admin,
        statefulsets(ns).delete("db", &DeleteParams::default()),
    )
    .await;
    assert_eq!(r.status, 200, "delete db: {r}");
    let deleted = Instant::now();
    wait_report(
        env_ref,
        ns_ref,
        "stateward-sts-db",
        404,
        "the garbage collector to delete db's report",
        Duration::from_secs(90),
    )
    .await;
    say(
        c,
        format!(
            "db deleted: its report collected {:.1} s later",
            deleted.elapsed().as_secs_f64()
        ),
    );
    verdict(problems);
}
