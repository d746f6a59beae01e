//! The OpenReports API (`openreports.io/v1alpha1`): `Report` (namespaced) and
//! `ClusterReport` (cluster-scoped), as stateward writes and reads them, and the
//! CustomResourceDefinitions generated from these types ([`crds_yaml`]).
//!
//! No crate has these types, and `kube::CustomResource` would wrap the fields in a `spec`
//! (OpenReports keeps them at the top level), so they are plain structs implementing
//! k8s-openapi's `Resource` and `Metadata` traits, which gives them `kube::Resource` and
//! the typed `Api`. The CRD schema comes from the same structs (schemars, OpenAPI 3
//! settings, every subschema inlined) made structural by [`structural`]: every node typed,
//! no `$ref`, no `nullable`, `metadata` left to the API server.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub const GROUP: &str = "openreports.io";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "openreports.io/v1alpha1";

/// A reference to an object (the fields of core/v1 ObjectReference).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
}

/// A label selector requirement: `key`, `operator` (In, NotIn, Exists, DoesNotExist) and
/// `values`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A label selector (the fields of meta/v1 LabelSelector).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// Counts of results by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReportSummary {
    /// Checks whose requirements were met.
    #[serde(default)]
    pub pass: i64,
    /// Checks whose requirements were not met.
    #[serde(default)]
    pub fail: i64,
    /// Checks whose requirements were not met, not scored.
    #[serde(default)]
    pub warn: i64,
    /// Checks that could not be evaluated.
    #[serde(default)]
    pub error: i64,
    /// Checks that were not selected for evaluation.
    #[serde(default)]
    pub skip: i64,
}

/// The outcome of one check.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Warn,
    Error,
    Skip,
}

/// How critical a result is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

/// A point in time (meta/v1 Timestamp).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[serde(default)]
    pub nanos: i32,
}

/// Which results a report holds at most (a contract between producers and consumers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// The most results a report holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i64>,
    /// Only results with these outcomes are listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_filter: Vec<Outcome>,
}

/// Producer-consumer settings of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReportConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// One check of one rule of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    /// The engine that produced the result, when it differs from the report's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The policy (its name or identifier).
    pub policy: String,
    /// The rule within the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The policy's category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// When the result was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
    /// Whether the result is scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored: Option<bool>,
    /// The objects checked, when not the report's scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ObjectReference>,
    /// The objects checked, by label, when not the report's scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_selector: Option<LabelSelector>,
    /// What was found, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Details (field, object names, sizes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// The fields of a report, shared by `Report` and `ClusterReport`.
macro_rules! report_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $plural:literal, $scope:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            #[serde(default)]
            pub api_version: String,
            #[serde(default)]
            pub kind: String,
            #[serde(default)]
            #[schemars(schema_with = "object_schema")]
            pub metadata: ObjectMeta,
            /// The engine that produced the results (when they all come from one).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub source: Option<String>,
            /// The object the report is about (a StatefulSet, a Namespace, a Node).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub scope: Option<ObjectReference>,
            /// The objects the report is about, by label (not with `scope`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub scope_selector: Option<LabelSelector>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub configuration: Option<ReportConfiguration>,
            /// Counts of results by outcome.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub summary: Option<ReportSummary>,
            /// The results.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            pub results: Vec<ReportResult>,
        }

        impl $name {
            /// An empty object with `apiVersion`, `kind` and `metadata` set.
            pub fn new(metadata: ObjectMeta) -> Self {
                $name {
                    api_version: API_VERSION.to_owned(),
                    kind: $kind.to_owned(),
                    metadata,
                    ..$name::default()
                }
            }
        }

        impl k8s_openapi::Resource for $name {
            const API_VERSION: &'static str = API_VERSION;
            const GROUP: &'static str = GROUP;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = VERSION;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = $scope;
        }

        impl k8s_openapi::ListableResource for $name {
            const LIST_KIND: &'static str = concat!($kind, "List");
        }

        impl k8s_openapi::Metadata for $name {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

report_type!(
    /// Results of policy checks on objects of one namespace.
    Report,
    "Report",
    "reports",
    k8s_openapi::NamespaceResourceScope
);

report_type!(
    /// Results of policy checks on cluster-scoped objects.
    ClusterReport,
    "ClusterReport",
    "clusterreports",
    k8s_openapi::ClusterResourceScope
);

fn object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object"})
}

