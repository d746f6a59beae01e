//! AdmissionReview in, AdmissionReview out: decode (kube's admission types), dispatch on
//! the kind, [`evaluate`], encode. A denial is data (HTTP 200, `allowed: false`); only a
//! body that is not a readable AdmissionReview is an error (HTTP 400).
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod, core::v1::Service};
use kube::core::admission::{self, AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::{DynamicObject, TypeMeta};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::metrics::{EndpointLabels, Metrics, RequestLabels, RuleLabels, ViolationLabels};
use crate::policy::review::UserInfo;
use crate::policy::{
    Context, Decision, Kind, Level, Operation, Policy, Resource, Review, ScaleReview, Stage,
    evaluate_scale, evaluate_stage,
};

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

    /// The part of admission each webhook plays: the API server runs every mutating
    /// webhook before the validating ones, so `/validate` judges the object as it arrives.
    fn stage(self) -> Stage {
        match self {
            Endpoint::Validate => Stage::Validate,
            Endpoint::Mutate => Stage::Mutate,
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

/// Bounded facts about one review, for logs and metrics.
#[derive(Debug, Clone)]
pub struct Summary {
    pub uid: String,
    pub kind: &'static str,
    pub operation: &'static str,
    pub namespace: String,
    pub name: String,
    pub decision: &'static str,
    /// The ids of the rules that denied, comma-separated (empty unless denied).
    pub denied_by: String,
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
                answer.summary.decision,
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
        let peek: Peek =
            serde_json::from_slice(body).map_err(|e| AdmissionError::NotAReview(e.to_string()))?;
        let version = peek.api_version.unwrap_or_default();
        if version != "admission.k8s.io/v1" {
            return Err(AdmissionError::Version(version));
        }
        let request = peek.request.ok_or(AdmissionError::NoRequest)?;
        let op = operation_label(&request.operation);
        let scale = request.sub_resource.as_deref() == Some("scale")
            && request
                .resource
                .as_ref()
                .is_some_and(|r| r.group == "apps" && r.resource == "statefulsets");
        if scale && op == "UPDATE" && endpoint == Endpoint::Validate {
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
        // kube's AdmissionReview flattens its TypeMeta, which makes serde buffer the whole
        // document first; this envelope reads the same fields in one pass.
        let envelope: Envelope<K> = match serde_json::from_slice(body) {
            Ok(envelope) => envelope,
            Err(_) => {
                // Slow path, only for bad input: name the field that is wrong.
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
        let policy = self.policy.load();
        let object = request.object.take().map(wrap);
        let old_object = request.old_object.take().map(wrap);
        let namespace = request
            .namespace
            .clone()
            .or_else(|| {
                object
                    .as_ref()
                    .or(old_object.as_ref())
                    .and_then(|o| o.metadata().namespace.clone())
            })
            .unwrap_or_default();
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
        let decision = if review.subject().is_some() {
            evaluate_stage(&policy, &review, self.context.as_ref(), endpoint.stage())
        } else {
            Decision::default()
        };
        self.record(endpoint, &decision, &review.namespace, &review.name);
        let mut response = AdmissionResponse::from(&request);
        let verdict = match endpoint {
            Endpoint::Validate => {
                if let Some(message) = decision.denial_message() {
                    response = response.deny(message);
                    response.result.code = 403;
                    response.result.reason = "Forbidden".into();
                }
                let warnings = decision.warnings();
                if !warnings.is_empty() {
                    response.warnings = Some(warnings);
                }
                if decision.allowed() {
                    "allowed"
                } else {
                    "denied"
                }
            }
            Endpoint::Mutate => match decision.patch.clone() {
                Some(patch) => {
                    response = response
                        .with_patch(patch)
                        .map_err(|e| AdmissionError::Encode(e.to_string()))?;
                    "patched"
                }
                None => "allowed",
            },
        };
        let body = encode(response)?;
        Ok(Answer {
            body,
            summary: Summary {
                uid: request.uid,
                kind: kind.as_str(),
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
    fn scale(&self, body: &[u8]) -> Result<Answer, AdmissionError> {
        let review: AdmissionReview<DynamicObject> =
            serde_json::from_slice(body).map_err(|e| AdmissionError::NotAReview(e.to_string()))?;
        let request: AdmissionRequest<DynamicObject> =
            review.try_into().map_err(|_| AdmissionError::NoRequest)?;
        let replicas = |object: Option<&DynamicObject>| {
            object
                .and_then(|o| o.data.pointer("/spec/replicas"))
                .and_then(serde_json::Value::as_i64)
                .and_then(|r| i32::try_from(r).ok())
        };
        let namespace = request.namespace.clone().unwrap_or_default();
        let decision = match (
            replicas(request.old_object.as_ref()),
            replicas(request.object.as_ref()),
        ) {
            (Some(before), Some(after)) => {
                let scale = ScaleReview {
                    namespace: namespace.clone(),
                    name: request.name.clone(),
                    before,
                    after,
                };
                evaluate_scale(&self.policy.load(), &scale, self.context.as_ref())
            }
            _ => Decision::default(),
        };
        self.record(Endpoint::Validate, &decision, &namespace, &request.name);
        let mut response = AdmissionResponse::from(&request);
        let warnings = decision.warnings();
        if !warnings.is_empty() {
            response.warnings = Some(warnings);
        }
        let body = encode(response)?;
        Ok(Answer {
            body,
            summary: Summary {
                uid: request.uid,
                kind: "Scale",
                operation: "UPDATE",
                namespace,
                name: request.name,
                decision: "allowed",
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

/// Encodes the response review, with the patch as base64 text as the API documents it
/// (kube serialises the bytes as a number array, which Go also accepts but which is
/// larger and surprising to read).
fn encode(response: AdmissionResponse) -> Result<Vec<u8>, AdmissionError> {
    use base64::Engine;
    let Some(patch) = response.patch.clone() else {
        return serde_json::to_vec(&response.into_review())
            .map_err(|e| AdmissionError::Encode(e.to_string()));
    };
    let mut value = serde_json::to_value(response.into_review())
        .map_err(|e| AdmissionError::Encode(e.to_string()))?;
    if let Some(slot) = value.pointer_mut("/response/patch") {
        *slot = serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    serde_json::to_vec(&value).map_err(|e| AdmissionError::Encode(e.to_string()))
}

/// Kinds, groups and subresources the engine does not evaluate are allowed untouched.
fn pass_through(body: &[u8], op: &'static str) -> Result<Answer, AdmissionError> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| AdmissionError::NotAReview(e.to_string()))?;
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| AdmissionError::NoRequest)?;
    let body = encode(AdmissionResponse::from(&request))?;
    Ok(Answer {
        body,
        summary: Summary {
            uid: request.uid,
            kind: "other",
            operation: op,
            namespace: request.namespace.unwrap_or_default(),
            name: request.name,
            decision: "allowed",
            denied_by: String::new(),
        },
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
