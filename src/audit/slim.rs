//! What a pass keeps of the pods, claims and nodes it lists: only the fields the live-state
//! rules and the orphan classifier read, dropped page by page as the lists come in. Pods
//! are most of a cluster's objects and the engine never evaluates them (only StatefulSets
//! and Services, which are kept whole), so their containers, the managed fields and
//! kubectl's last-applied copy are never held for the length of a pass.
use k8s_openapi::api::core::v1::{
    Node, NodeStatus, PersistentVolumeClaim, Pod, PodSpec, PodStatus, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Keeps a pod's metadata (labels, owners, timestamps), node, grace period and claim
/// volumes, phase and conditions.
pub fn pod(pod: &mut Pod) {
    meta(&mut pod.metadata);
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            node_name: spec.node_name,
            termination_grace_period_seconds: spec.termination_grace_period_seconds,
            volumes: spec.volumes.map(|volumes| {
                volumes
                    .into_iter()
                    .filter(|v| v.persistent_volume_claim.is_some())
                    .map(|v| Volume {
                        name: v.name,
                        persistent_volume_claim: v.persistent_volume_claim,
                        ..Volume::default()
                    })
                    .collect()
            }),
            ..PodSpec::default()
        });
    }
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            phase: status.phase,
            conditions: status.conditions,
            reason: status.reason,
            ..PodStatus::default()
        });
    }
}

/// Drops a claim's managed fields and last-applied copy.
pub fn claim(claim: &mut PersistentVolumeClaim) {
    meta(&mut claim.metadata);
}

/// Keeps a node's name and conditions (not its images, addresses, capacity).
pub fn node(node: &mut Node) {
    meta(&mut node.metadata);
    node.spec = None;
    if let Some(status) = node.status.take() {
        node.status = Some(NodeStatus {
            conditions: status.conditions,
            ..NodeStatus::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gc::collect::pod_view;

    #[test]
    fn a_slim_pod_reads_as_the_pod_for_the_classifier_and_the_live_rules() {
        let mut full: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "shop", "uid": "p",
                         "labels": {"app": "web", "controller-revision-hash": "web-1"},
                         "annotations": {LAST_APPLIED: "{}", "keep": "me"},
                         "managedFields": [{"manager": "kubectl"}],
                         "deletionTimestamp": "2026-01-01T00:00:00Z",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                              "name": "web", "uid": "s", "controller": true}]},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30,
                     "containers": [{"name": "c", "image": "x", "env": [{"name": "A", "value": "b"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
                                 {"name": "tmp", "emptyDir": {}}]},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "False"}],
                       "containerStatuses": [{"name": "c", "image": "x", "imageID": "", "ready": false,
                                              "restartCount": 3}]}
        }))
        .expect("pod");
        let before = pod_view(&full);
        pod(&mut full);
        assert_eq!(pod_view(&full), before);
        let spec = full.spec.as_ref().expect("spec");
        assert!(spec.containers.is_empty());
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.volumes.as_ref().map(Vec::len), Some(1));
        let status = full.status.as_ref().expect("status");
        assert!(status.container_statuses.is_none());
        assert_eq!(status.conditions.as_ref().map(Vec::len), Some(1));
        assert!(full.metadata.managed_fields.is_none());
        let annotations = full.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations.len(), 1);
        assert!(full.metadata.deletion_timestamp.is_some());
        assert!(full.metadata.owner_references.is_some());
    }
}
