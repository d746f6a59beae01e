//! What the cluster does when stateward does not answer: the failure-mode matrix of
//! `docs/install.md`, tried on the real API server with the chart's own webhook
//! configurations for the baseline and the strict policy.
//!
//! For each profile: a `stateward serve` of its own, with the chart's configurations
//! rendered for the profile (limited to one namespace); first **hung** (SIGSTOP): a write no
//! rule can deny takes no longer than in a namespace without webhooks, an in-scope write
//! fails after `timeoutSeconds` and never later; then **killed** (SIGKILL): every row of
//! the matrix, out-of-scope writes admitted, in-scope writes refused.
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::core::Request;
use kube::core::params::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};

use crate::cases::{check, create_set, get_pod, run_on_node, say, verdict, wait_pods};
use crate::harness::{Env, Webhooks, serve_with_webhooks};
use crate::k8s::{
    Reply, headless_service, pods, send, services, statefulset, statefulsets, to_vec, wait_for,
};
use crate::process::Proc;

/// The chart's `webhook.timeoutSeconds`.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the API server refused the write because it could not call stateward.
fn refused(r: &Reply) -> bool {
    r.status >= 500 && r.message().contains("failed calling webhook")
}

/// Denied by a rule, in the webhook (403) or natively by the API server (422).
fn denied_by(r: &Reply, rule: &str) -> bool {
    matches!(r.status, 403 | 422) && r.message().contains(&format!("{rule}: "))
}

/// Denied by a rule's native policy.
fn denied_natively(r: &Reply, rule: &str) -> bool {
    denied_by(r, rule) && r.message().contains("ValidatingAdmissionPolicy")
}

/// Refused by the API server's own validation, before admission: some enforce rules
/// (an invalid serviceName, a selector that misses the template, a claim template without
/// storage) guard what the API server refuses anyway, in every mode.
fn refused_by_validation(r: &Reply) -> bool {
    r.status == 422 && r.message().contains(" is invalid: ")
}

/// What a row expects with stateward down.
#[derive(Clone, Copy)]
enum Expect {
    Admitted,
    /// Refused because the API server cannot call stateward.
    Refused,
    /// Denied by the rule's native policy, without stateward.
    Native(&'static str),
}

impl Expect {
    fn holds(self, r: &Reply) -> bool {
        match self {
            Expect::Admitted => admitted(r),
            Expect::Refused => refused(r),
            Expect::Native(rule) => denied_natively(r, rule) || refused_by_validation(r),
        }
    }

    fn describe(self) -> String {
        match self {
            Expect::Admitted => "admitted".into(),
            Expect::Refused => "refused".into(),
            Expect::Native(rule) => {
                format!("denied natively by {rule} (or by the API server's own validation)")
            }
        }
    }
}

fn admitted(r: &Reply) -> bool {
    (200..300).contains(&r.status)
}

fn configmaps(ns: &str) -> Request {
    Request::new(format!("/api/v1/namespaces/{ns}/configmaps"))
}

fn cluster_ip_service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]}
    })
}

fn plain_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// A `stateward serve` with `policies/<profile>.yaml` and the chart's configurations for
/// that profile and enforcement mode (`hybrid`: with its native policies, on a cluster
/// serving them), limited to namespaces labelled `stateward-outage: <variant>`.
async fn start_stateward(
    env: &Env,
    profile: &str,
    variant: &str,
    hybrid: bool,
) -> (Proc, Webhooks) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let which = Webhooks {
        prefix: format!("stateward-outage-{variant}"),
        sets: vec![
            format!("policy.profile={profile}"),
            format!("enforcement={}", if hybrid { "hybrid" } else { "webhook" }),
        ],
        selector: json!({"stateward-outage": variant}),
        api_versions: if hybrid {
            vec!["admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy".into()]
        } else {
            Vec::new()
        },
    };
    let proc = serve_with_webhooks(
        env,
        &format!("stateward-outage-{variant}"),
        &root.join(format!("policies/{profile}.yaml")),
        &which,
    )
    .await;
    (proc, which)
}

