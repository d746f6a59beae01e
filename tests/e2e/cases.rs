//! The cases, each in its own namespace. Each prints what it saw (status codes, messages,
//! warnings) so a failing run shows the behaviour, not just the assertion.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::core::Request;
use kube::core::params::{
    DeleteParams, GetParams, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
use serde_json::{Value, json};

use crate::harness::{ALIAS_LABEL, Env, NODE};
use crate::k8s::{
    Reply, claim_template, events, has_anti_affinity, headless_service, http_get, pods, relabel,
    send, services, statefulset, statefulsets, to_vec, wait_for,
};

pub type Case = fn(Arc<Env>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every case in run order: the collector's cases (tests/e2e/gc.rs) and the audit's
/// (tests/e2e/audit.rs) before `apiserver_restart`, and `rolling_restart_keeps_answering` (it stops the webhook) last.
pub fn all() -> Vec<(&'static str, Case)> {
    vec![
        // First: it installs the OpenReports CRDs once done, and the garbage collector
        // finds a new resource only at its next discovery (every 30 s); by
        // audit_watch_reports, which waits for it to delete the report of a deleted set,
        // it has.
        ("audit_watch_without_crds", |e| {
            Box::pin(crate::audit::watch_without_crds_then_with(e))
        }),
        ("scale_down_completes", |e| {
            Box::pin(scale_down_completes(e))
        }),
        ("kubelet_finishes_graceful_deletion", |e| {
            Box::pin(kubelet_finishes_graceful_deletion(e))
        }),
        ("force_delete_of_running_pod_is_denied", |e| {
            Box::pin(force_delete_of_running_pod_is_denied(e))
        }),
        ("headless_service_delete_warns", |e| {
            Box::pin(headless_service_delete_warns(e))
        }),
        ("kubectl_scale_warns_with_claim_names", |e| {
            Box::pin(kubectl_scale_warns_with_claim_names(e))
        }),
        ("block_device_claims_are_admitted", |e| {
            Box::pin(block_device_claims_are_admitted(e))
        }),
        ("server_side_dry_run", |e| Box::pin(server_side_dry_run(e))),
        ("server_side_apply_create", |e| {
            Box::pin(server_side_apply_create(e))
        }),
        ("validate_sees_mutated_object", |e| {
            Box::pin(validate_sees_mutated_object(e))
        }),
        ("garbage_collector_cascade", |e| {
            Box::pin(garbage_collector_cascade(e))
        }),
        ("namespace_deletion", |e| Box::pin(namespace_deletion(e))),
        ("audit_findings_are_logged", |e| {
            Box::pin(audit_findings_are_logged(e))
        }),
        ("monitoring_every_panel_and_alert_has_data", |e| {
            Box::pin(crate::monitoring::every_panel_and_alert_has_data(e))
        }),
        ("gc_plan_and_delete_scaled_down_claim", |e| {
            Box::pin(crate::gc::plan_and_delete_scaled_down_claim(e))
        }),
        ("gc_mounted_claim_is_never_deleted", |e| {
            Box::pin(crate::gc::mounted_claim_is_never_deleted(e))
        }),
        ("gc_recreated_set_keeps_its_claims", |e| {
            Box::pin(crate::gc::recreated_set_keeps_its_claims(e))
        }),
        ("gc_watch_deletes_only_the_orphan_after_grace", |e| {
            Box::pin(crate::gc::watch_deletes_only_the_orphan_after_grace(e))
        }),
        ("gc_watch_survives_apiserver_restart", |e| {
            Box::pin(crate::gc::watch_survives_apiserver_restart(e))
        }),
        ("gc_leader_election", |e| {
            Box::pin(crate::gc::leader_election(e))
        }),
        ("gc_sigterm_during_a_pass", |e| {
            Box::pin(crate::gc::sigterm_during_a_pass(e))
        }),
        ("audit_sets_created_before_the_webhook", |e| {
            Box::pin(crate::audit::sets_created_before_the_webhook_are_reported(
                e,
            ))
        }),
        ("audit_rollout_blocked", |e| {
            Box::pin(crate::audit::rollout_blocked_by_never_ready_pod(e))
        }),
        ("audit_pod_stuck_terminating", |e| {
            Box::pin(crate::audit::pod_stuck_terminating_on_unknown_node(e))
        }),
        ("audit_pending_claim", |e| {
            Box::pin(crate::audit::pending_claim_is_reported(e))
        }),
        ("audit_forbidden_list", |e| {
            Box::pin(crate::audit::forbidden_list_is_named(e))
        }),
        ("audit_watch_reports", |e| {
            Box::pin(crate::audit::watch_keeps_reports(e))
        }),
        ("apiserver_restart", |e| Box::pin(apiserver_restart(e))),
        // Stops stateward: always the last case.
        ("outage_matrix", |e| {
            Box::pin(crate::outage::outage_matrix(e))
        }),
        ("native_equals_webhook", |e| {
            Box::pin(crate::native::native_equals_webhook(e))
        }),
        ("rolling_restart_keeps_answering", |e| {
            Box::pin(rolling_restart_keeps_answering(e))
        }),
    ]
}

pub(crate) fn say(case: &str, text: impl AsRef<str>) {
    println!("    [{case}] {}", text.as_ref());
}

pub(crate) const WAIT: Duration = Duration::from_secs(30);

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

/// Panics listing every problem, when there is any.
pub(crate) fn verdict(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

pub(crate) fn check(problems: &mut Vec<String>, ok: bool, what: impl Into<String>) {
    if !ok {
        problems.push(what.into());
    }
}

/// Creates headless Service `name` and StatefulSet `name` (valid, Parallel) in `ns`.
pub(crate) async fn create_set(env: &Env, ns: &str, name: &str, replicas: i32) -> Reply {
    let svc = send(
        &env.admin,
        services(ns).create(
            &PostParams::default(),
            to_vec(&headless_service(name, name)),
        ),
    )
    .await;
    assert_eq!(svc.status, 201, "create Service {ns}/{name}: {svc}");
    let sts = send(
        &env.admin,
        statefulsets(ns).create(
            &PostParams::default(),
            to_vec(&statefulset(name, replicas, name)),
        ),
    )
    .await;
    assert_eq!(sts.status, 201, "create StatefulSet {ns}/{name}: {sts}");
    sts
}

/// The pods with `app=<app>` (name, uid, deletionTimestamp?).
pub(crate) async fn list_pods(env: &Env, ns: &str, app: &str) -> Vec<Value> {
    let r = send(
        &env.admin,
        pods(ns).list(&ListParams::default().labels(&format!("app={app}"))),
    )
    .await;
    assert_eq!(r.status, 200, "list pods: {r}");
    r.body["items"].as_array().cloned().unwrap_or_default()
}

pub(crate) fn pod_summary(pods: &[Value]) -> String {
    let parts: Vec<String> = pods
        .iter()
        .map(|p| {
            format!(
                "{}(node={} phase={} deleting={})",
                p["metadata"]["name"].as_str().unwrap_or("?"),
                p["spec"]["nodeName"].as_str().unwrap_or("-"),
                p["status"]["phase"].as_str().unwrap_or("-"),
                p["metadata"]["deletionTimestamp"].as_str().unwrap_or("no"),
            )
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Waits until the set's `n` pods exist.
pub(crate) async fn wait_pods(env: &Env, ns: &str, app: &str, n: usize) -> Vec<Value> {
    wait_for(&format!("{n} pods of {ns}/{app}"), WAIT, || async move {
        let pods = list_pods(env, ns, app).await;
        if pods.len() == n {
            Ok(pods)
        } else {
            Err(pod_summary(&pods))
        }
    })
    .await
}

pub(crate) async fn get_pod(env: &Env, ns: &str, name: &str) -> Reply {
    send(&env.admin, pods(ns).get(name, &GetParams::default())).await
}

/// Binds the pod to node n1 (as the scheduler would) and, as the kubelet, reports it
/// Running and Ready. Returns its uid.
pub(crate) async fn run_on_node(env: &Env, ns: &str, name: &str) -> String {
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}
    });
    let r = send(
        &env.admin,
        pods(ns).create_subresource("binding", name, &PostParams::default(), to_vec(&binding)),
    )
    .await;
    assert_eq!(r.status, 201, "bind {ns}/{name} to {NODE}: {r}");
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let condition = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now});
    let status = json!({"status": {
        "phase": "Running",
        "startTime": now,
        "conditions": [condition("PodScheduled"), condition("Initialized"),
                       condition("ContainersReady"), condition("Ready")],
        "containerStatuses": [{
            "name": "main", "image": "busybox", "imageID": "", "ready": true, "restartCount": 0,
            "started": true, "state": {"running": {"startedAt": now}}
        }]
    }});
    let r = send(
        &env.kubelet,
        pods(ns).patch_subresource(
            "status",
            name,
            &PatchParams::default(),
            &Patch::Merge(&status),
        ),
    )
    .await;
    assert_eq!(
        r.status, 200,
        "as the kubelet, set {ns}/{name} Running: {r}"
    );
    let pod = get_pod(env, ns, name).await;
    assert_eq!(
        pod.body["spec"]["nodeName"], NODE,
        "pod {name} bound: {pod}"
    );
    assert_eq!(pod.body["status"]["phase"], "Running", "pod {name} running");
    pod.body["metadata"]["uid"]
        .as_str()
        .expect("pod uid")
        .to_owned()
}

/// Waits until pod `name` with `uid` is gone (404, or a pod of that name with another uid).
pub(crate) async fn wait_pod_replaced(
    env: &Env,
    ns: &str,
    name: &str,
    uid: &str,
) -> Option<String> {
    wait_for(
        &format!("pod {ns}/{name} uid {uid} to be gone"),
        WAIT,
        || async move {
            let r = get_pod(env, ns, name).await;
            match r.status {
                404 => Ok(None),
                200 if r.body["metadata"]["uid"] != uid => {
                    Ok(r.body["metadata"]["uid"].as_str().map(str::to_owned))
                }
                _ => Err(format!(
                    "{r} deletionTimestamp={}",
                    r.body["metadata"]["deletionTimestamp"]
                )),
            }
        },
    )
    .await
}

/// Messages of `FailedDelete` events about the set.
async fn failed_delete_events(env: &Env, ns: &str, set: &str) -> Vec<String> {
    let r = send(&env.admin, events(ns).list(&ListParams::default())).await;
    r.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == "FailedDelete" && e["involvedObject"]["name"] == set)
        .map(|e| {
            format!(
                "{} (x{})",
                e["message"].as_str().unwrap_or(""),
                e["count"].as_i64().unwrap_or(1)
            )
        })
        .collect()
}

