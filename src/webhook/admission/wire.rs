//! The AdmissionReview wire format: read ([`read`], [`read_in_full`]) and written
//! ([`encode`]) directly, the hot path of the webhook.
//!
//! [`read`] is the one pass. The API server writes a request's fields in a fixed order
//! (`uid`, `kind`, `resource`, `subResource`, …, `operation`, `userInfo`, `object`,
//! `oldObject`, `dryRun`, `options`), so by the time the objects arrive their kind is known
//! and they decode straight into their typed form (for a CREATE, only the fields its rules
//! read: [`lean`]); a kind stateward does not evaluate is skipped without building
//! anything; an object that comes before its kind is kept as JSON ([`Payload::Raw`]).
//!
//! [`read_in_full`] is the second read, for a body the one pass could not read or settle
//! (see the table in `admission.rs`): every object is kept as JSON until the whole request
//! is read, so the order of the fields does not matter, and a field that cannot be read is
//! named by its path. The lean decode of a CREATE does not look at the fields it skips, so
//! a wrong type there is not noticed: the API server has decoded the object into its own
//! types before it calls a webhook, so such an object cannot come from it.
//!
//! The reader is not stricter than kube's `AdmissionRequest` in any field it reads (`options`
//! is any JSON, as kube's `RawExtension`), and more lenient in some (`resource`, `userInfo`
//! may be missing).
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

/// `{apiVersion, kind, request}`; other top-level fields are ignored. `R`: how the request
/// is read ([`Request`] in one pass, [`InFull`] with its objects kept as JSON).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<R = Request> {
    pub api_version: Option<String>,
    pub request: Option<R>,
}

/// The one pass: objects decoded as they come, by what the request said before them.
pub fn read(body: &[u8]) -> Result<Envelope, serde_json::Error> {
    serde_json::from_slice(body)
}

/// The second read: every object kept as JSON ([`Payload::Raw`]) whatever came before it;
/// an error names the field it is about (`request.dryRun: invalid type: …`).
pub fn read_in_full(body: &[u8]) -> Result<Envelope, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let envelope: Envelope<InFull> = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })?;
    de.end().map_err(|e| e.to_string())?;
    Ok(Envelope {
        api_version: envelope.api_version,
        request: envelope.request.map(|InFull(request)| request),
    })
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
    /// One of the evaluated kinds, decoded in full as the kind the request named before it.
    Typed(Resource),
    /// The object of a CREATE, decoded with [`lean::decode`] as the kind the request named
    /// before it: fit for a CREATE only.
    Lean(Resource),
    /// Kept as JSON: a subresource (a Scale), the kind was not known yet, or the second read.
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

/// `options.gracePeriodSeconds` when it is an integer. `options` is any JSON, as kube's
/// `RawExtension` reads it: anything else reads as no grace period.
struct GracePeriod(Option<i64>);

impl<'de> Deserialize<'de> for GracePeriod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<GracePeriod, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "camelCase")]
        enum Key {
            GracePeriodSeconds,
            #[serde(other)]
            Other,
        }

        struct OptionsVisitor;

        impl<'de> Visitor<'de> for OptionsVisitor {
            type Value = GracePeriod;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GracePeriod, A::Error> {
                let mut seconds = None;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::GracePeriodSeconds => seconds = map.next_value::<Value>()?.as_i64(),
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(GracePeriod(seconds))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<GracePeriod, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(GracePeriod(None))
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<GracePeriod, D::Error> {
                d.deserialize_any(self)
            }

            fn visit_none<E>(self) -> Result<GracePeriod, E> {
                Ok(GracePeriod(None))
            }

            fn visit_unit<E>(self) -> Result<GracePeriod, E> {
                Ok(GracePeriod(None))
            }

            fn visit_bool<E>(self, _: bool) -> Result<GracePeriod, E> {
                Ok(GracePeriod(None))
            }

            fn visit_i64<E>(self, _: i64) -> Result<GracePeriod, E> {
                Ok(GracePeriod(None))
            }

            fn visit_u64<E>(self, _: u64) -> Result<GracePeriod, E> {
                Ok(GracePeriod(None))
            }

            fn visit_f64<E>(self, _: f64) -> Result<GracePeriod, E> {
                Ok(GracePeriod(None))
            }

            fn visit_str<E>(self, _: &str) -> Result<GracePeriod, E> {
                Ok(GracePeriod(None))
            }
        }

        deserializer.deserialize_any(OptionsVisitor)
    }
}

/// Decodes an object according to what the request said before it.
struct PayloadSeed<'a> {
    kind: Option<&'a GroupVersionKind>,
    sub_resource: bool,
    /// The request is a CREATE (its operation came first, as the API server writes it):
    /// the object is read with [`lean::decode`], only the fields the rules of a CREATE read.
    create: bool,
    /// The second read: kept as JSON whatever came before.
    in_full: bool,
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
        if self.in_full || self.sub_resource {
            return raw(deserializer);
        }
        let Some(gvk) = self.kind else {
            return raw(deserializer);
        };
        match Kind::from_gvk(&gvk.group, &gvk.version, &gvk.kind) {
            Some(kind) if self.create => {
                Ok(lean::decode(kind, deserializer)?.map_or(Payload::Absent, Payload::Lean))
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

/// A request read with its objects kept as JSON ([`read_in_full`]).
pub struct InFull(Request);

impl<'de> Deserialize<'de> for InFull {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<InFull, D::Error> {
        deserializer
            .deserialize_map(RequestVisitor { in_full: true })
            .map(InFull)
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Request, D::Error> {
        deserializer.deserialize_map(RequestVisitor { in_full: false })
    }
}

/// The fields of a request in any order; `in_full`: objects kept as JSON.
struct RequestVisitor {
    in_full: bool,
}

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
                        in_full: self.in_full,
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
                Field::Options => request.grace_period_seconds = map.next_value::<GracePeriod>()?.0,
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