/// Dry-run creates of a set with grace 0 in `ns` until stateward denies one.
async fn wait_in_effect(env: &Env, ns: &str) {
    let mut sts = statefulset("probe", 1, "probe");
    sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(0);
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let (sts, pp) = (&sts, &pp);
    wait_for(
        "the outage webhooks to deny a grace-0 set",
        Duration::from_secs(30),
        || async move {
            let r = send(&env.admin, statefulsets(ns).create(pp, to_vec(sts))).await;
            if denied_by(&r, "statefulset.termination-grace-period") {
                Ok(())
            } else {
                Err(r.to_string())
            }
        },
    )
    .await;
    // The API server loads each native policy on its own: the pods' policy can come into
    // effect after the sets'. A dry-run force delete of db-0 until it is denied.
    let dp = DeleteParams {
        dry_run: true,
        ..DeleteParams::default().grace_period(0)
    };
    let dp = &dp;
    wait_for(
        "the outage policies to deny a force delete of db-0",
        Duration::from_secs(30),
        || async move {
            let r = send(&env.admin, pods(ns).delete("db-0", dp)).await;
            if denied_by(&r, "pod.force-delete") {
                Ok(())
            } else {
                Err(r.to_string())
            }
        },
    )
    .await;
}

async fn timed(what: impl std::future::Future<Output = Reply>) -> (Reply, Duration) {
    let t = Instant::now();
    let r = what.await;
    (r, t.elapsed())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Creates (and deletes) a ClusterIP Service three times in `ns`: the median create time.
async fn out_of_scope_create_time(env: &Env, ns: &str, tag: &str) -> (Duration, Vec<Reply>) {
    let mut times = Vec::new();
    let mut replies = Vec::new();
    for i in 0..3 {
        let name = format!("timed-{tag}-{i}");
        let (r, t) = timed(send(
            &env.admin,
            services(ns).create(&PostParams::default(), to_vec(&cluster_ip_service(&name))),
        ))
        .await;
        times.push(t);
        replies.push(r);
    }
    (median(times), replies)
}

/// A StatefulSet violating each enforce rule of baseline that compiles natively.
fn violations() -> Vec<(&'static str, Value)> {
    let base = || statefulset("bad", 1, "bad");
    let mut out = Vec::new();
    out.push((
        "statefulset.name-length",
        statefulset(&"n".repeat(60), 1, "long"),
    ));
    let mut v = base();
    v["spec"]["serviceName"] = json!("Not_A_Label");
    out.push(("statefulset.service-name", v));
    let mut v = base();
    v["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    out.push(("statefulset.selector-matches-template", v));
    let mut v = base();
    let unused = json!({
        "metadata": {"name": "unused"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}}
    });
    match v["spec"]["volumeClaimTemplates"].as_array_mut() {
        Some(templates) => templates.push(unused),
        None => v["spec"]["volumeClaimTemplates"] = json!([unused]),
    }
    out.push(("statefulset.claim-templates-mounted", v));
    let mut v = base();
    v["spec"]["volumeClaimTemplates"] = json!([{
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard"}
    }]);
    v["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "data", "mountPath": "/data"}]);
    out.push(("statefulset.claim-template-storage", v));
    let mut v = base();
    v["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(0);
    out.push(("statefulset.termination-grace-period", v));
    out
}

pub async fn outage_matrix(env: Arc<Env>) {
    let c = "outage_matrix";
    let env = &*env;
    let mut problems = Vec::new();
    // A namespace no webhook selects: the reference time of a write.
    let plain = env.namespace_labelled("outage-none", json!({})).await;
    for (profile, hybrid) in [("baseline", false), ("strict", false), ("baseline", true)] {
        let strict = profile == "strict";
        let variant = &if hybrid {
            format!("{profile}-hybrid")
        } else {
            profile.to_owned()
        };
        let ns = &env
            .namespace_labelled(
                &format!("outage-{variant}"),
                json!({"stateward-outage": variant}),
            )
            .await;
        // The workload, made before the webhooks exist (strict would refuse the suite's
        // plain set): a set of 2 with its headless Service, pods scheduled and running.
        create_set(env, ns, "db", 2).await;
        wait_pods(env, ns, "db", 2).await;
        let uid0 = run_on_node(env, ns, "db-0").await;
        let uid1 = run_on_node(env, ns, "db-1").await;
        let r = send(
            &env.admin,
            services(ns).create(&PostParams::default(), to_vec(&cluster_ip_service("web"))),
        )
        .await;
        assert_eq!(r.status, 201, "ClusterIP Service web: {r}");

        let (mut proc, which) = start_stateward(env, profile, variant, hybrid).await;
        wait_in_effect(env, ns).await;
        let pid = proc.pid().expect("stateward's pid");
        say(
            c,
            format!("{profile}: stateward (pid {pid}) answers; the chart's webhooks select {ns}"),
        );

        // Hung: SIGSTOP. The kernel still accepts connections; nothing answers them.
        signal(pid, "STOP");
        let (reference, _) = out_of_scope_create_time(env, &plain, profile).await;
        let (hung, replies) = out_of_scope_create_time(env, ns, "hung").await;
        say(
            c,
            format!(
                "{profile} hung: create a ClusterIP Service {:.0} ms (median of 3; no webhook: {:.0} ms)",
                hung.as_secs_f64() * 1e3,
                reference.as_secs_f64() * 1e3
            ),
        );
        check(
            &mut problems,
            replies.iter().all(admitted) && hung < reference + Duration::from_millis(500),
            format!(
                "{profile} hung: an out-of-scope write took {hung:?} (no webhook: {reference:?}): {}",
                replies
                    .iter()
                    .map(Reply::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        );
        // In scope, hung: each webhook entry a write meets waits timeoutSeconds. A force
        // delete meets one (validate-pods); a StatefulSet create two (mutate, which is then
        // ignored, and validate, which refuses).
        let (r, took) = timed(send(
            &env.admin,
            pods(ns).delete("db-0", &DeleteParams::default().grace_period(0)),
        ))
        .await;
        say(
            c,
            format!(
                "{profile} hung: a person's force delete of db-0: {r} after {:.1} s",
                took.as_secs_f64()
            ),
        );
        if hybrid {
            // Natively: denied at once, no webhook in the way.
            check(
                &mut problems,
                denied_natively(&r, "pod.force-delete") && took < Duration::from_secs(1),
                format!(
                    "{variant} hung: a force delete should be denied natively at once: {r} after {took:?}"
                ),
            );
        } else {
            // One entry, one wait; but the API server validates a DELETE inside its
            // optimistic-concurrency loop, so a pod changed meanwhile (its status) is
            // validated, and waited for, a second time.
            check(
                &mut problems,
                refused(&r)
                    && took >= TIMEOUT - Duration::from_millis(500)
                    && took <= 2 * TIMEOUT + Duration::from_secs(2),
                format!(
                    "{profile} hung: a force delete should fail after {TIMEOUT:?} (twice that if retried): {r} after {took:?}"
                ),
            );
        }
        let mut grace0 = statefulset("hung", 1, "hung");
        grace0["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(0);
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let (r, took) = timed(send(
            &env.admin,
            statefulsets(ns).create(&dry, to_vec(&grace0)),
        ))
        .await;
        say(
            c,
            format!(
                "{profile} hung: dry-run create of a StatefulSet: {r} after {:.1} s",
                took.as_secs_f64()
            ),
        );
        // In hybrid mode the native policy denies before the validating webhook is called:
        // only the mutating entry's wait.
        let waits = if hybrid { 1 } else { 2 };
        check(
            &mut problems,
            (if hybrid {
                denied_natively(&r, "statefulset.termination-grace-period")
            } else {
                refused(&r)
            }) && took >= waits * TIMEOUT - Duration::from_millis(500)
                && took <= waits * TIMEOUT + Duration::from_secs(2),
            format!(
                "{variant} hung: a StatefulSet create should fail after {waits} x {TIMEOUT:?}: {r} after {took:?}"
            ),
        );

        // Killed: SIGCONT so that SIGKILL is delivered at once, then every row.
        signal(pid, "CONT");
        signal(pid, "KILL");
        tokio::task::block_in_place(|| proc.stop());
        say(c, format!("{profile}: every stateward process killed"));

        let mut rows: Vec<(String, Expect, Reply)> = Vec::new();
        let out = |out_of_scope: bool| {
            if out_of_scope {
                Expect::Admitted
            } else {
                Expect::Refused
            }
        };
        let pp = PostParams::default();
        // Out of scope of every enforce rule of both profiles.
        let r = send(
            &env.admin,
            services(ns).create(&pp, to_vec(&cluster_ip_service("api"))),
        )
        .await;
        rows.push(("create a ClusterIP Service".into(), out(true), r));
        let label = json!({"metadata": {"labels": {"tier": "front"}}});
        let r = send(
            &env.admin,
            services(ns).patch("web", &PatchParams::default(), &Patch::Merge(&label)),
        )
        .await;
        rows.push(("label a ClusterIP Service".into(), out(true), r));
        let r = send(
            &env.admin,
            services(ns).delete("web", &DeleteParams::default()),
        )
        .await;
        rows.push(("delete a ClusterIP Service".into(), out(true), r));
        let r = send(
            &env.admin,
            pods(ns).delete("db-1", &DeleteParams::default()),
        )
        .await;
        rows.push((
            "graceful DELETE of a scheduled set pod (kubectl delete pod)".into(),
            out(true),
            r,
        ));
        let kubelet = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid1.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let r = send(&env.kubelet, pods(ns).delete("db-1", &kubelet)).await;
        rows.push((
            "the kubelet's final DELETE (grace 0, system:node:n1, uid precondition)".into(),
            out(true),
            r,
        ));
        let scale = json!({"spec": {"replicas": 1}});
        let r = send(
            &env.admin,
            statefulsets(ns).patch_subresource(
                "scale",
                "db",
                &PatchParams::default(),
                &Patch::Merge(&scale),
            ),
        )
        .await;
        rows.push((
            "kubectl scale sts db --replicas=1 (scale subresource)".into(),
            out(true),
            r,
        ));
        let r = send(
            &env.admin,
            pods(ns).create(&pp, to_vec(&plain_pod("loose"))),
        )
        .await;
        rows.push(("create a pod no StatefulSet owns".into(), out(true), r));
        let r = send(
            &env.admin,
            pods(ns).delete("loose", &DeleteParams::default().grace_period(0)),
        )
        .await;
        rows.push((
            "force-delete a pod no StatefulSet owns".into(),
            out(true),
            r,
        ));
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"k": "v"}});
        let r = send(&env.admin, configmaps(ns).create(&pp, to_vec(&cm))).await;
        rows.push(("create a ConfigMap".into(), out(true), r));
        // strict enforces service.headless-shape and service.headless-in-use.
        let r = send(
            &env.admin,
            services(ns).create(&pp, to_vec(&headless_service("cache", "cache"))),
        )
        .await;
        rows.push(("create a headless Service".into(), out(!strict), r));
        // In scope: an enforce rule protects these.
        let r = send(
            &env.admin,
            statefulsets(ns).create(&pp, to_vec(&statefulset("other", 1, "other"))),
        )
        .await;
        rows.push((
            "create a StatefulSet".into(),
            if hybrid {
                Expect::Admitted
            } else {
                Expect::Refused
            },
            r,
        ));
        let r = send(
            &env.admin,
            pods(ns).delete("db-0", &DeleteParams::default().grace_period(0)),
        )
        .await;
        rows.push((
            "a person's force delete of a scheduled, running set pod".into(),
            if hybrid {
                Expect::Native("pod.force-delete")
            } else {
                Expect::Refused
            },
            r,
        ));
        if hybrid {
            // Every enforce rule of the policy still denies, natively.
            for (rule, set) in violations() {
                let r = send(&env.admin, statefulsets(ns).create(&pp, to_vec(&set))).await;
                rows.push((
                    format!("a StatefulSet violating {rule}"),
                    Expect::Native(rule),
                    r,
                ));
            }
        }
        let r = send(
            &env.admin,
            services(ns).delete("db", &DeleteParams::default()),
        )
        .await;
        rows.push((
            "delete the headless Service of a running set".into(),
            out(!strict),
            r,
        ));

        let mut refused_out_of_scope = 0;
        let mut lost = 0;
        for (row, expect, r) in &rows {
            if matches!(expect, Expect::Admitted) && !admitted(r) {
                refused_out_of_scope += 1;
            }
            if matches!(expect, Expect::Native(_)) && !expect.holds(r) {
                lost += 1;
            }
            say(
                c,
                format!(
                    "{variant} down | {row} | expected {} | {r}",
                    expect.describe()
                ),
            );
            check(
                &mut problems,
                expect.holds(r),
                format!(
                    "{variant} down: {row}: expected {}, got {r}",
                    expect.describe()
                ),
            );
        }
        if hybrid {
            say(
                c,
                format!("{variant}: {lost} enforce rules lost with stateward down"),
            );
        }
        let pod = get_pod(env, ns, "db-0").await;
        check(
            &mut problems,
            pod.status == 200 && pod.body["metadata"]["uid"] == uid0.as_str(),
            format!("{profile}: db-0 should still be there after the refused force delete: {pod}"),
        );
        say(
            c,
            format!(
                "{variant}: {refused_out_of_scope} of {} out-of-scope writes refused",
                rows.iter()
                    .filter(|r| matches!(r.1, Expect::Admitted))
                    .count()
            ),
        );
        crate::harness::unregister_webhooks(&env.admin, &which).await;
    }
    verdict(problems);
}