// 1
async fn scale_down_completes(env: Arc<Env>) {
    let c = "scale_down_completes";
    let env = &*env;
    let ns = &env.namespace(c).await;
    create_set(env, ns, "web", 3).await;
    let pods = wait_pods(env, ns, "web", 3).await;
    say(c, format!("3 pods: {}", pod_summary(&pods)));
    // The controller's pod CREATEs went through the mutating webhook: each pod carries
    // the policy's alias label, set to its name.
    for pod in &pods {
        let name = &pod["metadata"]["name"];
        assert_eq!(
            &pod["metadata"]["labels"][ALIAS_LABEL], name,
            "pod {name}: labels {}",
            pod["metadata"]["labels"]
        );
    }
    let r = send(
        &env.admin,
        statefulsets(ns).patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        ),
    )
    .await;
    say(c, format!("merge patch spec.replicas 3 -> 1: {r}"));
    assert_eq!(r.status, 200, "patch replicas: {r}");
    let started = Instant::now();
    wait_for("pods web-1 and web-2 to disappear", WAIT, || async move {
        let pods = list_pods(env, ns, "web").await;
        let left = pods
            .iter()
            .any(|p| p["metadata"]["name"] == "web-1" || p["metadata"]["name"] == "web-2");
        if left {
            Err(format!(
                "pods {}; FailedDelete events {:?}",
                pod_summary(&pods),
                failed_delete_events(env, ns, "web").await
            ))
        } else {
            Ok(())
        }
    })
    .await;
    say(
        c,
        format!(
            "web-1 and web-2 gone after {:.1} s",
            started.elapsed().as_secs_f64()
        ),
    );
    let failed = failed_delete_events(env, ns, "web").await;
    say(c, format!("FailedDelete events: {failed:?}"));
    assert!(failed.is_empty(), "FailedDelete events: {failed:?}");
}

