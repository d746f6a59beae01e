//! AdmissionReview in, AdmissionReview out: decode (the one-pass reader of [`wire`], else
//! kube's admission types), dispatch on the kind, [`evaluate`], encode. A denial is data
//! (HTTP 200, `allowed: false`); only a body that is not a readable AdmissionReview is an
//! error (HTTP 400). No rule logic here (the engine decides) and no API calls (context
//! comes from [`crate::cluster`]'s caches).
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod, core::v1::Service};
use kube::core::admission::{self, AdmissionRequest, AdmissionReview};
use kube::core::{DynamicObject, TypeMeta};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::metrics::{EndpointLabels, Metrics, RequestLabels, RuleLabels, ViolationLabels};
use crate::policy::review::UserInfo;
use crate::policy::{
    Context, Decision, Kind, Level, Operation, Policy, Resource, Review, ScaleReview, Stage,
    evaluate_mut, evaluate_scale, evaluate_stage,
};

pub mod lean;
pub mod wire;

/// Which webhook endpoint a review came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Denials and warnings; never a patch.
    Validate,
    /// The patch; never a denial (the validating webhook denies, once).
    Mutate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// A body that cannot be answered as an AdmissionReview (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("not an AdmissionReview: {0}")]
    NotAReview(String),
    #[error("unsupported AdmissionReview apiVersion `{0}`; expected admission.k8s.io/v1")]
    Version(String),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("request.object is not a valid {kind}: {message}")]
    Object { kind: &'static str, message: String },
    #[error("cannot encode the response: {0}")]
    Encode(String),
}

/// What the handlers share: the current policy (swapped on reload), related objects and
/// metrics.
pub struct Admission {
    pub policy: ArcSwap<Policy>,
    pub context: Arc<dyn Context>,
    pub metrics: Arc<Metrics>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "K: DeserializeOwned"))]
struct Envelope<K: kube::Resource> {
    api_version: String,
    kind: String,
    request: Option<AdmissionRequest<K>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Peek {
    api_version: Option<String>,
    request: Option<PeekRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeekRequest {
    kind: PeekKind,
    #[serde(default)]
    resource: Option<PeekResource>,
    #[serde(default)]
    sub_resource: Option<String>,
    operation: String,
}

#[derive(Deserialize)]
struct PeekResource {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resource: String,
}

#[derive(Deserialize)]
struct PeekKind {
    #[serde(default)]
    group: String,
    version: String,
    kind: String,
}

/// The answer and what to log about it.
pub struct Answer {
    pub body: Vec<u8>,
    pub summary: Summary,
}

/// What the webhook answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    Patched,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::Patched => "patched",
        }
    }
}

/// Bounded facts about one review, for logs and metrics.
#[derive(Debug, Clone)]
pub struct Summary {
    pub uid: String,
    pub kind: &'static str,
    pub operation: &'static str,
    pub namespace: String,
    pub name: String,
    pub decision: Verdict,
    /// The ids of the rules that denied, comma-separated (empty unless denied).
    pub denied_by: String,
}

fn operation_of(label: &str) -> Operation {
    match label {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        _ => Operation::Connect,
    }
}

fn operation(op: &admission::Operation) -> Operation {
    match op {
        admission::Operation::Create => Operation::Create,
        admission::Operation::Update => Operation::Update,
        admission::Operation::Delete => Operation::Delete,
        admission::Operation::Connect => Operation::Connect,
    }
}

