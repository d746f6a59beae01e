//! What a pass keeps of each pod and claim between their lists and the evaluation of their
//! StatefulSet: only what the live-state rules read ([`crate::policy::rules::live`]), in a
//! few strings and integers, not the k8s-openapi structs (a `Pod` with empty fields is
//! about 2 KB; a [`PodEntry`] is about 100 bytes with its strings; the texts many entries
//! hold alike, such as nodes, revisions and storage classes, are kept once). When a set is evaluated
//! its pods and claims are made back into `Pod`s and `PersistentVolumeClaim`s carrying
//! exactly those fields ([`PodEntry::pod`], [`ClaimEntry::claim`]), so the rules read them
//! as they read listed objects and decide the same (the tests hold the two equal).
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, Pod,
    PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::cluster::views::shared_str;
use crate::policy::rules::live::REVISION_LABEL;

/// The beta annotation a claim may name its storage class with.
pub const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn seconds(time: &Option<Time>) -> Option<i64> {
    time.as_ref().map(|t| t.0.as_second())
}

fn time(seconds: Option<i64>) -> Option<Time> {
    seconds.and_then(|s| jiff::Timestamp::from_second(s).ok().map(Time))
}

/// Texts many entries hold alike (nodes, revisions, phases, classes, reasons), kept once.
fn shared(text: &Option<String>) -> Option<Arc<str>> {
    text.as_deref().map(shared_str)
}

/// A pod's Ready condition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ready {
    status: Arc<str>,
    reason: Option<Arc<str>>,
    since: Option<i64>,
}

/// A pod of a StatefulSet as the live-state rules read it: its name, revision label,
/// creation and deletion times, node and Ready condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEntry {
    name: Box<str>,
    revision: Option<Arc<str>>,
    created: Option<i64>,
    deleted: Option<i64>,
    node: Option<Arc<str>>,
    ready: Option<Ready>,
}

impl PodEntry {
    pub fn of(pod: &Pod) -> PodEntry {
        let meta = &pod.metadata;
        PodEntry {
            name: meta.name.as_deref().unwrap_or_default().into(),
            revision: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_LABEL))
                .map(|r| shared_str(r)),
            created: seconds(&meta.creation_timestamp),
            deleted: seconds(&meta.deletion_timestamp),
            node: pod.spec.as_ref().and_then(|s| shared(&s.node_name)),
            ready: pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .map(|c| Ready {
                    status: shared_str(&c.status),
                    reason: shared(&c.reason),
                    since: seconds(&c.last_transition_time),
                }),
        }
    }

    /// The pod with only the fields kept.
    pub fn pod(&self) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.to_string()),
                labels: self
                    .revision
                    .as_ref()
                    .map(|r| BTreeMap::from([(REVISION_LABEL.to_owned(), r.to_string())])),
                creation_timestamp: time(self.created),
                deletion_timestamp: time(self.deleted),
                ..ObjectMeta::default()
            },
            spec: self.node.as_ref().map(|n| PodSpec {
                node_name: Some(n.to_string()),
                ..PodSpec::default()
            }),
            status: self.ready.as_ref().map(|r| PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".to_owned(),
                    status: r.status.to_string(),
                    reason: r.reason.as_deref().map(str::to_owned),
                    last_transition_time: time(r.since),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }
}

/// A claim of a StatefulSet as the live-state rules read it: its name, phase, creation and
/// deletion times and storage class (field or beta annotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimEntry {
    name: Box<str>,
    phase: Option<Arc<str>>,
    created: Option<i64>,
    deleted: Option<i64>,
    class: Option<Arc<str>>,
    beta_class: Option<Arc<str>>,
}