// 2
async fn kubelet_finishes_graceful_deletion(env: Arc<Env>) {
    let c = "kubelet_finishes_graceful_deletion";
    let env = &*env;
    let ns = &env.namespace(c).await;
    create_set(env, ns, "web", 1).await;
    wait_pods(env, ns, "web", 1).await;
    let uid = run_on_node(env, ns, "web-0").await;
    say(
        c,
        format!("web-0 bound to {NODE}, Running+Ready, uid {uid}"),
    );

    let r = send(
        &env.admin,
        pods(ns).delete("web-0", &DeleteParams::default()),
    )
    .await;
    say(c, format!("admin DELETE (default grace): {r}"));
    assert_eq!(r.status, 200, "graceful delete: {r}");
    let pod = get_pod(env, ns, "web-0").await;
    say(
        c,
        format!(
            "after it: GET {} deletionTimestamp={} grace={}",
            pod.status,
            pod.body["metadata"]["deletionTimestamp"],
            pod.body["metadata"]["deletionGracePeriodSeconds"]
        ),
    );
    assert_eq!(pod.status, 200, "pod stays while terminating: {pod}");
    assert!(
        pod.body["metadata"]["deletionTimestamp"].is_string(),
        "pod is terminating"
    );

    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let r = send(&env.kubelet, pods(ns).delete("web-0", &dp)).await;
    say(
        c,
        format!("as system:node:{NODE}: DELETE grace 0 + uid precondition: {r}"),
    );
    assert_eq!(r.status, 200, "the kubelet's final delete: {r}");
    let new_uid = wait_pod_replaced(env, ns, "web-0", &uid).await;
    say(c, format!("old pod gone; replacement uid {new_uid:?}"));
    // The controller creates the replacement: a new uid.
    let uid = &uid;
    let replacement = wait_for("the replacement web-0", WAIT, || async move {
        let r = get_pod(env, ns, "web-0").await;
        match r.body["metadata"]["uid"].as_str() {
            Some(u) if r.status == 200 && u != uid => Ok(u.to_owned()),
            _ => Err(r.to_string()),
        }
    })
    .await;
    say(
        c,
        format!("replacement web-0 uid {replacement} (old {uid})"),
    );
}