fn operation_label(op: &str) -> &'static str {
    match op {
        "CREATE" => "CREATE",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

impl Admission {
    pub fn new(policy: Policy, context: Arc<dyn Context>, metrics: Arc<Metrics>) -> Admission {
        Admission {
            policy: ArcSwap::from_pointee(policy),
            context,
            metrics,
        }
    }

    /// Answers one AdmissionReview body, recording metrics.
    pub fn handle(&self, endpoint: Endpoint, body: &[u8]) -> Result<Answer, AdmissionError> {
        let started = Instant::now();
        self.metrics.in_flight.inc();
        let result = self.answer(endpoint, body);
        self.metrics.in_flight.dec();
        let (kind, op, decision) = match &result {
            Ok(answer) => (
                answer.summary.kind,
                answer.summary.operation,
                answer.summary.decision.as_str(),
            ),
            Err(_) => ("unknown", "other", "error"),
        };
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.as_str(),
                kind,
                operation: op,
                decision,
            })
            .inc();
        self.metrics
            .duration
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .observe(started.elapsed().as_secs_f64());
        result
    }

    fn answer(&self, endpoint: Endpoint, body: &[u8]) -> Result<Answer, AdmissionError> {
        if let Ok(wire::Envelope {
            api_version: Some(version),
            request: Some(request),
        }) = serde_json::from_slice::<wire::Envelope>(body)
            && version == "admission.k8s.io/v1"
            && let Some(answer) = self.answer_wire(endpoint, request)?
        {
            return Ok(answer);
        }
        self.answer_general(endpoint, body)
    }

    /// The one-pass path. `None` leaves the request to [`Admission::answer_general`]
    /// (fields in another order, an object that is not valid for its kind).
    fn answer_wire(
        &self,
        endpoint: Endpoint,
        request: wire::Request,
    ) -> Result<Option<Answer>, AdmissionError> {
        let op = operation_label(&request.operation);
        let resource = request
            .resource
            .as_ref()
            .map(|r| (r.group.as_str(), r.resource.as_str()));
        if judges_scale(endpoint, op, request.sub_resource.as_deref(), resource) {
            let replicas = |payload: &wire::Payload| match payload {
                wire::Payload::Raw(value) => Some(replicas_of(Some(value))),
                wire::Payload::Absent => Some(None),
                _ => None,
            };
            let (Some(before), Some(after)) =
                (replicas(&request.old_object), replicas(&request.object))
            else {
                return Ok(None);
            };
            let namespace = request.namespace.unwrap_or_default();
            return self
                .judge_scale(request.uid, namespace, request.name, before, after)
                .map(Some);
        }
        if request.kind.is_none() {
            return Ok(None);
        }
        let Some(kind) = request.evaluated_kind() else {
            return allowed(request.uid, op, request.namespace, request.name).map(Some);
        };
        let resource = |payload: wire::Payload| match payload {
            wire::Payload::Typed(object) if object.kind() == kind => Some(Some(object)),
            wire::Payload::Absent => Some(None),
            wire::Payload::Raw(value) => Resource::decode(kind, &value).ok().map(Some),
            _ => None,
        };
        let (Some(object), Some(old_object)) =
            (resource(request.object), resource(request.old_object))
        else {
            return Ok(None);
        };
        let namespace = namespace_of(request.namespace, object.as_ref(), old_object.as_ref());
        let review = Review {
            operation: operation_of(op),
            kind,
            namespace,
            name: request.name,
            object,
            old_object,
            user: request.user,
            delete_grace_period_seconds: request.grace_period_seconds,
            dry_run: request.dry_run,
        };
        self.judge(endpoint, request.uid, review).map(Some)
    }

    /// The general path: kube's admission types, with the offending field named when an
    /// object is not valid for its kind.
    fn answer_general(&self, endpoint: Endpoint, body: &[u8]) -> Result<Answer, AdmissionError> {
        let peek: Peek =
            serde_json::from_slice(body).map_err(|e| AdmissionError::NotAReview(e.to_string()))?;
        let version = peek.api_version.unwrap_or_default();
        if version != "admission.k8s.io/v1" {
            return Err(AdmissionError::Version(version));
        }
        let request = peek.request.ok_or(AdmissionError::NoRequest)?;
        let op = operation_label(&request.operation);
        let resource = request
            .resource
            .as_ref()
            .map(|r| (r.group.as_str(), r.resource.as_str()));
        if judges_scale(endpoint, op, request.sub_resource.as_deref(), resource) {
            return self.scale(body);
        }
        let kind = match request.sub_resource.as_deref() {
            Some(sub) if !sub.is_empty() => None,
            _ => Kind::from_gvk(
                &request.kind.group,
                &request.kind.version,
                &request.kind.kind,
            ),
        };
        match kind {
            Some(Kind::StatefulSet) => {
                self.typed::<StatefulSet>(endpoint, body, Kind::StatefulSet, |o| {
                    Resource::StatefulSet(Box::new(o))
                })
            }
            Some(Kind::Service) => self.typed::<Service>(endpoint, body, Kind::Service, |o| {
                Resource::Service(Box::new(o))
            }),
            Some(Kind::Pod) => {
                self.typed::<Pod>(endpoint, body, Kind::Pod, |o| Resource::Pod(Box::new(o)))
            }
            None => pass_through(body, op),
        }
    }

    fn typed<K>(
        &self,
        endpoint: Endpoint,
        body: &[u8],
        kind: Kind,
        wrap: fn(K) -> Resource,
    ) -> Result<Answer, AdmissionError>
    where
        K: kube::Resource + DeserializeOwned,
    {
        let envelope: Envelope<K> = match serde_json::from_slice(body) {
            Ok(envelope) => envelope,
            Err(_) => {
                // Only for bad input: name the field that is wrong.
                let mut de = serde_json::Deserializer::from_slice(body);
                let message = match serde_path_to_error::deserialize::<_, Envelope<K>>(&mut de) {
                    Err(err) => format!("{}: {}", err.path(), err.inner()),
                    Ok(_) => "unreadable".into(),
                };
                return Err(AdmissionError::Object {
                    kind: kind.as_str(),
                    message,
                });
            }
        };
        let mut request = envelope.request.ok_or(AdmissionError::NoRequest)?;
        request.types = TypeMeta {
            api_version: envelope.api_version,
            kind: envelope.kind,
        };
        let object = request.object.take().map(wrap);
        let old_object = request.old_object.take().map(wrap);
        let namespace = namespace_of(
            request.namespace.clone(),
            object.as_ref(),
            old_object.as_ref(),
        );
        let review = Review {
            operation: operation(&request.operation),
            kind,
            namespace,
            name: request.name.clone(),
            object,
            old_object,
            user: UserInfo {
                username: request.user_info.username.clone().unwrap_or_default(),
                groups: request.user_info.groups.clone().unwrap_or_default(),
            },
            delete_grace_period_seconds: request
                .options
                .as_ref()
                .and_then(|o| o.0.get("gracePeriodSeconds"))
                .and_then(serde_json::Value::as_i64),
            dry_run: request.dry_run,
        };
        self.judge(endpoint, request.uid, review)
    }

    /// Evaluates a review at the endpoint's stage and writes the answer. The mutating
    /// endpoint mutates the review's own object (no copy).
    fn judge(
        &self,
        endpoint: Endpoint,
        uid: String,
        mut review: Review,
    ) -> Result<Answer, AdmissionError> {
        let policy = self.policy.load();
        let decision = match (review.subject().is_some(), endpoint) {
            (false, _) => Decision::default(),
            (true, Endpoint::Mutate) => {
                evaluate_mut(&policy, &mut review, self.context.as_ref(), Stage::Mutate)
            }
            (true, Endpoint::Validate) => {
                evaluate_stage(&policy, &review, self.context.as_ref(), Stage::Validate)
            }
        };
        self.record(endpoint, &decision, &review.namespace, &review.name);
        let (verdict, body) = match endpoint {
            Endpoint::Validate => {
                let denial = decision.denial_message();
                let warnings = decision.warnings();
                let body = encode(&wire::Response {
                    uid: &uid,
                    denied: denial.as_deref(),
                    warnings: &warnings,
                    patch: None,
                })?;
                let verdict = if denial.is_some() {
                    Verdict::Denied
                } else {
                    Verdict::Allowed
                };
                (verdict, body)
            }
            Endpoint::Mutate => {
                let patch = decision
                    .patch
                    .as_ref()
                    .map(serde_json::to_vec)
                    .transpose()
                    .map_err(|e| AdmissionError::Encode(e.to_string()))?;
                let body = encode(&wire::Response {
                    uid: &uid,
                    patch: patch.as_deref(),
                    ..wire::Response::default()
                })?;
                let verdict = if patch.is_some() {
                    Verdict::Patched
                } else {
                    Verdict::Allowed
                };
                (verdict, body)
            }
        };
        Ok(Answer {
            body,
            summary: Summary {
                uid,
                kind: review.kind.as_str(),
                operation: review.operation.as_str(),
                namespace: review.namespace,
                name: review.name,
                decision: verdict,
                denied_by: denied_by(&decision),
            },
        })
    }

    /// `statefulsets/scale` UPDATE through kube's types (the general path).
    fn scale(&self, body: &[u8]) -> Result<Answer, AdmissionError> {
        let review: AdmissionReview<DynamicObject> =
            serde_json::from_slice(body).map_err(|e| AdmissionError::NotAReview(e.to_string()))?;
        let request: AdmissionRequest<DynamicObject> =
            review.try_into().map_err(|_| AdmissionError::NoRequest)?;
        let before = replicas_of(request.old_object.as_ref().map(|o| &o.data));
        let after = replicas_of(request.object.as_ref().map(|o| &o.data));
        let namespace = request.namespace.unwrap_or_default();
        self.judge_scale(request.uid, namespace, request.name, before, after)
    }

    /// `statefulsets/scale` UPDATE (`kubectl scale`, autoscalers): warns with the claims a
    /// scale-down leaves behind, never denies.
    fn judge_scale(
        &self,
        uid: String,
        namespace: String,
        name: String,
        before: Option<i32>,
        after: Option<i32>,
    ) -> Result<Answer, AdmissionError> {
        let decision = match (before, after) {
            (Some(before), Some(after)) => {
                let scale = ScaleReview {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    before,
                    after,
                };
                evaluate_scale(&self.policy.load(), &scale, self.context.as_ref())
            }
            _ => Decision::default(),
        };
        self.record(Endpoint::Validate, &decision, &namespace, &name);
        let body = encode(&wire::Response {
            uid: &uid,
            warnings: &decision.warnings(),
            ..wire::Response::default()
        })?;
        Ok(Answer {
            body,
            summary: Summary {
                uid,
                kind: "Scale",
                operation: "UPDATE",
                namespace,
                name,
                decision: Verdict::Allowed,
                denied_by: String::new(),
            },
        })
    }

    fn record(&self, endpoint: Endpoint, decision: &Decision, namespace: &str, name: &str) {
        for finding in &decision.findings {
            // Audit mode exists to be read in the logs.
            if finding.mode == Level::Audit && endpoint == Endpoint::Validate {
                tracing::info!(
                    namespace,
                    name,
                    rule = finding.rule.as_str(),
                    field = %finding.field,
                    detail = %finding.message,
                    "audit finding"
                );
            }
            // Mutations are counted on /mutate, violations on /validate, so a review that
            // passes both webhooks is counted once.
            let counts = match endpoint {
                Endpoint::Mutate => finding.mode == Level::Mutate,
                Endpoint::Validate => finding.mode != Level::Mutate,
            };
            if counts {
                self.metrics
                    .violations
                    .get_or_create(&ViolationLabels {
                        rule: finding.rule.as_str(),
                        mode: finding.mode.as_str(),
                    })
                    .inc();
            }
        }
        if endpoint == Endpoint::Validate {
            for rule in &decision.skipped {
                tracing::info!(rule = rule.as_str(), "rule skipped by annotation");
                self.metrics
                    .skips
                    .get_or_create(&RuleLabels {
                        rule: rule.as_str(),
                    })
                    .inc();
            }
        }
    }
}

