//! The StatefulSet the benchmarks through a real API server (benches/apiserver.rs) create
//! and the cold-review benchmark (benches/cold.rs) reviews. Included by path, with
//! tests/e2e/k8s.rs included as `k8s` beside it.
use serde_json::{Value, json};

/// The e2e suite's StatefulSet (one the baseline policy admits), replicas 0, padded to
/// about 7 KB with labels, annotations and environment variables as real sets carry them.
pub fn padded(name: &str, with_affinity: bool) -> Value {
    let mut sts = crate::k8s::statefulset(name, 0, name);
    if with_affinity {
        // What stateward's mutating webhook would add, so it has nothing to patch.
        sts["spec"]["template"]["spec"]["affinity"] = json!({"podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
                "labelSelector": {"matchLabels": {"app": name}},
                "topologyKey": "kubernetes.io/hostname"}}]}});
    }
    sts["metadata"]["labels"] = json!({
        "app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "shop",
        "app.kubernetes.io/managed-by": "bench", "team": "orders"});
    sts["metadata"]["annotations"] =
        json!({"owner": "team-orders", "runbook": "https://runbooks.example.com/orders-db"});
    let env: Vec<Value> = (0..96)
        .map(|i| json!({"name": format!("SETTING_NUMBER_{i:02}"), "value": format!("a-value-of-some-length-{i:02}")}))
        .collect();
    sts["spec"]["template"]["spec"]["containers"][0]["env"] = json!(env);
    sts["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] =
        json!({"httpGet": {"path": "/live", "port": 8080}, "periodSeconds": 20});
    sts
}
