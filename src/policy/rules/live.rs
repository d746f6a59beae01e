//! Live-state rules: what a StatefulSet is stuck on right now. They read the set with its
//! pods, claims, PodDisruptionBudgets and nodes as listed from the cluster, and the time
//! (`now`, injected: no clock is read here). Only `stateward audit` evaluates them; the
//! webhook and `check` never do (they see changes or manifests, not live state).
use std::collections::HashMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Check, Mode, Rule, RuleId, RuleInfo, Sink, validate};
use crate::policy::Policy;
use crate::policy::identity::{Orphan, Reason};
use crate::policy::labels::selector_matches;
use crate::policy::review::Kind;
use crate::policy::settings::{
    DURATION_PATTERN, Invalid, Plain, Settings, Switch, check_duration, duration_seconds,
};
use crate::quantity::human_bytes;

/// The seconds of an optional duration parameter (checked when the policy was read; an
/// explicit null keeps the default).
fn seconds_or(text: Option<&str>, default: &str) -> i64 {
    text.or(Some(default))
        .and_then(duration_seconds)
        .unwrap_or_default()
}

const NOT_READY_FOR: &str = "10m";
const MARGIN: &str = "5m";
const PENDING_FOR: &str = "10m";

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RolloutBlockedRule {
    /// enforce: report and exit 1; warn and audit: report; off: not evaluated.
    pub mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
    /// How long a pod of the update revision may stay not Ready before the rollout counts
    /// as blocked (`90s`, `10m`, `2h`, `1d`; default `10m`).
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub not_ready_for: Option<String>,
}

impl RolloutBlockedRule {
    pub fn not_ready_for_seconds(&self) -> i64 {
        seconds_or(self.not_ready_for.as_deref(), NOT_READY_FOR)
    }
}

/// The catalogue's defaults (what `policies/baseline.yaml` shows).
impl Default for RolloutBlockedRule {
    fn default() -> Self {
        RolloutBlockedRule {
            mode: None,
            skippable: None,
            not_ready_for: Some(NOT_READY_FOR.into()),
        }
    }
}

impl Settings for RolloutBlockedRule {
    fn take_switch(&mut self) -> Switch {
        Switch::mode(self.mode.take(), self.skippable.take())
    }

