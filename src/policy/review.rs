//! The engine's input: one admission request, already decoded into typed objects.
use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod, core::v1::Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// The kinds the engine evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    StatefulSet,
    Service,
    Pod,
}

impl Kind {
    /// Only `apps/v1` StatefulSets, `v1` Services and `v1` Pods are evaluated; other groups
    /// that reuse a kind name (e.g. `apps.kruise.io`) pass untouched.
    pub fn from_gvk(group: &str, version: &str, kind: &str) -> Option<Kind> {
        match (group, version, kind) {
            ("apps", "v1", "StatefulSet") => Some(Kind::StatefulSet),
            ("", "v1", "Service") => Some(Kind::Service),
            ("", "v1", "Pod") => Some(Kind::Pod),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::StatefulSet => "StatefulSet",
            Kind::Service => "Service",
            Kind::Pod => "Pod",
        }
    }
}

/// A typed object of one of the evaluated kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    StatefulSet(Box<StatefulSet>),
    Service(Box<Service>),
    Pod(Box<Pod>),
}

/// The object could not be read as its kind (e.g. `replicas: "three"`).
#[derive(Debug, thiserror::Error)]
#[error("{kind} is not valid: {message}")]
pub struct DecodeError {
    pub kind: &'static str,
    /// `path: detail`, or the detail alone when the object itself is wrong.
    pub message: String,
    /// The dotted path of the offending field in the object (`spec.replicas`); empty
    /// when the object itself is wrong (not a JSON object).
    pub path: String,
    /// What is wrong there.
    pub detail: String,
}

impl Resource {
    /// Decodes `value` as `kind`, naming the offending field on failure.
    pub fn decode(kind: Kind, value: &Value) -> Result<Resource, DecodeError> {
        fn typed<T: serde::de::DeserializeOwned>(
            kind: Kind,
            value: &Value,
        ) -> Result<T, DecodeError> {
            serde_path_to_error::deserialize(value).map_err(|err| {
                let mut path = err.path().to_string();
                if path == "." {
                    path.clear();
                }
                let detail = err.into_inner().to_string();
                DecodeError {
                    kind: kind.as_str(),
                    message: if path.is_empty() {
                        detail.clone()
                    } else {
                        format!("{path}: {detail}")
                    },
                    path,
                    detail,
                }
            })
        }
        Ok(match kind {
            Kind::StatefulSet => Resource::StatefulSet(Box::new(typed(kind, value)?)),
            Kind::Service => Resource::Service(Box::new(typed(kind, value)?)),
            Kind::Pod => Resource::Pod(Box::new(typed(kind, value)?)),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Resource::StatefulSet(_) => Kind::StatefulSet,
            Resource::Service(_) => Kind::Service,
            Resource::Pod(_) => Kind::Pod,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Resource::StatefulSet(o) => &o.metadata,
            Resource::Service(o) => &o.metadata,
            Resource::Pod(o) => &o.metadata,
        }
    }

    pub fn to_value(&self) -> Value {
        let result = match self {
            Resource::StatefulSet(o) => serde_json::to_value(o),
            Resource::Service(o) => serde_json::to_value(o),
            Resource::Pod(o) => serde_json::to_value(o),
        };
        // Serialising k8s-openapi types into a Value cannot fail (string keys only).
        result.unwrap_or(Value::Null)
    }
}

/// Who sent the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub groups: Vec<String>,
}

/// One admission request as the engine sees it.
#[derive(Debug, Clone)]
pub struct Review {
    pub operation: Operation,
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// The object being created or the new state (CREATE, UPDATE).
    pub object: Option<Resource>,
    /// The existing object (UPDATE, DELETE).
    pub old_object: Option<Resource>,
    pub user: UserInfo,
    /// `DeleteOptions.gracePeriodSeconds` on DELETE.
    pub delete_grace_period_seconds: Option<i64>,
    pub dry_run: bool,
}

impl Review {
    /// A CREATE review of `object`, as the offline checker and tests use.
    pub fn create(object: Resource) -> Review {
        let meta = object.metadata();
        Review {
            operation: Operation::Create,
            kind: object.kind(),
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
            object: Some(object),
            old_object: None,
            user: UserInfo::default(),
            delete_grace_period_seconds: None,
            dry_run: false,
        }
    }

    /// An UPDATE review from `old` to `new`.
    pub fn update(old: Resource, new: Resource) -> Review {
        let mut review = Review::create(new);
        review.operation = Operation::Update;
        review.old_object = Some(old);
        review
    }

    /// A DELETE review of `old` with the given grace period.
    pub fn delete(old: Resource, grace_period_seconds: Option<i64>, user: &str) -> Review {
        let mut review = Review::create(old);
        review.operation = Operation::Delete;
        review.old_object = review.object.take();
        review.delete_grace_period_seconds = grace_period_seconds;
        review.user.username = user.into();
        review
    }

    /// The object the rules look at: the new one, or the old one on DELETE.
    pub fn subject(&self) -> Option<&Resource> {
        self.object.as_ref().or(self.old_object.as_ref())
    }
}

/// Fields of `input` that the typed form of its kind does not know (misspelt or from
/// another API version), as dotted paths. `null` values are ignored, as the API server
/// does. Used by the offline checker; in a cluster the API server validates fields.
pub fn unknown_fields(input: &Value, resource: &Resource) -> Vec<String> {
    let typed = resource.to_value();
    let mut out = Vec::new();
    walk_unknown(input, &typed, &mut String::new(), &mut out);
    out
}

fn walk_unknown(input: &Value, typed: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(given), Value::Object(known)) => {
            for (key, value) in given {
                if value.is_null() {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match known.get(key) {
                    Some(inner) => walk_unknown(value, inner, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(given), Value::Array(known)) if given.len() == known.len() => {
            for (i, (g, k)) in given.iter().zip(known).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk_unknown(g, k, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// A change of a StatefulSet's replicas through its scale subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleReview {
    pub namespace: String,
    /// The StatefulSet's name.
    pub name: String,
    /// `spec.replicas` before (`oldObject`) and after (`object`).
    pub before: i32,
    pub after: i32,
}