/// Makes a schemars schema (OpenAPI 3 settings, subschemas inlined) a structural schema as
/// the API server requires: `Option<T>` becomes `T` (`nullable` and null alternatives
/// dropped), annotations the API server does not take are removed, and only the formats
/// it knows are kept.
pub fn structural(value: &mut Value) {
    let Value::Object(map) = value else {
        return;
    };
    for key in [
        "$schema",
        "title",
        "definitions",
        "$defs",
        "nullable",
        "example",
        "default",
    ] {
        map.remove(key);
    }
    if let Some(Value::String(format)) = map.get("format")
        && !matches!(format.as_str(), "int32" | "int64" | "date-time" | "byte")
    {
        map.remove("format");
    }
    // `anyOf: [T, {nullable}]` / `[T, {type: null}]`, as some settings render Option<T>.
    if let Some(Value::Array(alternatives)) = map.get("anyOf").cloned() {
        let kept: Vec<Value> = alternatives
            .into_iter()
            .filter(|a| a.get("type") != Some(&json!("null")) && a != &json!({"nullable": true}))
            .collect();
        if kept.len() == 1 {
            map.remove("anyOf");
            if let Some(Value::Object(inner)) = kept.into_iter().next() {
                for (k, v) in inner {
                    map.entry(k).or_insert(v);
                }
            }
        }
    }
    if let Some(Value::Array(types)) = map.get("type").cloned() {
        let kept: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
        if let [one] = kept.as_slice() {
            map.insert("type".into(), one.clone());
        }
    }
    if let Some(Value::Array(values)) = map.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    if map.contains_key("enum") && !map.contains_key("type") {
        map.insert("type".into(), json!("string"));
    }
    if let Some(Value::Array(required)) = map.get("required")
        && required.is_empty()
    {
        map.remove("required");
    }
    for (_, child) in map.iter_mut() {
        match child {
            Value::Object(_) => structural(child),
            Value::Array(items) => items.iter_mut().for_each(structural),
            _ => {}
        }
    }
}

/// The structural OpenAPI v3 schema of `T` for a CRD version.
pub fn crd_schema<T: JsonSchema>() -> Value {
    let mut settings = schemars::generate::SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    settings.meta_schema = None;
    let mut value = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    structural(&mut value);
    value
}

fn printer_columns() -> Value {
    let column =
        |name: &str, kind: &str, path: &str| json!({"name": name, "type": kind, "jsonPath": path});
    let mut columns = vec![
        column("Kind", "string", ".scope.kind"),
        column("Name", "string", ".scope.name"),
    ];
    for (name, field) in [
        ("Pass", "pass"),
        ("Fail", "fail"),
        ("Warn", "warn"),
        ("Error", "error"),
        ("Skip", "skip"),
    ] {
        columns.push(column(name, "integer", &format!(".summary.{field}")));
    }
    columns.push(column("Age", "date", ".metadata.creationTimestamp"));
    Value::Array(columns)
}

/// The CustomResourceDefinition of a report kind, generated from its type.
fn crd<T: JsonSchema>(kind: &str, plural: &str, scope: &str) -> Value {
    let mut schema = crd_schema::<T>();
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.insert("metadata".into(), json!({"type": "object"}));
    }
    if let Value::Object(map) = &mut schema {
        map.remove("required");
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{plural}.{GROUP}"),
            // Installed by the chart on request only; Helm never deletes it (the reports of
            // every producer would go with it).
            "annotations": {"helm.sh/resource-policy": "keep"}
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": format!("{kind}List"),
                "plural": plural,
                "singular": kind.to_lowercase(),
            },
            "scope": scope,
            "versions": [{
                "name": VERSION,
                "served": true,
                "storage": true,
                "additionalPrinterColumns": printer_columns(),
                "schema": {"openAPIV3Schema": schema},
            }]
        }
    })
}