    fn check(&self) -> Result<(), Invalid> {
        check_duration("notReadyFor", self.not_ready_for.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StuckTerminatingRule {
    /// enforce: report and exit 1; warn and audit: report; off: not evaluated.
    pub mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
    /// How long past its grace period a terminating pod counts as stuck (default `5m`).
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub margin: Option<String>,
}

impl StuckTerminatingRule {
    pub fn margin_seconds(&self) -> i64 {
        seconds_or(self.margin.as_deref(), MARGIN)
    }
}

/// The catalogue's defaults (what `policies/baseline.yaml` shows).
impl Default for StuckTerminatingRule {
    fn default() -> Self {
        StuckTerminatingRule {
            mode: None,
            skippable: None,
            margin: Some(MARGIN.into()),
        }
    }
}

impl Settings for StuckTerminatingRule {
    fn take_switch(&mut self) -> Switch {
        Switch::mode(self.mode.take(), self.skippable.take())
    }

    fn check(&self) -> Result<(), Invalid> {
        check_duration("margin", self.margin.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClaimUnboundRule {
    /// enforce: report and exit 1; warn and audit: report; off: not evaluated.
    pub mode: Option<Mode>,
    /// Whether an object may skip the rule with the annotation `stateward.io/skip`.
    pub skippable: Option<bool>,
    /// How long a claim may stay Pending (default `10m`).
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub pending_for: Option<String>,
}

impl ClaimUnboundRule {
    pub fn pending_for_seconds(&self) -> i64 {
        seconds_or(self.pending_for.as_deref(), PENDING_FOR)
    }
}

/// The catalogue's defaults (what `policies/baseline.yaml` shows).
impl Default for ClaimUnboundRule {
    fn default() -> Self {
        ClaimUnboundRule {
            mode: None,
            skippable: None,
            pending_for: Some(PENDING_FOR.into()),
        }
    }
}

impl Settings for ClaimUnboundRule {
    fn take_switch(&mut self) -> Switch {
        Switch::mode(self.mode.take(), self.skippable.take())
    }

    fn check(&self) -> Result<(), Invalid> {
        check_duration("pendingFor", self.pending_for.as_deref())
    }
}

/// The label the StatefulSet controller puts on every pod: the revision it was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// What a live-state rule sees: one set and the live objects related to it.
pub struct LiveInput<'a> {
    pub policy: &'a Policy,
    pub set: &'a StatefulSet,
    /// The set's pods (controlled by it).
    pub pods: &'a [&'a Pod],
    /// The set's claims (`<template>-<set>-<ordinal>`, labels matching its selector).
    pub claims: &'a [&'a PersistentVolumeClaim],
    /// Every PodDisruptionBudget of the set's namespace.
    pub pdbs: &'a [&'a PodDisruptionBudget],
    /// Nodes by name.
    pub nodes: &'a HashMap<&'a str, &'a Node>,
    /// Seconds since the Unix epoch.
    pub now: i64,
}

impl LiveInput<'_> {
    pub fn namespace(&self) -> &str {
        self.set.metadata.namespace.as_deref().unwrap_or("default")
    }
}

/// `90s`, `12m`, `3h`, `2d`: how long, for messages.
pub fn human_duration(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// The pod's Ready condition: (status, reason, last transition in epoch seconds).
fn ready_condition(pod: &Pod) -> Option<(&str, Option<&str>, Option<i64>)> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            (
                c.status.as_str(),
                c.reason.as_deref(),
                c.last_transition_time.as_ref().map(|t| t.0.as_second()),
            )
        })
}

pub static ROLLOUT_BLOCKED: Rule<RolloutBlockedRule> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetRolloutBlocked,
    name: "statefulset.rollout-blocked",
    kind: Kind::StatefulSet,
    operations: &[],
    action: validate(Mode::Warn, Check::Live(rollout_blocked)),
    skippable: true,
    summary: "audit only: a rollout waits on a pod of the update revision not Ready for longer than notReadyFor: names the pod to delete",
});

/// `statefulset.rollout-blocked`: under `OrderedReady` + `RollingUpdate`, the update
/// revision differs from the current one and a pod of the update revision has not been
/// Ready for longer than the threshold. The controller waits for that pod forever (it never
/// replaces a pod that is not Ready): the forced rollback of kubernetes/kubernetes#67250.
pub fn rollout_blocked(input: &LiveInput<'_>, sink: &mut Sink) {
    let set = input.set;
    let Some(status) = set.status.as_ref() else {
        return;
    };
    let (Some(update), Some(current)) = (
        status.update_revision.as_deref(),
        status.current_revision.as_deref(),
    ) else {
        return;
    };
    if update == current {
        return;
    }
    let ordered = set
        .spec
        .pod_management_policy
        .as_deref()
        .unwrap_or("OrderedReady")
        == "OrderedReady";
    let rolling = set
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if !ordered || !rolling {
        return;
    }
    let Some(settings) = input.policy.settings(&ROLLOUT_BLOCKED) else {
        return;
    };
    let threshold = settings.not_ready_for_seconds();
    let mut pods: Vec<&&Pod> = input
        .pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(REVISION_LABEL))
                    .map(String::as_str)
                    == Some(update)
        })
        .collect();
    pods.sort_by_key(|p| name_of(&p.metadata).to_owned());
    for pod in pods {
        let ready = ready_condition(pod);
        if ready.is_some_and(|(s, _, _)| s == "True") {
            continue;
        }
        let since = ready.and_then(|(_, _, t)| t).or_else(|| {
            pod.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
        });
        let Some(since) = since else {
            continue;
        };
        let waited = input.now - since;
        if waited < threshold {
            continue;
        }
        let name = name_of(&pod.metadata);
        let why = ready
            .and_then(|(_, reason, _)| reason)
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        sink.violation(
            format!("pods/{name}"),
            format!(
                "rollout from revision {current} to {update} is blocked: pod {name} of the \
                 update revision has not been Ready for {}{why}, and under OrderedReady + \
                 RollingUpdate the controller waits for it forever (kubernetes/kubernetes#67250). \
                 Fix the template (or roll it back), then delete the pod so the controller \
                 re-creates it from the fixed template: kubectl delete pod {name} -n {}",
                human_duration(waited),
                input.namespace()
            ),
        );
    }
}

