//! AdmissionReview in, AdmissionReview out: read the body ([`wire`]), build the engine's
//! [`Review`] (in `Admission::answer_request`, the one place that builds it), evaluate at
//! the endpoint's stage, encode. A denial is data (HTTP 200, `allowed: false`); only a body
//! that is not a readable AdmissionReview is an error (HTTP 400). No rule logic here (the
//! engine decides) and no API calls (context comes from [`crate::cluster`]'s caches).
//!
//! One decode path: the one pass of [`wire::read`] answers what it can settle; only what it
//! cannot is read a second time, by [`wire::read_in_full`] (objects kept as JSON until the
//! whole request is read, then decoded in full as their kind; errors name the field). A
//! body is parsed at most twice:
//!
//! | body | path | parses |
//! |---|---|---|
//! | the API server's field order: any kind, operation, subresource | one pass | 1 |
//! | an object before its `kind` (another field order) | one pass, the object kept as JSON | 1 |
//! | wrong `apiVersion`, no `request`, no `request.kind` (400) | one pass | 1 |
//! | an object read before a field that changes its reading (a later `subResource: scale`, a repeated `kind` or `operation`) | one pass, second read | 2 |
//! | a CREATE whose object the lean decode ([`lean`]) cannot read: answered if the full decode reads it, else 400 naming the field | one pass fails, second read | 2 |
//! | an UPDATE or DELETE whose object is not valid for its kind (400 naming the field) | one pass fails, second read | 2 |
//! | not JSON, or a request field of the wrong type (400 naming it) | one pass fails, second read | 2 |
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::metrics::{EndpointLabels, Metrics, RequestLabels, RuleLabels, ViolationLabels};
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

    /// Answers one body: the one pass, else the second read (the table above).
    fn answer(&self, endpoint: Endpoint, body: &[u8]) -> Result<Answer, AdmissionError> {
        if let Ok(envelope) = wire::read(body)
            && let Some(answer) = self.answer_request(endpoint, envelope)?
        {
            return Ok(answer);
        }
        self.answer_in_full(endpoint, body)
    }

    /// The second read: the objects decoded in full once the whole request is read, what
    /// cannot be read named by its path.
    fn answer_in_full(&self, endpoint: Endpoint, body: &[u8]) -> Result<Answer, AdmissionError> {
        let envelope = wire::read_in_full(body).map_err(AdmissionError::NotAReview)?;
        // Objects kept as JSON always settle.
        self.answer_request(endpoint, envelope)?
            .ok_or_else(|| AdmissionError::NotAReview("unreadable".into()))
    }

    /// Answers a request as [`wire`] read it: the one builder of the engine's [`Review`].
    /// `None`: an object was decoded before a field that changes how it is to be read (a
    /// field order the API server does not write); the caller reads the body again.
    fn answer_request(
        &self,
        endpoint: Endpoint,
        envelope: wire::Envelope,
    ) -> Result<Option<Answer>, AdmissionError> {
        let version = envelope.api_version.unwrap_or_default();
        if version != "admission.k8s.io/v1" {
            return Err(AdmissionError::Version(version));
        }
        let request = envelope.request.ok_or(AdmissionError::NoRequest)?;
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
            return Err(AdmissionError::NotAReview(
                "request: missing field `kind`".into(),
            ));
        }
        let Some(kind) = request.evaluated_kind() else {
            return allowed(request.uid, op, request.namespace, request.name).map(Some);
        };
        let create = op == "CREATE";
        let (Some(object), Some(old_object)) = (
            settle(kind, create, request.object, "object")?,
            settle(kind, create, request.old_object, "oldObject")?,
        ) else {
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

/// `request.object` or `request.oldObject` (`field`) of a request about `kind`: `None`
/// when it was decoded before a field that changes how it is read (a lean decode in a
/// request that is not a CREATE, another kind, or skipped).
fn settle(
    kind: Kind,
    create: bool,
    payload: wire::Payload,
    field: &str,
) -> Result<Option<Option<Resource>>, AdmissionError> {
    Ok(match payload {
        wire::Payload::Absent => Some(None),
        wire::Payload::Typed(object) if object.kind() == kind => Some(Some(object)),
        wire::Payload::Lean(object) if create && object.kind() == kind => Some(Some(object)),
        wire::Payload::Raw(value) => match Resource::decode(kind, &value) {
            Ok(object) => Some(Some(object)),
            Err(err) => {
                let at = if err.path.is_empty() {
                    format!("request.{field}")
                } else {
                    format!("request.{field}.{}", err.path)
                };
                return Err(AdmissionError::Object {
                    kind: kind.as_str(),
                    message: format!("{at}: {}", err.detail),
                });
            }
        },
        wire::Payload::Typed(_) | wire::Payload::Lean(_) | wire::Payload::Skipped => None,
    })
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

    /// Every shape of request, including ones the one pass hands on to the second read.
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
        // The subresource after the objects: read as a Scale only by the second read.
        let mut scale_late = serde_json::Map::new();
        for (key, value) in scale_review["request"].as_object().expect("a request") {
            if key != "subResource" {
                scale_late.insert(key.clone(), value.clone());
            }
        }
        scale_late.insert("subResource".into(), json!("scale"));
        // The operation after the object: a full decode, fit for a CREATE too.
        let mut operation_late = create["request"].as_object().expect("a request").clone();
        let operation = operation_late.remove("operation").expect("an operation");
        operation_late.insert("operation".into(), operation);
        // What the lean decode does not read but the full decode does: answered by the
        // second read.
        let mut null_metadata = review(sts_kind, "CREATE", sts(3, 0), Value::Null);
        null_metadata["request"]["object"]["metadata"] = Value::Null;
        // Options of any shape read as kube's `RawExtension` reads them.
        let mut odd_options = review(
            ("", "Service", "services"),
            "DELETE",
            Value::Null,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop"}}),
        );
        odd_options["request"]["options"] = json!({"gracePeriodSeconds": "30"});
        let mut listed_options = odd_options.clone();
        listed_options["request"]["options"] = json!([1, {"a": null}]);
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
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": scale_late}),
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": operation_late}),
            null_metadata,
            odd_options,
            listed_options,
        ]
    }

    #[test]
    fn the_one_pass_answers_as_the_second_read() {
        let admission = admission();
        for body in bodies() {
            let bytes = serde_json::to_vec(&body).expect("json");
            for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
                let fast = admission.answer(endpoint, &bytes).expect("answer");
                let general = admission.answer_in_full(endpoint, &bytes).expect("answer");
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

    /// The request fields the reader takes are those kube's admission types read.
    #[test]
    fn the_reader_reads_the_request_as_kube_reads_it() {
        use kube::core::DynamicObject;
        use kube::core::admission::{AdmissionRequest, AdmissionReview};
        for body in bodies() {
            let bytes = serde_json::to_vec(&body).expect("json");
            // The objects aside (a `DynamicObject` needs metadata).
            let mut fields = body.clone();
            fields["request"]["object"] = Value::Null;
            fields["request"]["oldObject"] = Value::Null;
            let kube: AdmissionRequest<DynamicObject> =
                serde_json::from_value::<AdmissionReview<DynamicObject>>(fields)
                    .expect("kube reads it")
                    .try_into()
                    .expect("a request");
            // The one pass when it reads the body (not a null metadata), and the second read.
            let one_pass = wire::read(&bytes).ok();
            for envelope in one_pass
                .into_iter()
                .chain([wire::read_in_full(&bytes).expect("read")])
            {
                let ours = envelope.request.expect("a request");
                assert_eq!(
                    (&ours.uid, &ours.name, &ours.namespace, ours.dry_run),
                    (&kube.uid, &kube.name, &kube.namespace, kube.dry_run),
                    "{body}"
                );
                assert_eq!(
                    serde_json::to_value(&kube.operation).expect("json"),
                    json!(ours.operation)
                );
                assert_eq!(
                    (&ours.user.username, &ours.user.groups),
                    (
                        &kube.user_info.username.clone().unwrap_or_default(),
                        &kube.user_info.groups.clone().unwrap_or_default()
                    )
                );
                assert_eq!(
                    ours.grace_period_seconds,
                    kube.options
                        .as_ref()
                        .and_then(|o| o.0.get("gracePeriodSeconds"))
                        .and_then(Value::as_i64),
                    "{body}"
                );
            }
        }
    }

    /// A field after an object that changes how the object is read (here a repeated
    /// `kind`): the one pass hands the request on, the second read decodes the object as
    /// the request's last word says.
    #[test]
    fn an_object_read_before_its_kind_changed_is_read_again() {
        let body = review(
            ("apps", "StatefulSet", "statefulsets"),
            "CREATE",
            sts(3, 0),
            Value::Null,
        );
        let text = serde_json::to_string(&body).expect("json");
        let twice = text.replacen(
            r#""object":"#,
            r#""kind":{"group":"","version":"v1","kind":"Pod"},"object":"#,
            1,
        );
        let twice = twice.replacen(
            r#""oldObject":null"#,
            r#""oldObject":null,"kind":{"group":"apps","version":"v1","kind":"StatefulSet"}"#,
            1,
        );
        assert_ne!(text, twice);
        let request = wire::read(twice.as_bytes())
            .expect("read")
            .request
            .expect("a request");
        assert!(
            matches!(request.object, wire::Payload::Lean(Resource::Pod(_))),
            "{:?}",
            request.object
        );
        let admission = admission();
        for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
            let again = admission
                .answer(endpoint, twice.as_bytes())
                .expect("an answer");
            let once = admission
                .answer(endpoint, text.as_bytes())
                .expect("an answer");
            assert_eq!(again.body, once.body);
            assert_eq!(again.summary.kind, "StatefulSet");
            assert_eq!(again.summary.decision, once.summary.decision);
        }
    }

    /// An object before its kind is kept as JSON; when it is not valid for its kind the
    /// error names the field as the second read would.
    #[test]
    fn an_invalid_object_before_its_kind_is_named() {
        let mut body = review(
            ("apps", "StatefulSet", "statefulsets"),
            "UPDATE",
            sts(3, 30),
            sts(3, 30),
        );
        body["request"]["oldObject"]["spec"]["replicas"] = json!("three");
        let request = body["request"].as_object().expect("a request");
        let mut reordered = serde_json::Map::new();
        reordered.insert("oldObject".into(), request["oldObject"].clone());
        for (key, value) in request {
            reordered.insert(key.clone(), value.clone());
        }
        body["request"] = Value::Object(reordered);
        let bytes = serde_json::to_vec(&body).expect("json");
        let admission = admission();
        let message = |result: Result<Answer, AdmissionError>| {
            result.err().map(|e| e.to_string()).unwrap_or_default()
        };
        let err = message(admission.answer(Endpoint::Validate, &bytes));
        assert_eq!(
            err,
            "request.object is not a valid StatefulSet: request.oldObject.spec.replicas: \
             invalid type: string \"three\", expected i32"
        );
        assert_eq!(
            err,
            message(admission.answer_in_full(Endpoint::Validate, &bytes))
        );
    }

    #[test]
    fn invalid_objects_are_named_by_the_second_read() {
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
    /// second read, which decodes in full, still names it.
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
            .answer_in_full(Endpoint::Validate, &bytes)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("containers[0].image"), "{err}");
        let answer = admission()
            .answer(Endpoint::Validate, &bytes)
            .expect("an answer");
        let body: Value = serde_json::from_slice(&answer.body).expect("json");
        assert_eq!(body["response"]["allowed"], json!(true), "{body}");
        // An UPDATE is decoded in full: the one pass fails, the second read names the field.
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
        use kube::core::DynamicObject;
        use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
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