// 3
async fn force_delete_of_running_pod_is_denied(env: Arc<Env>) {
    let c = "force_delete_of_running_pod_is_denied";
    let env = &*env;
    let ns = &env.namespace(c).await;
    create_set(env, ns, "web", 1).await;
    wait_pods(env, ns, "web", 1).await;
    let uid = run_on_node(env, ns, "web-0").await;
    say(c, format!("web-0 bound to {NODE}, Running, uid {uid}"));
    let mut problems = Vec::new();

    let force = DeleteParams::default().grace_period(0);
    let r = send(&env.admin, pods(ns).delete("web-0", &force)).await;
    say(c, format!("admin DELETE grace 0: {r}"));
    check(
        &mut problems,
        r.status == 403 && r.message().contains("pod.force-delete"),
        format!("force delete should be 403 naming pod.force-delete, got {r}"),
    );
    let pod = get_pod(env, ns, "web-0").await;
    check(
        &mut problems,
        pod.status == 200 && pod.body["metadata"]["uid"] == uid.as_str(),
        format!("pod should still be there after the denial: {pod}"),
    );

    let annotate =
        json!({"metadata": {"annotations": {"stateward.io/allow-force-delete": "true"}}});
    let r = send(
        &env.admin,
        pods(ns).patch("web-0", &PatchParams::default(), &Patch::Merge(&annotate)),
    )
    .await;
    assert_eq!(r.status, 200, "annotate: {r}");
    let r = send(&env.admin, pods(ns).delete("web-0", &force)).await;
    say(
        c,
        format!("admin DELETE grace 0 after annotating allow-force-delete=true: {r}"),
    );
    check(
        &mut problems,
        r.status == 200,
        format!("annotated force delete should be allowed, got {r}"),
    );
    if r.status == 200 {
        wait_pod_replaced(env, ns, "web-0", &uid).await;
    }

    let logged = wait_for(
        "a stateward log line naming pod.force-delete",
        Duration::from_secs(5),
        || async move {
            env.stateward_log_lines()
                .into_iter()
                .find(|l| l.contains("pod.force-delete"))
                .ok_or_else(|| {
                    let denied: Vec<String> = env
                        .stateward_log_lines()
                        .into_iter()
                        .filter(|l| l.contains("denied") && l.contains(ns))
                        .collect();
                    format!("denial lines for the namespace: {denied:?}")
                })
        },
    )
    .await;
    say(c, format!("stateward log: {logged}"));
    verdict(problems);
}

// 4
async fn headless_service_delete_warns(env: Arc<Env>) {
    let c = "headless_service_delete_warns";
    let env = &*env;
    let ns = &env.namespace(c).await;
    create_set(env, ns, "web", 2).await;
    wait_pods(env, ns, "web", 2).await;
    let r = send(
        &env.admin,
        services(ns).delete("web", &DeleteParams::default()),
    )
    .await;
    say(
        c,
        format!("DELETE Service web (set web has 2 replicas): {r}"),
    );
    assert!(
        r.status == 200 && r.warned("service.headless-in-use"),
        "expected 200 with a service.headless-in-use warning, got {r}"
    );
}