/// The node's Ready condition: (status, since when).
fn node_ready(node: &Node) -> Option<(&str, Option<i64>)> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            (
                c.status.as_str(),
                c.last_transition_time.as_ref().map(|t| t.0.as_second()),
            )
        })
}

pub static POD_STUCK_TERMINATING: Rule<StuckTerminatingRule> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetPodStuckTerminating,
    name: "statefulset.pod-stuck-terminating",
    kind: Kind::StatefulSet,
    operations: &[],
    action: validate(Mode::Warn, Check::Live(pod_stuck_terminating)),
    skippable: true,
    summary: "audit only: a pod Terminating past its grace period plus margin on a node not Ready: confirm the node is down, then force delete",
});

/// `statefulset.pod-stuck-terminating`: a pod of the set still exists longer than its
/// grace period plus the policy's margin after it was deleted (`deletionTimestamp` is the
/// deletion time plus the grace period), on a node whose Ready condition is not True. The
/// kubelet cannot confirm its containers stopped, so the controller never re-creates it.
pub fn pod_stuck_terminating(input: &LiveInput<'_>, sink: &mut Sink) {
    let (Some(settings), Some(force_delete)) = (
        input.policy.settings(&POD_STUCK_TERMINATING),
        input.policy.settings(&super::pod::FORCE_DELETE),
    ) else {
        return;
    };
    let margin = settings.margin_seconds();
    let annotation = force_delete.override_annotation();
    let mut pods: Vec<&&Pod> = input.pods.iter().collect();
    pods.sort_by_key(|p| name_of(&p.metadata).to_owned());
    for pod in pods {
        let Some(deadline) = pod
            .metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
        else {
            continue;
        };
        let overdue = input.now - deadline;
        if overdue < margin {
            continue;
        }
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        // A pod on a node that no longer exists is removed by the pod garbage collector.
        let Some(node) = input.nodes.get(node_name) else {
            continue;
        };
        let (status, since) = node_ready(node).unwrap_or(("Unknown", None));
        if status == "True" {
            continue;
        }
        let since = since
            .map(|t| format!(" for {}", human_duration(input.now - t)))
            .unwrap_or_default();
        let name = name_of(&pod.metadata);
        let ns = input.namespace();
        sink.violation(
            format!("pods/{name}"),
            format!(
                "pod {name} is stuck Terminating ({} past its grace period) on node \
                 {node_name}, whose Ready condition is {status}{since}: the kubelet cannot \
                 confirm its containers stopped, so the controller never re-creates it. \
                 Confirm the node is down (powered off, or fenced from storage and network) \
                 before a force delete, which otherwise may run two pods with one identity; \
                 then: kubectl annotate pod {name} -n {ns} {annotation}=true && \
                 kubectl delete pod {name} -n {ns} --grace-period=0 --force",
                human_duration(overdue)
            ),
        );
    }
}

/// The claim's storage class as a person reads it.
fn storage_class(claim: &PersistentVolumeClaim) -> String {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .or_else(|| {
            claim
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class").cloned())
        })
        .map(|c| format!("storage class `{c}`"))
        .unwrap_or_else(|| "no storage class (the cluster default, if any)".into())
}