fn encode(response: &wire::Response<'_>) -> Result<Vec<u8>, AdmissionError> {
    wire::encode(response).map_err(|e| AdmissionError::Encode(e.to_string()))
}

/// A `statefulsets/scale` UPDATE at the validating endpoint: the one subresource judged.
fn judges_scale(
    endpoint: Endpoint,
    operation: &str,
    sub_resource: Option<&str>,
    group_resource: Option<(&str, &str)>,
) -> bool {
    endpoint == Endpoint::Validate
        && operation == "UPDATE"
        && sub_resource == Some("scale")
        && group_resource == Some(("apps", "statefulsets"))
}

/// The request's namespace, else the object's.
fn namespace_of(
    given: Option<String>,
    object: Option<&Resource>,
    old_object: Option<&Resource>,
) -> String {
    given
        .or_else(|| {
            object
                .or(old_object)
                .and_then(|o| o.metadata().namespace.clone())
        })
        .unwrap_or_default()
}

/// `spec.replicas` of a Scale.
fn replicas_of(object: Option<&serde_json::Value>) -> Option<i32> {
    object
        .and_then(|o| o.pointer("/spec/replicas"))
        .and_then(serde_json::Value::as_i64)
        .and_then(|r| i32::try_from(r).ok())
}

/// Allowed untouched: kinds, groups and subresources the engine does not evaluate.
fn allowed(
    uid: String,
    operation: &'static str,
    namespace: Option<String>,
    name: String,
) -> Result<Answer, AdmissionError> {
    let body = encode(&wire::Response {
        uid: &uid,
        ..wire::Response::default()
    })?;
    Ok(Answer {
        body,
        summary: Summary {
            uid,
            kind: "other",
            operation,
            namespace: namespace.unwrap_or_default(),
            name,
            decision: Verdict::Allowed,
            denied_by: String::new(),
        },
    })
}