// 5
async fn kubectl_scale_warns_with_claim_names(env: Arc<Env>) {
    let c = "kubectl_scale_warns_with_claim_names";
    let env = &*env;
    let ns = &env.namespace(c).await;
    create_set(env, ns, "db", 3).await;
    wait_pods(env, ns, "db", 3).await;
    let mut problems = Vec::new();
    let scale = |replicas: i32| {
        statefulsets(ns).patch_subresource(
            "scale",
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
    };
    let r = send(&env.admin, scale(1)).await;
    say(
        c,
        format!("PATCH statefulsets/db/scale replicas 3 -> 1: {r}"),
    );
    let all = r.warnings.join(" | ");
    check(
        &mut problems,
        r.status == 200 && all.contains("data-db-1") && all.contains("data-db-2"),
        format!("scale PATCH: expected 200 with warnings naming data-db-1 and data-db-2, got {r}"),
    );

    let Some(kubectl) = env.kubectl.clone() else {
        say(c, "kubectl part skipped (STATEWARD_KUBECTL not set)");
        verdict(problems);
        return;
    };
    let r = send(&env.admin, scale(3)).await;
    say(c, format!("PATCH scale back to 3: {r}"));
    assert_eq!(r.status, 200, "scale up: {r}");
    let kubeconfig = env.admin_kubeconfig.clone();
    let ns_owned = ns.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(kubectl)
            .args(["--kubeconfig"])
            .arg(kubeconfig)
            .args([
                "-n",
                &ns_owned,
                "scale",
                "statefulset",
                "db",
                "--replicas=1",
            ])
            .output()
            .expect("run kubectl")
    })
    .await
    .expect("kubectl task");
    let stderr = String::from_utf8_lossy(&out.stderr);
    say(
        c,
        format!(
            "kubectl scale statefulset db --replicas=1: exit {} stdout={:?} stderr={:?}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            stderr.trim()
        ),
    );
    check(
        &mut problems,
        out.status.success() && stderr.contains("data-db-1") && stderr.contains("data-db-2"),
        format!(
            "kubectl scale: expected success with a warning naming data-db-1 and data-db-2, stderr {stderr:?}"
        ),
    );
    verdict(problems);
}

// 6
async fn block_device_claims_are_admitted(env: Arc<Env>) {
    let c = "block_device_claims_are_admitted";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let mut problems = Vec::new();
    let svc = send(
        &env.admin,
        services(ns).create(
            &PostParams::default(),
            to_vec(&headless_service("blk", "blk")),
        ),
    )
    .await;
    assert_eq!(svc.status, 201, "service: {svc}");

    let mut blk = statefulset("blk", 1, "blk");
    let container = &mut blk["spec"]["template"]["spec"]["containers"][0];
    container
        .as_object_mut()
        .expect("container")
        .remove("volumeMounts");
    container["volumeDevices"] = json!([{"name": "data", "devicePath": "/dev/xvda"}]);
    blk["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"] = json!("Block");
    let r = send(
        &env.admin,
        statefulsets(ns).create(&PostParams::default(), to_vec(&blk)),
    )
    .await;
    say(
        c,
        format!("create set with a Block claim used as volumeDevices /dev/xvda: {r}"),
    );
    check(
        &mut problems,
        r.status == 201,
        format!("block-device set should be created, got {r}"),
    );

    let mut unused = statefulset("unused", 1, "blk");
    relabel(&mut unused, "blk");
    unused["spec"]["volumeClaimTemplates"]
        .as_array_mut()
        .expect("templates")
        .push(claim_template("extra"));
    let r = send(
        &env.admin,
        statefulsets(ns).create(&PostParams::default(), to_vec(&unused)),
    )
    .await;
    say(
        c,
        format!("create set with claim template 'extra' no container uses: {r}"),
    );
    check(
        &mut problems,
        r.denied() && r.message().contains("statefulset.claim-templates-mounted"),
        format!(
            "unused claim template should be denied by statefulset.claim-templates-mounted, got {r}"
        ),
    );
    verdict(problems);
}