pub static CLAIM_UNBOUND: Rule<ClaimUnboundRule> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetClaimUnbound,
    name: "statefulset.claim-unbound",
    kind: Kind::StatefulSet,
    operations: &[],
    action: validate(Mode::Warn, Check::Live(claim_unbound)),
    skippable: true,
    summary: "audit only: a claim of the set Pending for longer than pendingFor: names it and its storage class",
});

/// `statefulset.claim-unbound`: a claim of the set has been `Pending` longer than the
/// threshold. Its pod cannot start, and under OrderedReady no later pod starts either.
pub fn claim_unbound(input: &LiveInput<'_>, sink: &mut Sink) {
    let Some(settings) = input.policy.settings(&CLAIM_UNBOUND) else {
        return;
    };
    let threshold = settings.pending_for_seconds();
    let ordered = input
        .set
        .spec
        .pod_management_policy
        .as_deref()
        .unwrap_or("OrderedReady")
        == "OrderedReady";
    let mut claims: Vec<&&PersistentVolumeClaim> = input.claims.iter().collect();
    claims.sort_by_key(|c| name_of(&c.metadata).to_owned());
    for claim in claims {
        let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase != Some("Pending") || claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(created) = claim
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
        else {
            continue;
        };
        let pending = input.now - created;
        if pending < threshold {
            continue;
        }
        let name = name_of(&claim.metadata);
        let later = if ordered {
            ", and under OrderedReady no later pod starts either"
        } else {
            ""
        };
        sink.violation(
            format!("persistentvolumeclaims/{name}"),
            format!(
                "claim {name} ({}) has been Pending for {}: its pod cannot start{later}. See \
                 its events (kubectl describe pvc {name} -n {}): no provisioner for the class, \
                 no matching PersistentVolume, or WaitForFirstConsumer with a pod that cannot \
                 be scheduled",
                storage_class(claim),
                human_duration(pending),
                input.namespace()
            ),
        );
    }
}

/// How many of `replicas` an int-or-percent stands for, rounded up (as the disruption
/// controller scales both minAvailable and maxUnavailable).
fn scaled(value: &IntOrString, replicas: i32) -> Option<i64> {
    match value {
        IntOrString::Int(n) => Some(i64::from(*n)),
        IntOrString::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.trim().parse().ok()?;
            Some((percent * i64::from(replicas) + 99) / 100)
        }
    }
}

fn show(value: &IntOrString) -> String {
    match value {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => format!("\"{s}\""),
    }
}

pub static DISRUPTION_BLOCKED: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetDisruptionBlocked,
    name: "statefulset.disruption-blocked",
    kind: Kind::StatefulSet,
    operations: &[],
    action: validate(Mode::Warn, Check::Live(disruption_blocked)),
    skippable: true,
    summary: "audit only: a PodDisruptionBudget selecting the set allows no disruption at full health, so drains hang",
});

/// `statefulset.disruption-blocked`: a PodDisruptionBudget selecting the set's pods allows
/// no disruption even when every replica is healthy (`minAvailable` ≥ replicas, or
/// `maxUnavailable` 0): every drain of their nodes hangs.
pub fn disruption_blocked(input: &LiveInput<'_>, sink: &mut Sink) {
    let replicas = super::statefulset::replicas(input.set);
    if replicas < 1 {
        return;
    }
    let Some(labels) = input
        .set
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
    else {
        return;
    };
    let mut pdbs: Vec<&&PodDisruptionBudget> = input.pdbs.iter().collect();
    pdbs.sort_by_key(|p| name_of(&p.metadata).to_owned());
    for pdb in pdbs {
        let Some(spec) = pdb.spec.as_ref() else {
            continue;
        };
        let Some(selector) = spec.selector.as_ref() else {
            continue;
        };
        if !selector_matches(selector, labels) {
            continue;
        }
        let blocking = if let Some(min) = &spec.min_available {
            scaled(min, replicas)
                .filter(|n| *n >= i64::from(replicas))
                .map(|_| format!("minAvailable: {}", show(min)))
        } else if let Some(max) = &spec.max_unavailable {
            scaled(max, replicas)
                .filter(|n| *n <= 0)
                .map(|_| format!("maxUnavailable: {}", show(max)))
        } else {
            None
        };
        let Some(blocking) = blocking else {
            continue;
        };
        let name = name_of(&pdb.metadata);
        sink.violation(
            format!("poddisruptionbudgets/{name}"),
            format!(
                "PodDisruptionBudget {name} ({blocking}) allows no disruption even when all \
                 {replicas} replica(s) are healthy: kubectl drain, node upgrades and the cluster \
                 autoscaler hang on these pods. Allow one: maxUnavailable: 1 (or minAvailable \
                 below replicas)"
            ),
        );
    }
}