/// Kinds, groups and subresources the engine does not evaluate are allowed untouched
/// (the general path).
fn pass_through(body: &[u8], op: &'static str) -> Result<Answer, AdmissionError> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| AdmissionError::NotAReview(e.to_string()))?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| AdmissionError::NoRequest)?;
    allowed(request.uid, op, request.namespace, request.name)
}

fn denied_by(decision: &Decision) -> String {
    let mut rules: Vec<&str> = decision
        .with_level(Level::Enforce)
        .map(|f| f.rule.as_str())
        .collect();
    rules.dedup();
    rules.join(",")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::metrics::Metrics;
    use crate::policy::NoContext;

    fn admission() -> Admission {
        Admission::new(
            Policy::default(),
            Arc::new(NoContext),
            Arc::new(Metrics::new()),
        )
    }

    fn review(kind: (&str, &str, &str), op: &str, object: Value, old: Value) -> Value {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-1",
            "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
            "resource": {"group": kind.0, "version": "v1", "resource": kind.2},
            "name": object["metadata"]["name"].as_str().or(old["metadata"]["name"].as_str()),
            "namespace": "shop", "operation": op,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object, "oldObject": old, "dryRun": false,
            "options": {"gracePeriodSeconds": 0}}})
    }

    fn sts(replicas: i32, grace: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"replicas": replicas, "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                    "terminationGracePeriodSeconds": grace,
                    "containers": [{"name": "db", "image": "db:1",
                        "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
    }

    /// Every shape of request, including ones the one-pass reader hands on.
    fn bodies() -> Vec<Value> {
        let sts_kind = ("apps", "StatefulSet", "statefulsets");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db-0",
            "namespace": "shop", "ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "StatefulSet", "name": "db", "uid": "x", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "db", "image": "db:1"}]},
            "status": {"phase": "Running"}});
        let scale = |r: i32| {
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "db", "namespace": "shop"}, "spec": {"replicas": r}})
        };
        let mut scale_review = review(
            ("autoscaling", "Scale", "statefulsets"),
            "UPDATE",
            scale(1),
            scale(3),
        );
        scale_review["request"]["resource"]["group"] = json!("apps");
        scale_review["request"]["subResource"] = json!("scale");
        // Object before kind: another field order than the API server's.
        let mut reordered = serde_json::Map::new();
        let create = review(sts_kind, "CREATE", sts(3, 0), Value::Null);
        for key in [
            "object",
            "oldObject",
            "uid",
            "kind",
            "resource",
            "name",
            "namespace",
            "operation",
            "userInfo",
            "dryRun",
            "options",
        ] {
            reordered.insert(key.into(), create["request"][key].clone());
        }
        vec![
            create.clone(),
            review(sts_kind, "CREATE", sts(3, 30), Value::Null),
            review(sts_kind, "UPDATE", sts(1, 30), sts(3, 30)),
            review(
                ("", "Service", "services"),
                "DELETE",
                Value::Null,
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop"}}),
            ),
            review(("", "Pod", "pods"), "DELETE", Value::Null, pod.clone()),
            review(("", "Pod", "pods"), "CREATE", pod, Value::Null),
            review(
                ("apps", "Deployment", "deployments"),
                "CREATE",
                json!({"metadata": {"name": "d"}}),
                Value::Null,
            ),
            scale_review,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": reordered}),
        ]
    }

    #[test]
    fn the_one_pass_path_answers_as_the_general_path() {
        let admission = admission();
        for body in bodies() {
            let bytes = serde_json::to_vec(&body).expect("json");
            for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
                let fast = admission.answer(endpoint, &bytes).expect("answer");
                let general = admission.answer_general(endpoint, &bytes).expect("answer");
                let (fast_body, general_body): (Value, Value) = (
                    serde_json::from_slice(&fast.body).expect("json"),
                    serde_json::from_slice(&general.body).expect("json"),
                );
                assert_eq!(fast_body, general_body, "{endpoint:?} {body}");
                assert_eq!(fast.summary.decision, general.summary.decision);
                assert_eq!(fast.summary.kind, general.summary.kind);
                assert_eq!(fast.summary.namespace, general.summary.namespace);
                assert_eq!(fast.summary.denied_by, general.summary.denied_by);
            }
        }
    }

    #[test]
    fn invalid_objects_are_named_by_the_general_path() {
        let mut body = review(
            ("apps", "StatefulSet", "statefulsets"),
            "CREATE",
            sts(3, 30),
            Value::Null,
        );
        body["request"]["object"]["spec"]["replicas"] = json!("three");
        let bytes = serde_json::to_vec(&body).expect("json");
        let err = admission()
            .answer(Endpoint::Validate, &bytes)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("request.object.spec.replicas"), "{err}");
    }

    /// A CREATE is decoded with only the fields its rules read ([`lean`]): a wrong
    /// type in another field is not looked at (the API server never sends one). The
    /// general path still names it.
    #[test]
    fn a_create_is_not_checked_in_fields_no_rule_reads() {
        let mut body = review(
            ("apps", "StatefulSet", "statefulsets"),
            "CREATE",
            sts(3, 30),
            Value::Null,
        );
        body["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] = json!(5);
        let bytes = serde_json::to_vec(&body).expect("json");
        let err = admission()
            .answer_general(Endpoint::Validate, &bytes)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("containers[0].image"), "{err}");
        let answer = admission()
            .answer(Endpoint::Validate, &bytes)
            .expect("an answer");
        let body: Value = serde_json::from_slice(&answer.body).expect("json");
        assert_eq!(body["response"]["allowed"], json!(true), "{body}");
        // An UPDATE is decoded in full: the one-pass reader leaves it to the general path.
        let mut update = review(
            ("apps", "StatefulSet", "statefulsets"),
            "UPDATE",
            sts(3, 30),
            sts(3, 30),
        );
        update["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] =
            json!(5);
        let bytes = serde_json::to_vec(&update).expect("json");
        assert!(admission().answer(Endpoint::Validate, &bytes).is_err());
    }

    #[test]
    fn responses_are_written_as_kube_writes_them() {
        use kube::core::admission::AdmissionResponse;
        let request: AdmissionRequest<DynamicObject> =
            serde_json::from_value::<AdmissionReview<DynamicObject>>(review(
                ("", "Service", "services"),
                "CREATE",
                json!({"metadata": {"name": "s"}}),
                Value::Null,
            ))
            .expect("review")
            .try_into()
            .expect("request");
        let kube = |response: AdmissionResponse| -> Value {
            serde_json::to_value(response.into_review()).expect("json")
        };
        let ours = |response: wire::Response<'_>| -> Value {
            serde_json::from_slice(&wire::encode(&response).expect("encode")).expect("json")
        };
        assert_eq!(
            ours(wire::Response {
                uid: "u-1",
                ..wire::Response::default()
            }),
            kube(AdmissionResponse::from(&request))
        );
        let mut denied = AdmissionResponse::from(&request).deny("no");
        denied.result.code = 403;
        denied.result.reason = "Forbidden".into();
        let warnings = vec!["w: one".to_owned()];
        denied.warnings = Some(warnings.clone());
        assert_eq!(
            ours(wire::Response {
                uid: "u-1",
                denied: Some("no"),
                warnings: &warnings,
                patch: None
            }),
            kube(denied)
        );
        let patch = json_patch::Patch(vec![]);
        let mut patched = kube(
            AdmissionResponse::from(&request)
                .with_patch(patch)
                .expect("patch"),
        );
        // kube writes the patch bytes as a number array; the API documents base64 text.
        patched["response"]["patch"] = json!("W10=");
        assert_eq!(
            ours(wire::Response {
                uid: "u-1",
                patch: Some(b"[]"),
                ..wire::Response::default()
            }),
            patched
        );
    }
}