// 7
async fn server_side_dry_run(env: Arc<Env>) {
    let c = "server_side_dry_run";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let mut problems = Vec::new();
    let svc = send(
        &env.admin,
        services(ns).create(
            &PostParams::default(),
            to_vec(&headless_service("dry", "dry")),
        ),
    )
    .await;
    assert_eq!(svc.status, 201, "service: {svc}");

    let mut bad = statefulset("dry-bad", 1, "dry");
    relabel(&mut bad, "dry");
    bad["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(0);
    let r = send(
        &env.admin,
        statefulsets(ns).create(&dry_run(), to_vec(&bad)),
    )
    .await;
    say(c, format!("dryRun=All create, grace 0: {r}"));
    check(
        &mut problems,
        r.denied() && r.message().contains("statefulset.termination-grace-period"),
        format!("dry-run of grace 0 should be denied, got {r}"),
    );

    let good = statefulset("dry", 2, "dry");
    let r = send(
        &env.admin,
        statefulsets(ns).create(&dry_run(), to_vec(&good)),
    )
    .await;
    say(
        c,
        format!(
            "dryRun=All create, valid, no affinity: {r}; podAntiAffinity in the answer: {}",
            has_anti_affinity(&r.body)
        ),
    );
    check(
        &mut problems,
        r.status == 201 && has_anti_affinity(&r.body),
        format!("dry-run create should answer 201 with the default anti-affinity, got {r}"),
    );
    let g = send(
        &env.admin,
        statefulsets(ns).get("dry", &GetParams::default()),
    )
    .await;
    say(c, format!("GET dry afterwards: HTTP {}", g.status));
    check(
        &mut problems,
        g.status == 404,
        format!(
            "dry-run object must not be persisted, GET gave {}",
            g.status
        ),
    );
    verdict(problems);
}

// 8
async fn server_side_apply_create(env: Arc<Env>) {
    let c = "server_side_apply_create";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let mut problems = Vec::new();
    let svc = send(
        &env.admin,
        services(ns).create(
            &PostParams::default(),
            to_vec(&headless_service("ssa", "ssa")),
        ),
    )
    .await;
    assert_eq!(svc.status, 201, "service: {svc}");
    let apply = PatchParams::apply("e2e");

    let good = statefulset("ssa", 2, "ssa");
    let r = send(
        &env.admin,
        statefulsets(ns).patch("ssa", &apply, &Patch::Apply(&good)),
    )
    .await;
    say(
        c,
        format!(
            "server-side apply of a new valid set: {r}; podAntiAffinity: {}",
            has_anti_affinity(&r.body)
        ),
    );
    check(
        &mut problems,
        (r.status == 201 || r.status == 200) && has_anti_affinity(&r.body),
        format!("apply should create the set with the default anti-affinity, got {r}"),
    );

    let mut bad = statefulset("ssa-bad", 1, "ssa");
    relabel(&mut bad, "ssa");
    bad["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(0);
    let r = send(
        &env.admin,
        statefulsets(ns).patch("ssa-bad", &apply, &Patch::Apply(&bad)),
    )
    .await;
    say(c, format!("server-side apply of a set with grace 0: {r}"));
    check(
        &mut problems,
        r.denied() && r.message().contains("statefulset.termination-grace-period"),
        format!("apply of grace 0 should be denied, got {r}"),
    );
    verdict(problems);
}

// 9
async fn validate_sees_mutated_object(env: Arc<Env>) {
    let c = "validate_sees_mutated_object";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let r = create_set(env, ns, "web", 2).await;
    say(
        c,
        format!("create valid set without affinity, replicas 2: {r}"),
    );
    let mut problems = Vec::new();
    check(
        &mut problems,
        !r.warned("statefulset.anti-affinity:"),
        format!(
            "validation should see the mutated object (with anti-affinity), but warned: {:?}",
            r.warnings
        ),
    );
    let g = send(
        &env.admin,
        statefulsets(ns).get("web", &GetParams::default()),
    )
    .await;
    say(
        c,
        format!(
            "stored object has podAntiAffinity: {}",
            has_anti_affinity(&g.body)
        ),
    );
    check(
        &mut problems,
        has_anti_affinity(&g.body),
        "stored set has no podAntiAffinity",
    );
    verdict(problems);
}

// 10
async fn garbage_collector_cascade(env: Arc<Env>) {
    let c = "garbage_collector_cascade";
    let env = &*env;
    let ns = &env.namespace(c).await;
    create_set(env, ns, "gc", 2).await;
    wait_pods(env, ns, "gc", 2).await;
    let r = send(
        &env.admin,
        statefulsets(ns).delete("gc", &DeleteParams::background()),
    )
    .await;
    say(c, format!("DELETE set gc (background): {r}"));
    assert_eq!(r.status, 200, "delete set: {r}");
    let started = Instant::now();
    wait_for(
        "the garbage collector to delete the pods",
        WAIT,
        || async move {
            let pods = list_pods(env, ns, "gc").await;
            if pods.is_empty() {
                Ok(())
            } else {
                Err(pod_summary(&pods))
            }
        },
    )
    .await;
    say(
        c,
        format!("pods gone after {:.1} s", started.elapsed().as_secs_f64()),
    );
}

// 11
async fn namespace_deletion(env: Arc<Env>) {
    let c = "namespace_deletion";
    let env = &*env;
    let ns = &env.namespace(c).await;
    create_set(env, ns, "web", 2).await;
    wait_pods(env, ns, "web", 2).await;
    let namespaces = &Request::new("/api/v1/namespaces");
    let r = send(&env.admin, namespaces.delete(ns, &DeleteParams::default())).await;
    say(c, format!("DELETE namespace {ns}: {r}"));
    assert_eq!(r.status, 200, "delete namespace: {r}");
    let started = Instant::now();
    wait_for(
        "the namespace to disappear",
        Duration::from_secs(60),
        || async move {
            let r = send(&env.admin, namespaces.get(ns, &GetParams::default())).await;
            if r.status == 404 {
                return Ok(());
            }
            let conditions: Vec<String> = r.body["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["status"] == "True")
                .map(|c| format!("{}: {}", c["type"], c["message"]))
                .collect();
            let pods = list_pods(env, ns, "web").await;
            let svcs = send(&env.admin, services(ns).list(&ListParams::default())).await;
            Err(format!(
                "phase {} conditions {conditions:?}; pods {}; services {}",
                r.body["status"]["phase"],
                pod_summary(&pods),
                svcs.body["items"].as_array().map_or(0, Vec::len)
            ))
        },
    )
    .await;
    say(
        c,
        format!(
            "namespace gone after {:.1} s",
            started.elapsed().as_secs_f64()
        ),
    );
}

#[derive(Default)]
struct Readyz {
    ok: usize,
    not_ok: Vec<String>,
    errors: Vec<String>,
}

/// Aborts the task when dropped (a failing case must not leave its poller running).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// 12
async fn apiserver_restart(env: Arc<Env>) {
    let c = "apiserver_restart";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let mut problems = Vec::new();

    let stats = Arc::new(Mutex::new(Readyz::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (stats, stop, addr) = (stats.clone(), stop.clone(), env.stateward_admin);
        let started = Instant::now();
        AbortOnDrop(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answer = http_get(addr, "/readyz").await;
                let at = started.elapsed().as_secs_f64();
                {
                    let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                    match answer {
                        Ok((200, _)) => s.ok += 1,
                        Ok((status, body)) => s
                            .not_ok
                            .push(format!("t={at:.1}s HTTP {status} {:?}", body.trim())),
                        Err(e) => s.errors.push(format!("t={at:.1}s {e}")),
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }))
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    env.restart_apiserver().await;
    say(
        c,
        format!(
            "kube-apiserver killed and ready again after {:.1} s",
            started.elapsed().as_secs_f64()
        ),
    );
    env.assert_stateward_alive();

    let r = send(
        &env.admin,
        services(ns).create(
            &PostParams::default(),
            to_vec(&headless_service("fresh", "fresh")),
        ),
    )
    .await;
    say(c, format!("create Service fresh after the restart: {r}"));
    assert_eq!(r.status, 201, "create Service fresh: {r}");

    let set = &statefulset("fresh", 1, "fresh");
    let attempts = &Mutex::new(Vec::<String>::new());
    let since = Instant::now();
    let stale =
        |w: &String| w.contains("statefulset.headless-service") || w.contains("unavailable");
    let outcome = tokio::time::timeout(
        WAIT,
        wait_for(
            "a dry run naming Service fresh without a headless-service or unavailable warning",
            // Longer than the timeout around it, which reports instead of panicking.
            WAIT + Duration::from_secs(10),
            || async move {
                let r = send(&env.admin, statefulsets(ns).create(&dry_run(), to_vec(set))).await;
                let line = format!("t={:.1}s {r}", since.elapsed().as_secs_f64());
                attempts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line.clone());
                if r.status == 201 && !r.warnings.iter().any(stale) {
                    Ok(line)
                } else {
                    Err(line)
                }
            },
        ),
    )
    .await;
    let attempts = std::mem::take(&mut *attempts.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(first) = attempts.first() {
        say(c, format!("first dry run: {first}"));
    }
    say(c, format!("{} dry run(s)", attempts.len()));
    match outcome {
        Ok(line) => say(c, format!("fresh context: {line}")),
        Err(_) => {
            let last = attempts.last().cloned().unwrap_or_default();
            say(c, format!("last dry run: {last}"));
            problems.push(format!(
                "within {WAIT:?} of the restart every dry run still warned about Service fresh or unavailable context; last: {last}"
            ));
        }
    }

    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(poller);
    let s = std::mem::take(&mut *stats.lock().unwrap_or_else(|e| e.into_inner()));
    say(
        c,
        format!(
            "stateward /readyz during the case: {} x 200, {} other answers {:?}, {} connection errors {:?}",
            s.ok,
            s.not_ok.len(),
            s.not_ok.iter().take(5).collect::<Vec<_>>(),
            s.errors.len(),
            s.errors.iter().take(5).collect::<Vec<_>>()
        ),
    );
    check(
        &mut problems,
        s.not_ok.is_empty(),
        format!(
            "stateward /readyz answered non-200 {} time(s): {:?}",
            s.not_ok.len(),
            s.not_ok.iter().take(5).collect::<Vec<_>>()
        ),
    );
    check(
        &mut problems,
        s.errors.is_empty(),
        format!(
            "stateward /readyz connection errors: {:?}",
            s.errors.iter().take(5).collect::<Vec<_>>()
        ),
    );
    verdict(problems);
}

/// Audit mode exists to be read: a finding of an audit-mode rule (baseline:
/// `statefulset.pod-disruption-budget`) is logged with namespace, name, rule and message.
async fn audit_findings_are_logged(env: Arc<Env>) {
    let c = "audit_findings_are_logged";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let r = create_set(env, ns, "nopdb", 2).await;
    say(c, format!("create of a 2-replica set without a PDB: {r}"));
    assert_eq!(r.status, 201, "create: {r}");
    let line = wait_for(
        "an audit finding in stateward's log",
        Duration::from_secs(5),
        || async move {
            env.stateward_log_lines()
                .into_iter()
                .find(|l| l.contains("audit finding") && l.contains(ns.as_str()))
                .ok_or_else(|| "no audit line for the namespace yet".to_owned())
        },
    )
    .await;
    say(c, format!("log: {line}"));
    let entry: Value = serde_json::from_str(&line).expect("a JSON log line");
    let fields = &entry["fields"];
    let found = |key: &str| {
        fields[key]
            .as_str()
            .or_else(|| entry[key].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(found("rule"), "statefulset.pod-disruption-budget", "{line}");
    assert_eq!(found("name"), "nopdb", "{line}");
    assert!(found("detail").contains("PodDisruptionBudget"), "{line}");
    // One `message` key per line (log pipelines reject duplicate keys).
    assert_eq!(line.matches("\"message\"").count(), 1, "{line}");
}

/// A rolling restart of stateward: on SIGTERM `/readyz` turns 503 at once (endpoints drop
/// the pod) while the webhook keeps judging for the shutdown delay, then it exits 0.
async fn rolling_restart_keeps_answering(env: Arc<Env>) {
    let c = "rolling_restart_keeps_answering";
    let env = &*env;
    let ns = &env.namespace(c).await;
    let mut bad = statefulset("late", 1, "late");
    relabel(&mut bad, "late");
    bad["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(0);
    let signalled = std::time::Instant::now();
    env.terminate_stateward();
    let (status, body) = wait_for(
        "stateward /readyz 503 after SIGTERM",
        Duration::from_millis(1000),
        || async move {
            match http_get(env.stateward_admin, "/readyz").await {
                Ok((503, body)) => Ok((503, body)),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    say(
        c,
        format!(
            "/readyz {status} {:?} after {:.2} s",
            body.trim(),
            signalled.elapsed().as_secs_f64()
        ),
    );
    let r = send(
        &env.admin,
        statefulsets(ns).create(&dry_run(), to_vec(&bad)),
    )
    .await;
    let judged_after = signalled.elapsed();
    say(
        c,
        format!(
            "dry-run create of a grace-0 set {:.2} s after SIGTERM: {r}",
            judged_after.as_secs_f64()
        ),
    );
    assert!(
        judged_after < crate::harness::SHUTDOWN_DELAY,
        "the request came too late to show anything"
    );
    assert!(
        r.denied() && r.message().contains("statefulset.termination-grace-period"),
        "stateward must still judge during the shutdown delay, got {r}"
    );
    let exit = wait_for(
        "stateward to exit after the shutdown delay",
        crate::harness::SHUTDOWN_DELAY + Duration::from_secs(10),
        || async move {
            env.stateward_exited()
                .ok_or_else(|| "still running".to_owned())
        },
    )
    .await;
    say(
        c,
        format!(
            "stateward exited {exit} after {:.1} s",
            signalled.elapsed().as_secs_f64()
        ),
    );
    assert!(exit.success(), "exit status {exit}");
    assert!(
        signalled.elapsed() >= crate::harness::SHUTDOWN_DELAY,
        "stateward stopped before its shutdown delay"
    );
}