pub static ORPHANED_CLAIM: Rule<Plain> = Rule::new(RuleInfo {
    id: RuleId::StatefulSetOrphanedClaim,
    name: "statefulset.orphaned-claim",
    kind: Kind::StatefulSet,
    operations: &[],
    action: validate(Mode::Warn, Check::Orphan(orphaned_claim)),
    skippable: false,
    summary: "audit only: a claim left by a scale-down or a deleted set (the collector's classifier), with its size",
});

/// `statefulset.orphaned-claim`: one finding per claim the classifier found, with its size
/// and how to collect it.
pub fn orphaned_claim(o: &Orphan, out: &mut Sink) {
    let size = o
        .requested_bytes
        .map(human_bytes)
        .unwrap_or_else(|| "no size".into());
    let why = match o.reason {
        Reason::ScaledDown => format!(
            "ordinal {} is outside the replicas of StatefulSet {} (scaled down)",
            o.ordinal, o.statefulset
        ),
        Reason::SetDeleted => format!("its StatefulSet {} no longer exists", o.statefulset),
    };
    let verified = if o.verified {
        ""
    } else {
        " (unverified: only its name and labels point at the set)"
    };
    out.violation(
        format!("persistentvolumeclaims/{}", o.claim),
        format!(
            "claim {} ({size} requested, template {}) is orphaned: {why}{verified}; its volume \
             is kept and billed. Review it with: stateward gc -n {}, and delete it with --delete",
            o.claim, o.template, o.namespace
        ),
    );
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn at(seconds_ago: i64) -> String {
        jiff::Timestamp::from_second(NOW - seconds_ago)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    }

    fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).expect("fixture decodes")
    }

    /// A set `web` in `shop`, OrderedReady + RollingUpdate, mid-rollout from `web-old` to
    /// `web-new`.
    fn set(replicas: i32) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-web"},
            "spec": {
                "replicas": replicas,
                "serviceName": "web",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "main", "image": "x"}]}}
            },
            "status": {"replicas": replicas, "currentRevision": "web-old",
                       "updateRevision": "web-new"}
        })
    }

    fn pod(name: &str, revision: &str, ready: &str, since: i64) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": at(since),
                         "labels": {"app": "web", REVISION_LABEL: revision}},
            "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "x"}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": ready, "reason": "ContainersNotReady",
                 "lastTransitionTime": at(since)}]}
        })
    }

    fn node(name: &str, ready: &str) -> Node {
        typed(json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": ready,
                                       "lastTransitionTime": at(900)}]}
        }))
    }

    fn claim(name: &str, phase: &str, age: i64) -> PersistentVolumeClaim {
        typed(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": at(age)},
            "spec": {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": phase}
        }))
    }

    fn pdb(spec: Value) -> PodDisruptionBudget {
        typed(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web-pdb", "namespace": "shop"}, "spec": spec
        }))
    }

    struct Fixture {
        policy: Policy,
        set: StatefulSet,
        pods: Vec<Pod>,
        claims: Vec<PersistentVolumeClaim>,
        pdbs: Vec<PodDisruptionBudget>,
        nodes: Vec<Node>,
    }

    impl Fixture {
        fn new(set: Value) -> Fixture {
            Fixture {
                policy: Policy::default(),
                set: typed(set),
                pods: Vec::new(),
                claims: Vec::new(),
                pdbs: Vec::new(),
                nodes: Vec::new(),
            }
        }

        fn run(&self, rule: fn(&LiveInput<'_>, &mut Sink)) -> Vec<super::super::Violation> {
            let pods: Vec<&Pod> = self.pods.iter().collect();
            let claims: Vec<&PersistentVolumeClaim> = self.claims.iter().collect();
            let pdbs: Vec<&PodDisruptionBudget> = self.pdbs.iter().collect();
            let nodes: HashMap<&str, &Node> = self
                .nodes
                .iter()
                .map(|n| (n.metadata.name.as_deref().unwrap_or_default(), n))
                .collect();
            let input = LiveInput {
                policy: &self.policy,
                set: &self.set,
                pods: &pods,
                claims: &claims,
                pdbs: &pdbs,
                nodes: &nodes,
                now: NOW,
            };
            let mut sink = Sink::default();
            rule(&input, &mut sink);
            sink.violations
        }
    }

    #[test]
    fn rollout_blocked_names_the_update_pod_not_ready_past_the_threshold() {
        let mut f = Fixture::new(set(3));
        f.pods = vec![
            typed(pod("web-0", "web-old", "True", 3600)),
            typed(pod("web-1", "web-old", "True", 3600)),
            typed(pod("web-2", "web-new", "False", 11 * 60)),
        ];
        let v = f.run(rollout_blocked);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].field, "pods/web-2");
        assert!(
            v[0].message.contains("kubectl delete pod web-2 -n shop"),
            "{}",
            v[0].message
        );
        assert!(
            v[0].message.contains("web-old to web-new"),
            "{}",
            v[0].message
        );
        assert!(v[0].message.contains("11m"), "{}", v[0].message);
    }

    #[test]
    fn rollout_blocked_waits_for_the_threshold_and_needs_a_rollout() {
        let mut f = Fixture::new(set(3));
        f.pods = vec![typed(pod("web-2", "web-new", "False", 9 * 60))];
        assert!(f.run(rollout_blocked).is_empty(), "not yet 10 minutes");
        f.policy
            .settings_mut(&ROLLOUT_BLOCKED)
            .expect("declared")
            .not_ready_for = Some("60s".into());
        assert_eq!(f.run(rollout_blocked).len(), 1, "policy threshold");
        // Same revisions: no rollout in progress.
        let mut done = set(3);
        done["status"]["updateRevision"] = json!("web-old");
        let mut g = Fixture::new(done);
        g.pods = vec![typed(pod("web-2", "web-old", "False", 3600))];
        assert!(g.run(rollout_blocked).is_empty());
        // Parallel and OnDelete never block this way.
        for (pointer, value) in [
            ("/spec/podManagementPolicy", json!("Parallel")),
            ("/spec/updateStrategy", json!({"type": "OnDelete"})),
        ] {
            let mut other = set(3);
            if let Some((parent, key)) = pointer.rsplit_once('/')
                && let Some(obj) = other.pointer_mut(parent).and_then(Value::as_object_mut)
            {
                obj.insert(key.into(), value);
            }
            let mut h = Fixture::new(other);
            h.pods = vec![typed(pod("web-2", "web-new", "False", 3600))];
            assert!(h.run(rollout_blocked).is_empty(), "{pointer}");
        }
        // A Ready pod of the update revision, or a pod of the old one, is no block.
        let mut k = Fixture::new(set(3));
        k.pods = vec![
            typed(pod("web-2", "web-new", "True", 3600)),
            typed(pod("web-1", "web-old", "False", 3600)),
        ];
        assert!(k.run(rollout_blocked).is_empty());
    }

    fn terminating(name: &str, node: &str, overdue: i64) -> Pod {
        let mut p = pod(name, "web-old", "False", 3600);
        p["metadata"]["deletionTimestamp"] = json!(at(overdue));
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        p["spec"]["nodeName"] = json!(node);
        typed(p)
    }

    #[test]
    fn stuck_terminating_on_a_node_not_ready_says_confirm_then_force() {
        let mut f = Fixture::new(set(3));
        f.nodes = vec![node("dead", "Unknown"), node("alive", "True")];
        f.pods = vec![
            terminating("web-0", "dead", 600),
            terminating("web-1", "alive", 600),
            terminating("web-2", "dead", 10),
        ];
        let v = f.run(pod_stuck_terminating);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].field, "pods/web-0");
        let m = &v[0].message;
        assert!(m.contains("node dead") && m.contains("Unknown"), "{m}");
        assert!(m.contains("Confirm the node is down"), "{m}");
        assert!(m.contains("stateward.io/allow-force-delete=true"), "{m}");
        assert!(m.contains("--grace-period=0 --force"), "{m}");
        // The margin comes from the policy; a node that is gone is the pod GC's business.
        f.policy
            .settings_mut(&POD_STUCK_TERMINATING)
            .expect("declared")
            .margin = Some("5s".into());
        assert_eq!(f.run(pod_stuck_terminating).len(), 2);
        f.nodes.clear();
        assert!(f.run(pod_stuck_terminating).is_empty());
    }

    #[test]
    fn claim_unbound_names_the_claim_and_its_class() {
        let mut f = Fixture::new(set(3));
        f.claims = vec![
            claim("data-web-0", "Bound", 3600),
            claim("data-web-1", "Pending", 3600),
            claim("data-web-2", "Pending", 60),
        ];
        let v = f.run(claim_unbound);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].field, "persistentvolumeclaims/data-web-1");
        assert!(
            v[0].message.contains("storage class `fast`"),
            "{}",
            v[0].message
        );
        assert!(v[0].message.contains("60m"), "{}", v[0].message);
        assert!(
            v[0].message.contains("no later pod"),
            "OrderedReady by default"
        );
        f.policy
            .settings_mut(&CLAIM_UNBOUND)
            .expect("declared")
            .pending_for = Some("1s".into());
        assert_eq!(f.run(claim_unbound).len(), 2);
    }

    #[test]
    fn disruption_blocked_at_full_health_only() {
        let selects = json!({"matchLabels": {"app": "web"}});
        let cases = [
            (json!({"selector": selects, "minAvailable": 3}), true),
            (json!({"selector": selects, "minAvailable": 4}), true),
            (json!({"selector": selects, "minAvailable": "100%"}), true),
            (json!({"selector": selects, "minAvailable": "90%"}), true), // ceil(2.7) = 3
            (json!({"selector": selects, "minAvailable": 2}), false),
            (json!({"selector": selects, "minAvailable": "60%"}), false),
            (json!({"selector": selects, "maxUnavailable": 0}), true),
            (json!({"selector": selects, "maxUnavailable": "0%"}), true),
            (json!({"selector": selects, "maxUnavailable": "10%"}), false), // rounds up to 1
            (json!({"selector": selects, "maxUnavailable": 1}), false),
            (
                json!({"selector": {"matchLabels": {"app": "other"}}, "minAvailable": 3}),
                false,
            ),
            (json!({"minAvailable": 3}), false),
        ];
        for (spec, blocked) in cases {
            let mut f = Fixture::new(set(3));
            f.pdbs = vec![pdb(spec.clone())];
            let v = f.run(disruption_blocked);
            assert_eq!(v.len(), usize::from(blocked), "{spec}: {v:?}");
            if blocked {
                assert_eq!(v[0].field, "poddisruptionbudgets/web-pdb");
                assert!(
                    v[0].message.contains("all 3 replica(s)"),
                    "{}",
                    v[0].message
                );
            }
        }
        let mut zero = Fixture::new(set(0));
        zero.pdbs = vec![pdb(json!({"selector": selects, "minAvailable": 1}))];
        assert!(
            zero.run(disruption_blocked).is_empty(),
            "no pods, nothing to drain"
        );
    }
}