impl ClaimEntry {
    pub fn of(claim: &PersistentVolumeClaim) -> ClaimEntry {
        let meta = &claim.metadata;
        ClaimEntry {
            name: meta.name.as_deref().unwrap_or_default().into(),
            phase: claim.status.as_ref().and_then(|s| shared(&s.phase)),
            created: seconds(&meta.creation_timestamp),
            deleted: seconds(&meta.deletion_timestamp),
            class: claim
                .spec
                .as_ref()
                .and_then(|s| shared(&s.storage_class_name)),
            beta_class: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(BETA_STORAGE_CLASS))
                .map(|c| shared_str(c)),
        }
    }

    /// The claim with only the fields kept.
    pub fn claim(&self) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(self.name.to_string()),
                annotations: self
                    .beta_class
                    .as_ref()
                    .map(|c| BTreeMap::from([(BETA_STORAGE_CLASS.to_owned(), c.to_string())])),
                creation_timestamp: time(self.created),
                deletion_timestamp: time(self.deleted),
                ..ObjectMeta::default()
            },
            spec: self.class.as_ref().map(|c| PersistentVolumeClaimSpec {
                storage_class_name: Some(c.to_string()),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: self.phase.as_ref().map(|p| PersistentVolumeClaimStatus {
                phase: Some(p.to_string()),
                ..PersistentVolumeClaimStatus::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{Value, json};

    use super::*;
    use crate::policy::Policy;
    use crate::policy::rules::Sink;
    use crate::policy::rules::live::{
        LiveInput, claim_unbound, pod_stuck_terminating, rollout_blocked,
    };

    fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).expect("fixture")
    }

    fn violations(input: &LiveInput<'_>) -> Vec<(String, String)> {
        let mut sink = Sink::default();
        rollout_blocked(input, &mut sink);
        pod_stuck_terminating(input, &mut sink);
        claim_unbound(input, &mut sink);
        sink.violations
            .into_iter()
            .map(|v| (v.field, v.message))
            .collect()
    }

    #[test]
    fn the_rules_decide_the_same_on_the_entries_as_on_the_listed_objects() {
        let set: StatefulSet = typed(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u"},
            "spec": {"replicas": 3, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}},
            "status": {"replicas": 3, "currentRevision": "web-old", "updateRevision": "web-new"}
        }));
        let pods: Vec<Pod> = vec![
            typed(
                json!({"metadata": {"name": "web-2", "labels": {"app": "web", REVISION_LABEL: "web-new"},
                "creationTimestamp": "2023-11-14T00:00:00Z"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
                "status": {"phase": "Running", "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                     "lastTransitionTime": "2023-11-14T01:00:00Z"}]}}),
            ),
            typed(
                json!({"metadata": {"name": "web-1", "labels": {REVISION_LABEL: "web-new"},
                "creationTimestamp": "2023-11-14T00:00:00Z"}}),
            ),
            typed(
                json!({"metadata": {"name": "web-0", "creationTimestamp": "2023-11-14T00:00:00Z",
                "deletionTimestamp": "2023-11-14T02:00:00Z"},
                "spec": {"nodeName": "n2", "containers": []},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
        ];
        let claims: Vec<PersistentVolumeClaim> = vec![
            typed(
                json!({"metadata": {"name": "data-web-0", "creationTimestamp": "2023-11-14T00:00:00Z"},
                "spec": {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"]},
                "status": {"phase": "Pending"}}),
            ),
            typed(
                json!({"metadata": {"name": "data-web-1", "creationTimestamp": "2023-11-14T00:00:00Z",
                "annotations": {BETA_STORAGE_CLASS: "slow", "other": "x"}},
                "status": {"phase": "Pending"}}),
            ),
            typed(
                json!({"metadata": {"name": "data-web-2", "creationTimestamp": "2023-11-14T00:00:00Z"},
                "status": {"phase": "Bound"}}),
            ),
        ];
        let nodes: Vec<Node> = vec![typed(json!({"metadata": {"name": "n2"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown",
                "lastTransitionTime": "2023-11-14T01:30:00Z"}]}}))];
        let nodes: HashMap<&str, &Node> = nodes
            .iter()
            .map(|n| (n.metadata.name.as_deref().unwrap_or_default(), n))
            .collect();
        let rebuilt_pods: Vec<Pod> = pods.iter().map(|p| PodEntry::of(p).pod()).collect();
        let rebuilt_claims: Vec<PersistentVolumeClaim> =
            claims.iter().map(|c| ClaimEntry::of(c).claim()).collect();
        let policy = Policy::baseline();
        let input = |pods: &[Pod], claims: &[PersistentVolumeClaim]| {
            let pods: Vec<&Pod> = pods.iter().collect();
            let claims: Vec<&PersistentVolumeClaim> = claims.iter().collect();
            violations(&LiveInput {
                policy: &policy,
                set: &set,
                pods: &pods,
                claims: &claims,
                pdbs: &[],
                nodes: &nodes,
                now: 1_700_000_000,
            })
        };
        let listed = input(&pods, &claims);
        assert_eq!(listed.len(), 5, "{listed:?}");
        assert_eq!(input(&rebuilt_pods, &rebuilt_claims), listed);
        for (pod, rebuilt) in pods.iter().zip(&rebuilt_pods) {
            assert_eq!(PodEntry::of(rebuilt), PodEntry::of(pod));
        }
        for (claim, rebuilt) in claims.iter().zip(&rebuilt_claims) {
            assert_eq!(ClaimEntry::of(rebuilt), ClaimEntry::of(claim));
        }
    }
}
