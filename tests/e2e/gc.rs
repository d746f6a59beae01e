//! The orphaned-claim collector (`stateward gc`, one-shot and `--watch`) on the real control
//! plane. Every run of the binary goes through the process wrapper, logs to the work
//! directory (`gc-*.log`), and is stopped with the case. No provisioner: claims stay
//! `Pending`, which changes nothing for the collector.
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::core::Request;
use kube::core::params::{DeleteParams, GetParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::cases::{
    AbortOnDrop, WAIT, check, create_set, get_pod, run_on_node, say, verdict, wait_pod_replaced,
    wait_pods,
};
use crate::harness::{Env, b64, free_port, stateward_binary};
use crate::k8s::{Reply, http_get, pods, send, statefulsets, to_vec, wait_for};
use crate::process::{Proc, Spec};

const KEEP: &str = "stateward.io/keep";
const OPT_IN: &str = "stateward.io/collect-orphaned-claims";
const SINCE: &str = "stateward.io/orphaned-since";
const PROVENANCE_UID: &str = "stateward.io/statefulset-uid";

fn claims(ns: &str) -> Request {
    Request::new(format!("/api/v1/namespaces/{ns}/persistentvolumeclaims"))
}

fn leases(ns: &str) -> Request {
    Request::new(format!(
        "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
    ))
}

/// Distinct log names for every run of the binary.
static RUNS: AtomicUsize = AtomicUsize::new(0);

fn run_name(what: &str) -> String {
    format!("gc-{what}-{}", RUNS.fetch_add(1, Ordering::Relaxed))
}

/// A finished one-shot `stateward gc`.
struct GcRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl GcRun {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("gc -o json printed no JSON ({e}): {}", self.stdout))
    }

    /// The candidates' claim names.
    fn candidates(&self) -> Vec<String> {
        self.json()["candidates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["claim"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Runs `stateward gc ARGS --kubeconfig FILE` to the end.
async fn gc_once(env: &Env, kubeconfig: &Path, args: &[&str]) -> GcRun {
    let mut argv = vec!["gc".to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    argv.extend(["--kubeconfig".into(), kubeconfig.display().to_string()]);
    let spec = Spec::new(&run_name("once"), stateward_binary(), argv);
    let mut proc = Proc::start_split(&spec, &env.dir);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = proc.exited() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stateward {args:?} still running after 60 s; log {}",
            proc.log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    GcRun {
        status,
        stdout: proc.out.as_deref().map(read).unwrap_or_default(),
        stderr: read(&proc.log),
    }
}

/// A running `stateward gc --watch` with its admin port.
pub(crate) struct GcWatch {
    label: String,
    proc: Proc,
    pub(crate) admin: SocketAddr,
}

impl GcWatch {
    /// `gc --watch --interval 1 --log-format json --admin-listen 127.0.0.1:PORT ARGS`.
    pub(crate) fn start(
        env: &Env,
        label: &str,
        kubeconfig: &Path,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> GcWatch {
        let port = free_port();
        let admin: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut argv: Vec<String> = [
            "gc",
            "--watch",
            "--interval",
            "1",
            "--log-format",
            "json",
            "--admin-listen",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        argv.push(admin.to_string());
        argv.extend(["--kubeconfig".into(), kubeconfig.display().to_string()]);
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        let mut spec = Spec::new(&run_name(label), stateward_binary(), argv);
        for (k, v) in vars {
            spec = spec.env(k, v);
        }
        GcWatch {
            label: label.to_owned(),
            proc: Proc::start(&spec, &env.dir),
            admin,
        }
    }

    /// The JSON log lines so far.
    fn log(&self) -> Vec<Value> {
        self.proc.json_lines()
    }

    fn lines(&self, message: &str) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(message)))
            .collect()
    }

    /// The claims this process logged as deleted.
    fn deleted(&self) -> Vec<String> {
        self.lines("deleted orphaned claim")
            .iter()
            .filter_map(|l| l["claim"].as_str().map(str::to_owned))
            .collect()
    }

    /// The claims this process logged as deleted, once it logged `expected` (the log line
    /// follows the API's answer by a moment), or what it logged within 5 s.
    async fn deleted_once(&self, expected: &str) -> Vec<String> {
        let started = Instant::now();
        loop {
            let deleted = self.deleted();
            if deleted.iter().any(|d| d == expected) || started.elapsed() > Duration::from_secs(5) {
                return deleted;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A sample of `/metrics` (first line starting with `name`).
    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = http_get(self.admin, "/metrics").await.ok()?;
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    pub(crate) async fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.proc.exited() {
                panic!(
                    "gc --watch ({}) exited {status}; log {}",
                    self.label,
                    self.proc.log.display()
                );
            }
            if let Ok((200, _)) = http_get(self.admin, "/readyz").await {
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "gc --watch ({}) not ready; log {}",
                self.label,
                self.proc.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the exit; polls every 20 ms so the time of the exit is precise.
    async fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Instant) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.proc.exited() {
                return (status, Instant::now());
            }
            assert!(
                started.elapsed() < limit,
                "gc --watch ({}) still running {limit:?} after the signal; log {}",
                self.label,
                self.proc.log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM; the exit status.
    pub(crate) async fn stop(&mut self) -> ExitStatus {
        self.proc.signal("TERM");
        self.wait_exit(Duration::from_secs(10)).await.0
    }
}

async fn get_claim(env: &Env, ns: &str, name: &str) -> Reply {
    send(&env.admin, claims(ns).get(name, &GetParams::default())).await
}

fn annotation(claim: &Reply, key: &str) -> Option<String> {
    claim.body["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_owned)
}

/// Gone, or on its way (a deletionTimestamp while the protection finalizer is removed).
fn deleted(claim: &Reply) -> bool {
    claim.status == 404 || claim.body["metadata"]["deletionTimestamp"].is_string()
}

fn claim_state(claim: &Reply) -> String {
    if claim.status == 404 {
        return "gone".into();
    }
    format!(
        "HTTP {} deletionTimestamp={} annotations={}",
        claim.status,
        claim.body["metadata"]["deletionTimestamp"],
        claim.body["metadata"]["annotations"]
    )
}

/// Waits until every named claim exists (the StatefulSet controller creates them).
async fn wait_claims(env: &Env, ns: &str, names: &[&str]) {
    wait_for(&format!("claims {names:?} in {ns}"), WAIT, || async move {
        let r = send(&env.admin, claims(ns).list(&ListParams::default())).await;
        let have: Vec<&str> = r.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["metadata"]["name"].as_str())
            .collect();
        if names.iter().all(|n| have.contains(n)) {
            Ok(())
        } else {
            Err(format!("{have:?}"))
        }
    })
    .await
}

/// Waits until the claim is deleted; returns when it was first seen so.
pub(crate) async fn wait_deleted(
    env: &Env,
    ns: &str,
    name: &str,
    limit: Duration,
) -> jiff::Timestamp {
    wait_for(
        &format!("claim {ns}/{name} deleted"),
        limit,
        || async move {
            let r = get_claim(env, ns, name).await;
            if deleted(&r) {
                Ok(jiff::Timestamp::now())
            } else {
                Err(claim_state(&r))
            }
        },
    )
    .await
}

/// Waits until the claim carries `key` (with `value` if given); returns the value.
async fn wait_annotation(
    env: &Env,
    ns: &str,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> String {
    wait_for(
        &format!("annotation {key}={value:?} on {ns}/{name}"),
        WAIT,
        || async move {
            let r = get_claim(env, ns, name).await;
            match annotation(&r, key) {
                Some(v) if value.is_none_or(|want| want == v) => Ok(v),
                _ => Err(claim_state(&r)),
            }
        },
    )
    .await
}

async fn patch_json(env: &Env, request: Request, name: &str, patch: Value) -> Reply {
    send(
        &env.admin,
        request.patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await
}

pub(crate) async fn scale(env: &Env, ns: &str, set: &str, replicas: i32) {
    let r = patch_json(
        env,
        statefulsets(ns),
        set,
        json!({"spec": {"replicas": replicas}}),
    )
    .await;
    assert_eq!(r.status, 200, "scale {ns}/{set} to {replicas}: {r}");
}

pub(crate) async fn opt_in(env: &Env, ns: &str, set: &str) {
    let r = patch_json(
        env,
        statefulsets(ns),
        set,
        json!({"metadata": {"annotations": {OPT_IN: "true"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "opt {ns}/{set} in: {r}");
}

async fn set_uid(env: &Env, ns: &str, set: &str) -> String {
    let r = send(&env.admin, statefulsets(ns).get(set, &GetParams::default())).await;
    r.body["metadata"]["uid"]
        .as_str()
        .unwrap_or_else(|| panic!("set {ns}/{set}: {r}"))
        .to_owned()
}

/// A set of `replicas` pods with their claims `data-<set>-<i>`, every pod created.
pub(crate) async fn set_with_claims(env: &Env, ns: &str, set: &str, replicas: i32) -> Vec<String> {
    create_set(env, ns, set, replicas).await;
    wait_pods(env, ns, set, replicas as usize).await;
    let names: Vec<String> = (0..replicas).map(|i| format!("data-{set}-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_claims(env, ns, &refs).await;
    names
}

/// A standalone pod mounting `claim`, bound to the node and Running as the kubelet says.
async fn pod_mounting(env: &Env, ns: &str, name: &str, claim: &str) -> String {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "infinity"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        }
    });
    let r = send(
        &env.admin,
        pods(ns).create(&PostParams::default(), to_vec(&pod)),
    )
    .await;
    assert_eq!(r.status, 201, "create pod {ns}/{name}: {r}");
    run_on_node(env, ns, name).await
}

/// Deletes a scheduled pod as a user and then as the kubelet (grace 0, uid precondition).
async fn delete_scheduled_pod(env: &Env, ns: &str, name: &str, uid: &str) {
    let r = send(&env.admin, pods(ns).delete(name, &DeleteParams::default())).await;
    assert_eq!(r.status, 200, "delete pod {ns}/{name}: {r}");
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::core::params::Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let r = send(&env.kubelet, pods(ns).delete(name, &dp)).await;
    assert_eq!(
        r.status, 200,
        "the kubelet's final delete of {ns}/{name}: {r}"
    );
    wait_pod_replaced(env, ns, name, uid).await;
}

async fn lease_holder(env: &Env, ns: &str, name: &str) -> Option<String> {
    let r = send(&env.admin, leases(ns).get(name, &GetParams::default())).await;
    r.body["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

// The plan reads only and says "verified" for a live set's scaled-down claim; --delete
// deletes it, keeps the `keep` claim, honours --min-age; a read-only identity (the chart's
// plan CronJob) can plan but not delete.
pub async fn plan_and_delete_scaled_down_claim(env: Arc<Env>) {
    let c = "gc_plan_and_delete_scaled_down_claim";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let admin = env.admin_kubeconfig.as_path();
    let mut problems = Vec::new();
    set_with_claims(env, ns, "db", 3).await;
    let r = patch_json(
        env,
        claims(ns),
        "data-db-1",
        json!({"metadata": {"annotations": {KEEP: "true"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "annotate keep: {r}");
    scale(env, ns, "db", 1).await;
    wait_pods(env, ns, "db", 1).await;
    say(
        c,
        "set db 3 -> 1; claims data-db-0..2 without annotations, data-db-1 has stateward.io/keep",
    );

    let before = get_claim(env, ns, "data-db-2").await;
    let plan = gc_once(env, admin, &["-n", ns, "-o", "json"]).await;
    let doc = plan.json();
    say(c, format!("gc -n {ns} -o json: {} {doc}", plan.status));
    check(
        &mut problems,
        plan.status.success() && plan.candidates() == ["data-db-2"],
        format!(
            "the plan should list only data-db-2, got {:?}",
            plan.candidates()
        ),
    );
    let row = &doc["candidates"][0];
    check(
        &mut problems,
        row["verified"] == true
            && row["reason"] == "scaled-down"
            && row["statefulset"] == "db"
            && row["ordinal"] == 2,
        format!("data-db-2 should be a verified scaled-down claim of db (ordinal 2): {row}"),
    );
    let text = gc_once(env, admin, &["-n", ns]).await;
    say(c, format!("gc -n {ns}:\n{}", text.stdout.trim_end()));
    let after = get_claim(env, ns, "data-db-2").await;
    check(
        &mut problems,
        before.body["metadata"]["resourceVersion"] == after.body["metadata"]["resourceVersion"],
        "the plan changed data-db-2",
    );

    let young = gc_once(env, admin, &["-n", ns, "--min-age", "1h", "--delete"]).await;
    say(
        c,
        format!("gc --min-age 1h --delete: {}", young.stdout.trim_end()),
    );
    check(
        &mut problems,
        young.status.success() && young.stdout.contains("no orphaned claims"),
        format!(
            "--min-age 1h should leave the young claim: {}",
            young.stdout
        ),
    );

    // The chart's plan CronJob identity: get/list/watch only.
    let reader = "e2e-gc-plan-reader";
    read_only_access(env, ns, reader).await;
    let reader_config = env.kubeconfig_as(reader);
    let plan = gc_once(env, &reader_config, &["-n", ns, "-o", "json"]).await;
    say(
        c,
        format!(
            "as {reader} (get/list/watch only): plan {} candidates {:?}",
            plan.status,
            plan.candidates()
        ),
    );
    check(
        &mut problems,
        plan.status.success() && plan.candidates() == ["data-db-2"],
        format!(
            "a read-only identity should plan: {} {}",
            plan.stdout, plan.stderr
        ),
    );
    let denied = gc_once(env, &reader_config, &["-n", ns, "--delete"]).await;
    say(
        c,
        format!(
            "as {reader}: --delete exit {:?}: {}",
            denied.status.code(),
            denied.stdout.lines().last().unwrap_or_default()
        ),
    );
    check(
        &mut problems,
        denied.status.code() == Some(1) && denied.stdout.contains("forbidden"),
        format!(
            "a read-only identity cannot delete (exit 1): {}",
            denied.stdout
        ),
    );

    let delete = gc_once(env, admin, &["-n", ns, "--delete"]).await;
    say(
        c,
        format!(
            "gc -n {ns} --delete: exit {:?}\n{}",
            delete.status.code(),
            delete.stdout.trim_end()
        ),
    );
    check(
        &mut problems,
        delete.status.success() && delete.stdout.contains(&format!("deleted  {ns}/data-db-2")),
        "--delete should delete data-db-2",
    );
    wait_deleted(env, ns, "data-db-2", WAIT).await;
    for kept in ["data-db-0", "data-db-1"] {
        let r = get_claim(env, ns, kept).await;
        check(
            &mut problems,
            r.status == 200 && !deleted(&r),
            format!("{kept} must stay: {}", claim_state(&r)),
        );
    }
    say(
        c,
        "data-db-2 deleted; data-db-0 (in range) and data-db-1 (keep) stay",
    );
    verdict(problems);
}

/// A ClusterRole with what the chart gives the plan CronJob, bound to `user`.
async fn read_only_access(env: &Env, _ns: &str, user: &str) {
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": user},
        "rules": [
            {"apiGroups": [""], "resources": ["persistentvolumeclaims", "pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get", "list", "watch"]}
        ]
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]
    });
    for (path, body) in [
        ("/apis/rbac.authorization.k8s.io/v1/clusterroles", role),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            binding,
        ),
    ] {
        let r = send(
            &env.admin,
            Request::new(path).create(&PostParams::default(), to_vec(&body)),
        )
        .await;
        assert!(r.status == 201 || r.status == 409, "{path}: {r}");
    }
}

// A claim mounted by a scheduled, Running pod is never a candidate, whatever its ordinal
// or its set; the protection ends with the pod.
pub async fn mounted_claim_is_never_deleted(env: Arc<Env>) {
    let c = "gc_mounted_claim_is_never_deleted";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let admin = env.admin_kubeconfig.as_path();
    let mut problems = Vec::new();
    set_with_claims(env, ns, "db", 3).await;
    let uid = run_on_node(env, ns, "db-2").await;
    scale(env, ns, "db", 1).await;
    // db-1 was never scheduled: gone at once. db-2 is scheduled: Terminating, still
    // mounting data-db-2 until the kubelet finishes.
    wait_for("db-1 gone", WAIT, || async move {
        let r = get_pod(env, ns, "db-1").await;
        if r.status == 404 {
            Ok(())
        } else {
            Err(r.to_string())
        }
    })
    .await;
    let db2 = get_pod(env, ns, "db-2").await;
    say(
        c,
        format!(
            "set db 3 -> 1 with db-2 bound to the node and Running: db-2 deletionTimestamp={}",
            db2.body["metadata"]["deletionTimestamp"]
        ),
    );
    // A claim that looks like one of a deleted set, mounted by a running pod; and one not
    // mounted (the control).
    for name in ["data-old-0", "data-old-1"] {
        let claim = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "labels": {"app": "old"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        });
        let r = send(
            &env.admin,
            claims(ns).create(&PostParams::default(), to_vec(&claim)),
        )
        .await;
        assert_eq!(r.status, 201, "create claim {name}: {r}");
    }
    let reader_uid = pod_mounting(env, ns, "reader", "data-old-0").await;

    let run = gc_once(
        env,
        admin,
        &["-n", ns, "--delete", "--include-unverified", "-o", "json"],
    )
    .await;
    let doc = run.json();
    say(c, format!("gc --delete --include-unverified: {doc}"));
    let mut planned = run.candidates();
    planned.sort();
    check(
        &mut problems,
        planned == ["data-db-1", "data-old-1"],
        format!("only data-db-1 and data-old-1 should be candidates, got {planned:?}"),
    );
    for mounted in ["data-db-2", "data-old-0"] {
        let r = get_claim(env, ns, mounted).await;
        check(
            &mut problems,
            r.status == 200 && !deleted(&r),
            format!("mounted {mounted} must stay: {}", claim_state(&r)),
        );
    }

    // The kubelet finishes db-2: the claim is an orphan now.
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::core::params::Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let r = send(&env.kubelet, pods(ns).delete("db-2", &dp)).await;
    assert_eq!(r.status, 200, "the kubelet's final delete of db-2: {r}");
    wait_pod_replaced(env, ns, "db-2", &uid).await;
    let run = gc_once(env, admin, &["-n", ns, "-o", "json"]).await;
    say(
        c,
        format!(
            "after the kubelet removed db-2: candidates {:?}",
            run.candidates()
        ),
    );
    check(
        &mut problems,
        run.candidates().contains(&"data-db-2".to_owned())
            && !run.candidates().contains(&"data-old-0".to_owned()),
        format!(
            "data-db-2 should be a candidate once its pod is gone, data-old-0 not while reader runs: {:?}",
            run.candidates()
        ),
    );
    delete_scheduled_pod(env, ns, "reader", &reader_uid).await;
    verdict(problems);
}

// A set deleted and re-created under the same name keeps its claims; provenance moves to
// the new set.
pub async fn recreated_set_keeps_its_claims(env: Arc<Env>) {
    let c = "gc_recreated_set_keeps_its_claims";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let admin = env.admin_kubeconfig.as_path();
    let mut problems = Vec::new();
    set_with_claims(env, ns, "db", 2).await;
    let old_uid = set_uid(env, ns, "db").await;
    let args = ["-n", ns, "--leader-elect=false", "--grace", "1h"];
    let mut watch = GcWatch::start(env, "provenance", admin, &args, &[]);
    watch.wait_ready().await;
    for claim in ["data-db-0", "data-db-1"] {
        wait_annotation(env, ns, claim, PROVENANCE_UID, Some(&old_uid)).await;
    }
    let status = watch.stop().await;
    say(
        c,
        format!("gc --watch wrote provenance (uid {old_uid}) on both claims; SIGTERM: {status}"),
    );

    let r = send(
        &env.admin,
        statefulsets(ns).delete("db", &DeleteParams::background()),
    )
    .await;
    assert_eq!(r.status, 200, "delete set: {r}");
    wait_pods(env, ns, "db", 0).await;
    let plan = gc_once(env, admin, &["-n", ns, "-o", "json"]).await;
    let doc = plan.json();
    say(c, format!("set deleted: plan {doc}"));
    let rows = doc["candidates"].as_array().cloned().unwrap_or_default();
    check(
        &mut problems,
        rows.len() == 2
            && rows
                .iter()
                .all(|r| r["reason"] == "set-deleted" && r["verified"] == true),
        format!("both claims should be verified set-deleted orphans: {doc}"),
    );

    let r = send(
        &env.admin,
        statefulsets(ns).create(
            &PostParams::default(),
            to_vec(&crate::k8s::statefulset("db", 2, "db")),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "re-create set: {r}");
    let new_uid = set_uid(env, ns, "db").await;
    wait_pods(env, ns, "db", 2).await;
    let plan = gc_once(env, admin, &["-n", ns]).await;
    say(
        c,
        format!(
            "set re-created (uid {new_uid}): plan: {}",
            plan.stdout.trim_end()
        ),
    );
    check(
        &mut problems,
        plan.stdout.contains("no orphaned claims"),
        "the re-created set owns its claims again",
    );
    let mut watch = GcWatch::start(env, "provenance", admin, &args, &[]);
    watch.wait_ready().await;
    for claim in ["data-db-0", "data-db-1"] {
        wait_annotation(env, ns, claim, PROVENANCE_UID, Some(&new_uid)).await;
    }
    let status = watch.stop().await;
    say(
        c,
        format!("gc --watch moved the provenance to uid {new_uid}; SIGTERM: {status}"),
    );
    scale(env, ns, "db", 1).await;
    wait_pods(env, ns, "db", 1).await;
    let plan = gc_once(env, admin, &["-n", ns, "-o", "json"]).await;
    let doc = plan.json();
    say(c, format!("re-created set scaled 2 -> 1: plan {doc}"));
    let row = &doc["candidates"][0];
    check(
        &mut problems,
        plan.candidates() == ["data-db-1"]
            && row["reason"] == "scaled-down"
            && row["verified"] == true,
        format!("data-db-1 should be a verified scaled-down claim of the new set: {doc}"),
    );
    for claim in ["data-db-0", "data-db-1"] {
        let r = get_claim(env, ns, claim).await;
        check(
            &mut problems,
            r.status == 200 && !deleted(&r),
            format!("{claim} kept: {}", claim_state(&r)),
        );
    }
    verdict(problems);
}

// gc --watch --grace 5s on an opted-in set: only the orphan, only after the grace; a
// mounted claim and the orphan of a set that did not opt in stay.
pub async fn watch_deletes_only_the_orphan_after_grace(env: Arc<Env>) {
    let c = "gc_watch_deletes_only_the_orphan_after_grace";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let admin = env.admin_kubeconfig.as_path();
    let mut problems = Vec::new();
    set_with_claims(env, ns, "db", 3).await;
    set_with_claims(env, ns, "web", 2).await;
    opt_in(env, ns, "db").await;
    run_on_node(env, ns, "db-2").await;
    let mut watch = GcWatch::start(env, "grace", admin, &["-n", ns, "--grace", "5s"], &[]);
    watch.wait_ready().await;
    wait_annotation(env, ns, "data-db-2", PROVENANCE_UID, None).await;
    scale(env, ns, "db", 1).await;
    scale(env, ns, "web", 1).await;
    say(
        c,
        "db (opted in) 3 -> 1 with db-2 scheduled and Running; web (not opted in) 2 -> 1",
    );
    let since = wait_annotation(env, ns, "data-db-1", SINCE, None).await;
    let since_ts: jiff::Timestamp = since.parse().expect("RFC 3339 orphaned-since");
    let gone = wait_deleted(env, ns, "data-db-1", WAIT).await;
    let after = gone.duration_since(since_ts).as_secs_f64();
    say(
        c,
        format!("data-db-1 orphaned-since {since}, deleted {after:.1} s later (grace 5 s)"),
    );
    check(
        &mut problems,
        after >= 5.0,
        format!("deleted {after:.1} s after orphaned-since: before the grace"),
    );
    check(
        &mut problems,
        after <= 10.0,
        format!("deleted only {after:.1} s after orphaned-since"),
    );
    // Two more passes: nothing else goes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (claim, why) in [
        ("data-db-0", "in range"),
        ("data-db-2", "mounted by the Terminating pod db-2"),
        ("data-web-1", "web did not opt in"),
        ("data-web-0", "in range"),
    ] {
        let r = get_claim(env, ns, claim).await;
        say(c, format!("{claim} ({why}): {}", claim_state(&r)));
        check(
            &mut problems,
            r.status == 200 && !deleted(&r),
            format!("{claim} ({why}) must stay: {}", claim_state(&r)),
        );
    }
    let web = get_claim(env, ns, "data-web-1").await;
    check(
        &mut problems,
        annotation(&web, SINCE).is_some(),
        "data-web-1 is marked orphaned (not deleted: no opt-in)",
    );
    let logged = watch.deleted_once(&format!("{ns}/data-db-1")).await;
    check(
        &mut problems,
        logged == [format!("{ns}/data-db-1")],
        format!("the collector deleted {logged:?}"),
    );
    let status = watch.stop().await;
    check(&mut problems, status.success(), format!("exit {status}"));
    verdict(problems);
}

/// A Role in `ns` with what `gc --watch -n ns` needs, bound to `user`; `with_pods` false
/// leaves out pods (RBAC drift).
fn collector_role(user: &str, with_pods: bool) -> Value {
    let mut rules = vec![
        json!({"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "list", "watch", "patch", "delete"]}),
        json!({"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get", "list", "watch"]}),
        json!({"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}),
        json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}),
    ];
    if with_pods {
        rules.push(
            json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}),
        );
    }
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": user}, "rules": rules})
}

// The API server restarts during gc --watch while the collector's pod store cannot be
// listed again (its Role lost pods meanwhile): a claim due for deletion and now mounted by
// a pod the stale store cannot see is not deleted; once the store is listed again the
// mount protects it; when the pod is gone, deletion resumes.
pub async fn watch_survives_apiserver_restart(env: Arc<Env>) {
    let c = "gc_watch_survives_apiserver_restart";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let mut problems = Vec::new();
    let user = "e2e-gc-collector";
    let roles = Request::new(format!(
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"
    ));
    let r = send(
        &env.admin,
        roles.create(&PostParams::default(), to_vec(&collector_role(user, true))),
    )
    .await;
    assert_eq!(r.status, 201, "role: {r}");
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": user},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]});
    let r = send(
        &env.admin,
        Request::new(format!(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"
        ))
        .create(&PostParams::default(), to_vec(&binding)),
    )
    .await;
    assert_eq!(r.status, 201, "role binding: {r}");
    set_with_claims(env, ns, "db", 3).await;
    opt_in(env, ns, "db").await;
    let config = env.kubeconfig_as(user);
    let mut watch = GcWatch::start(env, "restart", &config, &["-n", ns, "--grace", "4s"], &[]);
    watch.wait_ready().await;
    wait_annotation(env, ns, "data-db-2", PROVENANCE_UID, None).await;
    say(
        c,
        format!("gc --watch -n {ns} as {user} (a Role in the namespace only) wrote provenance"),
    );
    scale(env, ns, "db", 2).await;
    let since = wait_annotation(env, ns, "data-db-2", SINCE, None).await;
    say(
        c,
        format!("db 3 -> 2: data-db-2 orphaned-since {since} (grace 4 s)"),
    );
    // RBAC drift: the Role loses pods. The running watch goes on; a new list is refused.
    let r = send(
        &env.admin,
        roles.replace(
            user,
            &PostParams::default(),
            to_vec(&collector_role(user, false)),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "role without pods: {r}");
    let started = Instant::now();
    env.restart_apiserver().await;
    say(
        c,
        format!(
            "Role without pods; kube-apiserver restarted in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
    );
    // The claim is past its grace. A pod the collector cannot see mounts it now.
    let reader_uid = pod_mounting(env, ns, "reader", "data-db-2").await;
    let stale_before = watch.lines("not every store is current").len();
    wait_for(
        "two passes refused for a stale store after the pod was created",
        WAIT,
        || {
            let watch = &watch;
            async move {
                let n = watch.lines("not every store is current").len();
                if n >= stale_before + 2 {
                    Ok(())
                } else {
                    Err(format!("{n} stale passes"))
                }
            }
        },
    )
    .await;
    let stale = watch.lines("not every store is current");
    let last = stale.last().cloned().unwrap_or_default();
    say(
        c,
        format!(
            "{} passes wrote nothing; last: {}",
            stale.len(),
            last["stores"]
        ),
    );
    check(
        &mut problems,
        last["stores"]
            .as_str()
            .is_some_and(|s| s.contains("pods: watch error since the last list")),
        format!("the pod store should be named stale: {last}"),
    );
    let metric = watch.metric("stateward_gc_stale_passes_total").await;
    say(c, format!("stateward_gc_stale_passes_total {metric:?}"));
    check(
        &mut problems,
        metric.is_some_and(|m| m >= 2.0),
        format!("stale passes metric {metric:?}"),
    );
    let r = get_claim(env, ns, "data-db-2").await;
    check(
        &mut problems,
        r.status == 200 && !deleted(&r),
        format!(
            "data-db-2 (due, mounted by a pod the stale store cannot see) deleted: {}",
            claim_state(&r)
        ),
    );

    // The Role gets pods back: the store is listed again and sees the mount.
    let r = send(
        &env.admin,
        roles.replace(
            user,
            &PostParams::default(),
            to_vec(&collector_role(user, true)),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "role with pods: {r}");
    let relisted = Instant::now();
    let watch_ref = &watch;
    wait_for(
        "the pod store to be listed again",
        Duration::from_secs(45),
        || async move {
            match watch_ref
                .metric("stateward_cache_synced{cache=\"pods\"}")
                .await
            {
                Some(1.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    say(
        c,
        format!(
            "Role has pods again; pod store current {:.1} s later",
            relisted.elapsed().as_secs_f64()
        ),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = get_claim(env, ns, "data-db-2").await;
    check(
        &mut problems,
        r.status == 200 && !deleted(&r),
        format!("data-db-2 mounted by reader must stay: {}", claim_state(&r)),
    );
    check(
        &mut problems,
        watch.deleted().is_empty(),
        format!("deleted while stale or mounted: {:?}", watch.deleted()),
    );

    // The pod goes: deletion resumes (after a fresh grace).
    delete_scheduled_pod(env, ns, "reader", &reader_uid).await;
    let resumed = Instant::now();
    wait_deleted(env, ns, "data-db-2", WAIT).await;
    say(
        c,
        format!(
            "reader gone: data-db-2 deleted {:.1} s later",
            resumed.elapsed().as_secs_f64()
        ),
    );
    let logged = watch.deleted_once(&format!("{ns}/data-db-2")).await;
    check(
        &mut problems,
        logged == [format!("{ns}/data-db-2")],
        format!("deleted {logged:?}"),
    );
    let status = watch.stop().await;
    check(&mut problems, status.success(), format!("exit {status}"));
    verdict(problems);
}

// Two gc --watch processes: exactly one holds the lease and deletes; killed, the other
// takes over once the lease runs out.
pub async fn leader_election(env: Arc<Env>) {
    let c = "gc_leader_election";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let admin = env.admin_kubeconfig.as_path();
    let mut problems = Vec::new();
    set_with_claims(env, ns, "db", 3).await;
    opt_in(env, ns, "db").await;
    let lease_seconds = 6.0;
    let args = [
        "-n",
        ns,
        "--grace",
        "0s",
        "--lease-duration",
        "6s",
        "--lease-name",
        "e2e-gc",
        "--lease-namespace",
        ns,
    ];
    let mut a = GcWatch::start(env, "leader-a", admin, &args, &[("POD_NAME", "gc-a")]);
    let mut b = GcWatch::start(env, "leader-b", admin, &args, &[("POD_NAME", "gc-b")]);
    a.wait_ready().await;
    b.wait_ready().await;
    let holder = wait_for("a lease holder", WAIT, || async move {
        lease_holder(env, ns, "e2e-gc")
            .await
            .filter(|h| !h.is_empty())
            .ok_or_else(|| "no holder".to_owned())
    })
    .await;
    let (leader, mut follower) = if holder.starts_with("gc-a_") {
        (a, b)
    } else {
        (b, a)
    };
    say(
        c,
        format!(
            "lease held by {holder} ({}); the other is {}",
            leader.label, follower.label
        ),
    );
    let gauges = (
        leader.metric("stateward_gc_leader ").await,
        follower.metric("stateward_gc_leader ").await,
    );
    say(
        c,
        format!(
            "stateward_gc_leader: leader {:?}, follower {:?}",
            gauges.0, gauges.1
        ),
    );
    check(
        &mut problems,
        gauges == (Some(1.0), Some(0.0)),
        format!("leader gauges {gauges:?}"),
    );

    scale(env, ns, "db", 2).await;
    wait_deleted(env, ns, "data-db-2", WAIT).await;
    let by_leader = leader.deleted_once(&format!("{ns}/data-db-2")).await;
    let by_follower = follower.deleted();
    say(
        c,
        format!(
            "db 3 -> 2: data-db-2 deleted; leader logged deletions {by_leader:?}, follower {by_follower:?}"
        ),
    );
    check(
        &mut problems,
        by_leader == [format!("{ns}/data-db-2")] && by_follower.is_empty(),
        "only the leader deletes",
    );
    check(
        &mut problems,
        follower.lines("reconciled").is_empty() && follower.lines("became the leader").is_empty(),
        "the follower ran no pass",
    );

    let before = send(&env.admin, leases(ns).get("e2e-gc", &GetParams::default())).await;
    leader.proc.signal("KILL");
    let killed = Instant::now();
    let follower_id = if leader.label == "leader-a" {
        "gc-b_"
    } else {
        "gc-a_"
    };
    let new_holder = wait_for(
        "the follower to take the lease",
        Duration::from_secs(20),
        || async move {
            match lease_holder(env, ns, "e2e-gc").await {
                Some(h) if h.starts_with(follower_id) => Ok(h),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let took = killed.elapsed().as_secs_f64();
    let renewed: Option<jiff::Timestamp> = before.body["spec"]["renewTime"]
        .as_str()
        .and_then(|t| t.parse().ok());
    let since_renewal = renewed
        .map(|r| {
            format!(
                "{:.1} s",
                jiff::Timestamp::now().duration_since(r).as_secs_f64()
            )
        })
        .unwrap_or_else(|| "?".into());
    say(
        c,
        format!(
            "leader killed (SIGKILL): {new_holder} holds the lease {took:.1} s later ({since_renewal} after the dead leader's last renewal seen before the kill; lease {lease_seconds} s)"
        ),
    );
    // The dead leader's last renewal can be up to a retry period (2 s + jitter) before the
    // kill and the follower sees it up to a retry period late: the lease duration bounds
    // the takeover, plus those.
    check(
        &mut problems,
        took <= lease_seconds + 2.0 * 2.4 + 0.5,
        format!("takeover took {took:.1} s"),
    );
    scale(env, ns, "db", 1).await;
    wait_deleted(env, ns, "data-db-1", WAIT).await;
    let by_new_leader = follower.deleted_once(&format!("{ns}/data-db-1")).await;
    say(
        c,
        format!("db 2 -> 1: data-db-1 deleted; the new leader logged {by_new_leader:?}"),
    );
    check(
        &mut problems,
        by_new_leader == [format!("{ns}/data-db-1")],
        format!("new leader deleted {by_new_leader:?}"),
    );
    let status = follower.stop().await;
    let released = lease_holder(env, ns, "e2e-gc").await;
    say(
        c,
        format!("SIGTERM to the new leader: {status}; lease holder afterwards {released:?}"),
    );
    check(&mut problems, status.success(), format!("exit {status}"));
    check(
        &mut problems,
        released.as_ref().is_none_or(|h| h.is_empty()),
        format!("the lease should be released on shutdown: {released:?}"),
    );
    verdict(problems);
}

/// Accepts connections and never answers: a webhook that times out.
struct Silent {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Instant>>>,
    _task: AbortOnDrop,
}

impl Silent {
    async fn start() -> Silent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let seen = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Instant::now());
                held.push(socket);
            }
        });
        Silent {
            addr,
            accepted,
            _task: AbortOnDrop(task),
        }
    }

    fn count(&self) -> usize {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

// SIGTERM while a deletion is in flight (held 3 s by a webhook that never answers, with
// failurePolicy Ignore): the deletion completes, the rest of the pass is skipped, the
// process exits 0 within a second of it.
pub async fn sigterm_during_a_pass(env: Arc<Env>) {
    let c = "gc_sigterm_during_a_pass";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let admin = env.admin_kubeconfig.as_path();
    let mut problems = Vec::new();
    let r = patch_json(
        env,
        Request::new("/api/v1/namespaces"),
        ns,
        json!({"metadata": {"labels": {"e2e-gc-slow": "on"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "label namespace: {r}");
    let silent = Silent::start().await;
    let ca = stateward::commands::certs::generate(&["localhost".into()], 1).expect("a CA");
    let name = format!("e2e-gc-slow-{ns}");
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "slow.e2e.stateward.io",
            "clientConfig": {"url": format!("https://{}/slow", silent.addr), "caBundle": b64(&ca.ca_cert)},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["DELETE"],
                "resources": ["persistentvolumeclaims"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"e2e-gc-slow": "on"}},
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 3
        }]
    });
    let configs =
        Request::new("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations");
    let r = send(
        &env.admin,
        configs.create(&PostParams::default(), to_vec(&config)),
    )
    .await;
    assert_eq!(r.status, 201, "slow webhook: {r}");

    set_with_claims(env, ns, "db", 4).await;
    opt_in(env, ns, "db").await;
    // The webhook is in effect once a dry-run delete reaches it.
    let silent_ref = &silent;
    wait_for("the slow webhook in effect", WAIT, || async move {
        let before = silent_ref.count();
        let probe = {
            let client = env.admin.clone();
            let req = claims(ns).delete(
                "data-db-0",
                &DeleteParams {
                    dry_run: true,
                    ..DeleteParams::default()
                },
            );
            tokio::spawn(async move { send(&client, req).await.status })
        };
        let reached = wait_until(Duration::from_secs(2), || silent_ref.count() > before).await;
        drop(probe);
        if reached {
            Ok(())
        } else {
            Err("not called".to_owned())
        }
    })
    .await;
    scale(env, ns, "db", 1).await;
    wait_pods(env, ns, "db", 1).await;
    let mut watch = GcWatch::start(env, "sigterm", admin, &["-n", ns, "--grace", "0s"], &[]);
    watch.wait_ready().await;
    say(
        c,
        "db 4 -> 1 (three orphans, opted in, grace 0 s); every claim DELETE in the namespace waits 3 s for a webhook that never answers",
    );
    let before = silent.count();
    let silent_ref = &silent;
    wait_for("the first deletion in flight", WAIT, || async move {
        if silent_ref.count() > before {
            Ok(())
        } else {
            Err("no DELETE reached the webhook yet".to_owned())
        }
    })
    .await;
    let in_flight = Instant::now();
    watch.proc.signal("TERM");
    say(c, "a DELETE is in flight: SIGTERM sent");
    // Which claim is being deleted shows once the webhook times out.
    let finished = wait_for(
        "the deletion in flight to complete",
        Duration::from_secs(10),
        || async move {
            for claim in ["data-db-1", "data-db-2", "data-db-3"] {
                if deleted(&get_claim(env, ns, claim).await) {
                    return Ok((claim, Instant::now()));
                }
            }
            Err("none deleted yet".to_owned())
        },
    )
    .await;
    let (status, exited) = watch.wait_exit(Duration::from_secs(10)).await;
    let exit_after = exited.saturating_duration_since(finished.1).as_secs_f64();
    say(
        c,
        format!(
            "{} deleted {:.1} s after SIGTERM; {status} {:.2} s after that ({:.1} s after SIGTERM)",
            finished.0,
            finished.1.duration_since(in_flight).as_secs_f64(),
            exit_after,
            exited.duration_since(in_flight).as_secs_f64()
        ),
    );
    check(&mut problems, status.success(), format!("exit {status}"));
    check(
        &mut problems,
        exit_after <= 1.0,
        format!("exited {exit_after:.2} s after the deletion in flight"),
    );
    let mut left = Vec::new();
    for claim in ["data-db-1", "data-db-2", "data-db-3"] {
        let r = get_claim(env, ns, claim).await;
        if !deleted(&r) {
            left.push(claim);
        }
    }
    say(c, format!("claims not deleted (skipped): {left:?}"));
    check(
        &mut problems,
        left.len() == 2,
        format!("exactly one deletion should have happened, left {left:?}"),
    );
    check(
        &mut problems,
        !watch.lines("stopped by a signal").is_empty()
            || watch
                .lines("reconciled")
                .iter()
                .any(|l| l["stopped"] == "stopped by a signal"),
        "the pass should say it stopped for the signal",
    );
    let _ = send(&env.admin, configs.delete(&name, &DeleteParams::default())).await;
    verdict(problems);
}

/// Polls `ok` every 20 ms for up to `limit`.
async fn wait_until(limit: Duration, ok: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ok()
}
