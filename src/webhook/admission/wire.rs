//! The AdmissionReview wire format, read in one pass and written directly: the hot path of
//! the webhook. The API server writes a request's fields in a fixed order (`uid`, `kind`,
//! `resource`, `subResource`, …, `object`, `oldObject`, `dryRun`, `options`), so by the time
//! the objects arrive their kind is known and they decode straight into their typed form
//! (for a CREATE, only the fields its rules read: [`lean`]); a kind stateward does not
//! evaluate is skipped without building anything. Whatever this reader cannot settle
//! (another field order, an object with a field of the wrong type) is left to the general
//! path in `admission.rs`, which names the offending field. The lean decode of a CREATE
//! does not look at the fields it skips, so a wrong type there is not noticed: the API
//! server has decoded the object into its own types before it calls a webhook, so such an
//! object cannot come from it.
//!
//! No I/O and no decisions here: bytes in, typed request out; response out as bytes.
use std::fmt;

use base64::Engine;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::lean;
use crate::policy::review::UserInfo;
use crate::policy::{Kind, Resource};

/// `{apiVersion, kind, request}`; other top-level fields are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub api_version: Option<String>,
    pub request: Option<Request>,
}

#[derive(Debug, Default, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub resource: String,
}

/// `request.object` or `request.oldObject`, as far as this reader got with it.
#[derive(Debug)]
pub enum Payload {
    /// Absent or `null`.
    Absent,
    /// One of the evaluated kinds, decoded.
    Typed(Resource),
    /// Kept as JSON: a subresource (a Scale), or the kind was not known yet.
    Raw(Value),
    /// A kind stateward does not evaluate.
    Skipped,
}

/// The fields of an AdmissionRequest that stateward reads.
#[derive(Debug)]
pub struct Request {
    pub uid: String,
    pub kind: Option<GroupVersionKind>,
    pub resource: Option<GroupVersionResource>,
    pub sub_resource: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub operation: String,
    pub user: UserInfo,
    pub object: Payload,
    pub old_object: Payload,
    pub dry_run: bool,
    /// `options.gracePeriodSeconds` (DeleteOptions).
    pub grace_period_seconds: Option<i64>,
}

impl Request {
    /// The evaluated kind this request is about, when it is about one (no subresource).
    pub fn evaluated_kind(&self) -> Option<Kind> {
        if self.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
            return None;
        }
        let kind = self.kind.as_ref()?;
        Kind::from_gvk(&kind.group, &kind.version, &kind.kind)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Field {
    Uid,
    Kind,
    Resource,
    SubResource,
    Name,
    Namespace,
    Operation,
    UserInfo,
    Object,
    OldObject,
    DryRun,
    Options,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireUser {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    groups: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOptions {
    #[serde(default)]
    grace_period_seconds: Option<i64>,
}

/// Decodes an object according to what the request said before it.
struct PayloadSeed<'a> {
    kind: Option<&'a GroupVersionKind>,
    sub_resource: bool,
    /// The request is a CREATE (its operation came first, as the API server writes it):
    /// the object is read with [`lean::decode`], only the fields the rules of a CREATE read.
    create: bool,
}

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = Payload;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Payload, D::Error> {
        fn typed<'de, D, T>(
            deserializer: D,
            wrap: fn(Box<T>) -> Resource,
        ) -> Result<Payload, D::Error>
        where
            D: Deserializer<'de>,
            T: Deserialize<'de>,
        {
            Ok(Option::<T>::deserialize(deserializer)?
                .map_or(Payload::Absent, |o| Payload::Typed(wrap(Box::new(o)))))
        }
        if self.sub_resource {
            return raw(deserializer);
        }
        let Some(gvk) = self.kind else {
            return raw(deserializer);
        };
        match Kind::from_gvk(&gvk.group, &gvk.version, &gvk.kind) {
            Some(kind) if self.create => {
                Ok(lean::decode(kind, deserializer)?.map_or(Payload::Absent, Payload::Typed))
            }
            Some(Kind::StatefulSet) => typed(deserializer, Resource::StatefulSet),
            Some(Kind::Service) => typed(deserializer, Resource::Service),
            Some(Kind::Pod) => typed(deserializer, Resource::Pod),
            None => {
                IgnoredAny::deserialize(deserializer)?;
                Ok(Payload::Skipped)
            }
        }
    }
}

