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
mod tests;