/// Both CRDs: `reports.openreports.io` and `clusterreports.openreports.io`.
pub fn crds() -> Vec<Value> {
    vec![
        crd::<Report>("Report", "reports", "Namespaced"),
        crd::<ClusterReport>("ClusterReport", "clusterreports", "Cluster"),
    ]
}

/// The CRDs as one multi-document YAML file: what `stateward audit --print-crds` prints and
/// `charts/stateward/files/openreports-crds.yaml` holds.
pub fn crds_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::from(
        "# The OpenReports CRDs (openreports.io/v1alpha1 Report and ClusterReport), generated \
         from\n# stateward's types: stateward audit --print-crds\n",
    );
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

/// The keys of a JSON object, sorted (for canonical hashing).
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(value: &Value, path: &str, problems: &mut Vec<String>) {
        let Value::Object(map) = value else { return };
        for banned in [
            "$ref",
            "nullable",
            "anyOf",
            "oneOf",
            "allOf",
            "$schema",
            "definitions",
        ] {
            if map.contains_key(banned) {
                problems.push(format!("{path}: {banned}"));
            }
        }
        if !map.contains_key("type") {
            problems.push(format!("{path}: no type"));
        }
        if let Some(Value::Object(props)) = map.get("properties") {
            for (k, v) in props {
                walk(v, &format!("{path}.{k}"), problems);
            }
        }
        if let Some(items) = map.get("items") {
            walk(items, &format!("{path}[]"), problems);
        }
        if let Some(extra @ Value::Object(_)) = map.get("additionalProperties") {
            walk(extra, &format!("{path}{{}}"), problems);
        }
    }

    #[test]
    fn the_crd_schemas_are_structural() {
        for crd in crds() {
            let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            let mut problems = Vec::new();
            walk(schema, "", &mut problems);
            assert!(
                problems.is_empty(),
                "{}: {problems:?}",
                crd["metadata"]["name"]
            );
            let props = &schema["properties"];
            assert_eq!(props["metadata"], json!({"type": "object"}));
            assert_eq!(props["results"]["items"]["required"], json!(["policy"]));
            assert_eq!(
                props["results"]["items"]["properties"]["severity"]["enum"],
                json!(["critical", "high", "medium", "low", "info"])
            );
            assert_eq!(
                props["results"]["items"]["properties"]["timestamp"]["properties"]["nanos"]["format"],
                "int32"
            );
            assert_eq!(
                props["results"]["items"]["properties"]["properties"]["additionalProperties"],
                json!({"type": "string"})
            );
            assert!(props["scope"]["properties"]["uid"]["type"] == "string");
        }
    }

    #[test]
    fn reports_round_trip_with_fields_at_the_top_level() {
        let mut report = Report::new(ObjectMeta {
            name: Some("r".into()),
            namespace: Some("ns".into()),
            ..ObjectMeta::default()
        });
        report.source = Some("stateward".into());
        report.summary = Some(ReportSummary {
            pass: 3,
            ..ReportSummary::default()
        });
        let value = serde_json::to_value(&report).expect("serialises");
        assert_eq!(value["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(value["kind"], "Report");
        assert_eq!(value["summary"]["pass"], 3);
        assert!(value.get("spec").is_none());
        let back: Report = serde_json::from_value(value).expect("deserialises");
        assert_eq!(back, report);
        use kube::Resource;
        assert_eq!(Report::plural(&()), "reports");
        assert_eq!(ClusterReport::api_version(&()), "openreports.io/v1alpha1");
    }
}