fn raw<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Payload, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Null => Payload::Absent,
        value => Payload::Raw(value),
    })
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Request, D::Error> {
        struct RequestVisitor;

        impl<'de> Visitor<'de> for RequestVisitor {
            type Value = Request;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AdmissionRequest")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Request, A::Error> {
                let mut request = Request {
                    uid: String::new(),
                    kind: None,
                    resource: None,
                    sub_resource: None,
                    name: String::new(),
                    namespace: None,
                    operation: String::new(),
                    user: UserInfo::default(),
                    object: Payload::Absent,
                    old_object: Payload::Absent,
                    dry_run: false,
                    grace_period_seconds: None,
                };
                let mut uid = false;
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Uid => {
                            request.uid = map.next_value()?;
                            uid = true;
                        }
                        Field::Kind => request.kind = map.next_value()?,
                        Field::Resource => request.resource = map.next_value()?,
                        Field::SubResource => request.sub_resource = map.next_value()?,
                        Field::Name => {
                            request.name = map.next_value::<Option<String>>()?.unwrap_or_default()
                        }
                        Field::Namespace => request.namespace = map.next_value()?,
                        Field::Operation => request.operation = map.next_value()?,
                        Field::UserInfo => {
                            if let Some(user) = map.next_value::<Option<WireUser>>()? {
                                request.user = UserInfo {
                                    username: user.username.unwrap_or_default(),
                                    groups: user.groups.unwrap_or_default(),
                                };
                            }
                        }
                        Field::Object | Field::OldObject => {
                            let seed = PayloadSeed {
                                kind: request.kind.as_ref(),
                                sub_resource: request
                                    .sub_resource
                                    .as_deref()
                                    .is_some_and(|s| !s.is_empty()),
                                create: request.operation == "CREATE",
                            };
                            let payload = map.next_value_seed(seed)?;
                            if matches!(field, Field::Object) {
                                request.object = payload;
                            } else {
                                request.old_object = payload;
                            }
                        }
                        Field::DryRun => {
                            request.dry_run = map.next_value::<Option<bool>>()?.unwrap_or(false)
                        }
                        Field::Options => {
                            request.grace_period_seconds = map
                                .next_value::<Option<WireOptions>>()?
                                .and_then(|o| o.grace_period_seconds)
                        }
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if !uid {
                    return Err(de::Error::missing_field("uid"));
                }
                Ok(request)
            }
        }

        deserializer.deserialize_map(RequestVisitor)
    }
}

/// `status`: empty when allowed (as kube's types write it); code, message and reason on a
/// denial.
struct Status<'a>(Option<&'a str>);

impl Serialize for Status<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeStruct};
        match self.0 {
            None => serializer.serialize_map(Some(0))?.end(),
            Some(message) => {
                let mut status = serializer.serialize_struct("Status", 3)?;
                status.serialize_field("code", &403u16)?;
                status.serialize_field("message", message)?;
                status.serialize_field("reason", "Forbidden")?;
                status.end()
            }
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseBody<'a> {
    uid: &'a str,
    allowed: bool,
    status: Status<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a [String]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseBody<'a>,
}

/// The answer to one review.
#[derive(Debug, Default)]
pub struct Response<'a> {
    pub uid: &'a str,
    /// The denial message (`allowed: false`, code 403).
    pub denied: Option<&'a str>,
    pub warnings: &'a [String],
    /// A JSON patch, serialised (written base64-encoded, `patchType: JSONPatch`).
    pub patch: Option<&'a [u8]>,
}

/// Writes the AdmissionReview answering one request (an empty `status` object when
/// allowed, as kube's types write it).
pub fn encode(response: &Response<'_>) -> Result<Vec<u8>, serde_json::Error> {
    let review = Review {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: ResponseBody {
            uid: response.uid,
            allowed: response.denied.is_none(),
            status: Status(response.denied),
            patch: response
                .patch
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            patch_type: response.patch.map(|_| "JSONPatch"),
            warnings: (!response.warnings.is_empty()).then_some(response.warnings),
        },
    };
    serde_json::to_vec(&review)
}
