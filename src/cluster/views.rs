//! The collector's projections of claims, StatefulSets and pods ([`claim_view`],
//! [`set_view`], [`pod_view`]): what the classifier of `gc` reads and the audit shares,
//! with the annotations stateward writes on them, the clock of a pass ([`now_seconds`])
//! and the API of a resource in one namespace or all ([`api`]). Below `gc` and `audit`,
//! so both take them from here.
//!
//! `gc --watch` keeps one view of every claim, set and pod of the fleet, so the views are
//! compact: a uid or a resourceVersion is a [`Token`] (a UUID or a number in 16 bytes),
//! a namespace an interned [`Arc<str>`] and the labels and annotations an interned
//! [`Arc<Pairs>`] (a set's claims carry the same labels and the same provenance: one copy
//! of them is kept, [`shared_str`], [`shared_pairs`]), a name a `Box<str>`.
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, LazyLock, Mutex};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::core::Selector;
use kube::{Api, Client};

use super::ANNOTATION_PREFIX;
use crate::quantity::quantity_bytes;

pub const KEEP: &str = "stateward.io/keep";
pub const SET_ANNOTATION: &str = "stateward.io/statefulset";
pub const SET_UID_ANNOTATION: &str = "stateward.io/statefulset-uid";
pub const ORPHANED_SINCE: &str = "stateward.io/orphaned-since";
pub const OPT_IN: &str = "stateward.io/collect-orphaned-claims";

/// Keys held by many objects, kept without an allocation of their own.
const COMMON_KEYS: [&str; 10] = [
    KEEP,
    SET_ANNOTATION,
    SET_UID_ANNOTATION,
    ORPHANED_SINCE,
    OPT_IN,
    "app",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
];

fn key(text: String) -> Cow<'static, str> {
    match COMMON_KEYS.iter().find(|k| **k == text) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(text),
    }
}

/// A uid or a resourceVersion as it is kept: the canonical text of a UUID (lowercase,
/// `8-4-4-4-12`: every uid the API server makes) or of a decimal number (every
/// resourceVersion of etcd) in 16 bytes, any other text as it is. One to one with the
/// text, so tokens compare and hash as their texts would.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Token {
    Uuid([u8; 16]),
    Number(u64),
    Text(Box<str>),
}

impl Default for Token {
    fn default() -> Token {
        Token::Text(Box::default())
    }
}

impl Token {
    pub fn new(text: &str) -> Token {
        if let Some(n) = uuid_number(text) {
            return Token::Uuid(n.to_be_bytes());
        }
        let canonical_number = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        match text.parse::<u64>() {
            Ok(n) if canonical_number => Token::Number(n),
            _ => Token::Text(text.into()),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Token::Text(t) if t.is_empty())
    }
}

impl From<&str> for Token {
    fn from(text: &str) -> Token {
        Token::new(text)
    }
}

impl PartialEq<str> for Token {
    fn eq(&self, other: &str) -> bool {
        *self == Token::new(other)
    }
}

impl PartialEq<&str> for Token {
    fn eq(&self, other: &&str) -> bool {
        *self == Token::new(other)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Uuid(bytes) => {
                for (i, b) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            Token::Number(n) => write!(f, "{n}"),
            Token::Text(t) => f.write_str(t),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl serde::Serialize for Token {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A uid in the canonical text of a UUID (lowercase hex, `8-4-4-4-12`) as a number; one
/// to one with that text.
pub fn uuid_number(uid: &str) -> Option<u128> {
    let bytes = uid.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut n: u128 = 0;
    for (i, &c) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        n = (n << 4) | u128::from(digit);
    }
    Some(n)
}

/// Values many views hold alike, kept once: each is handed out as an `Arc` and dropped
/// from the pool when no view holds it any more (swept when the pool has doubled since
/// the last sweep, so the cost is spread over the insertions).
struct Pool<T: ?Sized> {
    items: HashSet<Arc<T>>,
    sweep_at: usize,
}

impl<T: ?Sized + Hash + Eq> Pool<T> {
    fn new() -> Pool<T> {
        Pool {
            items: HashSet::new(),
            sweep_at: 1024,
        }
    }

    fn find(&self, value: &T) -> Option<Arc<T>> {
        self.items.get(value).cloned()
    }

    fn insert(&mut self, item: Arc<T>) -> Arc<T> {
        if self.items.len() >= self.sweep_at {
            self.items.retain(|item| Arc::strong_count(item) > 1);
            self.sweep_at = (self.items.len() * 2).max(1024);
        }
        self.items.insert(item.clone());
        item
    }
}

static STRINGS: LazyLock<Mutex<Pool<str>>> = LazyLock::new(|| Mutex::new(Pool::new()));
static PAIRS: LazyLock<Mutex<Pool<Pairs>>> = LazyLock::new(|| Mutex::new(Pool::new()));

/// `text` as the one shared copy (namespaces: a few for a fleet of objects).
pub fn shared_str(text: &str) -> Arc<str> {
    // The pool is consistent after any panic (a set of `Arc`s), so a poisoned lock is
    // taken over.
    let mut pool = STRINGS.lock().unwrap_or_else(|e| e.into_inner());
    match pool.find(text) {
        Some(item) => item,
        None => pool.insert(Arc::from(text)),
    }
}

/// `pairs` as the one shared copy (the labels and provenance of a set's claims).
pub fn shared_pairs(pairs: Pairs) -> Arc<Pairs> {
    let mut pool = PAIRS.lock().unwrap_or_else(|e| e.into_inner());
    match pool.find(&pairs) {
        Some(item) => item,
        None => pool.insert(Arc::new(pairs)),
    }
}

/// Labels or annotations: a map as a slice of pairs sorted by key. An object has a few,
/// and a `BTreeMap` allocates a node of about 550 bytes for the first one; the common keys
/// (`app`, stateward's annotations) are not allocated at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Pairs(Box<[(Cow<'static, str>, Box<str>)]>);

impl Pairs {
    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).ok().map(|i| &*self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Sets `key` to `value` (replacing a value it had).
    pub fn insert(&mut self, key: String, value: String) {
        match self.position(&key) {
            Ok(i) => self.0[i].1 = value.into(),
            Err(i) => {
                let mut pairs = std::mem::take(&mut self.0).into_vec();
                pairs.insert(i, (self::key(key), value.into()));
                self.0 = pairs.into_boxed_slice();
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// As a map (what label selectors match against).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

impl From<BTreeMap<String, String>> for Pairs {
    fn from(map: BTreeMap<String, String>) -> Pairs {
        // A map's keys are sorted and unique already.
        Pairs(map.into_iter().map(|(k, v)| (key(k), v.into())).collect())
    }
}

impl FromIterator<(String, String)> for Pairs {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Pairs {
        Pairs::from(pairs.into_iter().collect::<BTreeMap<_, _>>())
    }
}

/// What classification needs of a claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimView {
    pub namespace: Arc<str>,
    pub name: Box<str>,
    pub uid: Token,
    pub resource_version: Token,
    pub labels: Arc<Pairs>,
    /// Only stateward's (`stateward.io/`): no other is read.
    pub annotations: Arc<Pairs>,
    /// Seconds since the Unix epoch.
    pub created: Option<i64>,
    pub requested_bytes: Option<u64>,
    pub deleting: bool,
    /// (kind, uid) of each owner reference.
    pub owners: Box<[(Cow<'static, str>, Token)]>,
}

/// What classification needs of a StatefulSet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetView {
    pub namespace: Arc<str>,
    pub name: Box<str>,
    pub uid: Token,
    pub replicas: i32,
    pub ordinals_start: i32,
    pub templates: Box<[Box<str>]>,
    /// `spec.selector`, or `None` when the API server would reject it (it selects nothing).
    pub selector: Option<Selector>,
    pub when_scaled_delete: bool,
    /// Only stateward's (`stateward.io/`): no other is read.
    pub annotations: Arc<Pairs>,
}

/// What classification needs of a pod: its uid (a claim owned by a live pod is protected)
/// and the claims it holds (none once it is `Succeeded` or `Failed`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    pub namespace: Arc<str>,
    pub name: Box<str>,
    pub uid: Token,
    /// The claims it mounts, unless it is `Succeeded` or `Failed`.
    pub claims: Names,
}

/// A few names in one allocation (a pod's claims: most pods mount one or none), each
/// after its length and a `:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names(Box<str>);

impl Names {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let mut rest: &str = &self.0;
        std::iter::from_fn(move || {
            let (len, after) = rest.split_once(':')?;
            let name = after.get(..len.parse().ok()?)?;
            rest = &after[name.len()..];
            Some(name)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> FromIterator<&'a str> for Names {
    fn from_iter<I: IntoIterator<Item = &'a str>>(names: I) -> Names {
        use std::fmt::Write;
        let mut text = String::new();
        for name in names {
            let _ = write!(text, "{}:{name}", name.len());
        }
        Names(text.into_boxed_str())
    }
}

/// The annotations under `stateward.io/`: the only ones the collector reads.
fn stateward_annotations(annotations: Option<&BTreeMap<String, String>>) -> Arc<Pairs> {
    shared_pairs(
        annotations
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// An owner's kind, not allocated for the two kinds the classifier checks.
fn kind(text: &str) -> Cow<'static, str> {
    match ["StatefulSet", "Pod"].into_iter().find(|k| *k == text) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(text.to_owned()),
    }
}

fn token(text: Option<&String>) -> Token {
    text.map_or_else(Token::default, |t| Token::new(t))
}

fn boxed(text: Option<&String>) -> Box<str> {
    text.map_or_else(Box::default, |t| t.as_str().into())
}

fn namespace(text: Option<&String>) -> Arc<str> {
    shared_str(text.map_or("", String::as_str))
}

pub fn claim_view(pvc: &PersistentVolumeClaim) -> ClaimView {
    let meta = &pvc.metadata;
    ClaimView {
        namespace: namespace(meta.namespace.as_ref()),
        name: boxed(meta.name.as_ref()),
        uid: token(meta.uid.as_ref()),
        resource_version: token(meta.resource_version.as_ref()),
        labels: shared_pairs(meta.labels.clone().unwrap_or_default().into()),
        annotations: stateward_annotations(meta.annotations.as_ref()),
        created: meta.creation_timestamp.as_ref().map(|t| t.0.as_second()),
        requested_bytes: pvc
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| quantity_bytes(&q.0)),
        deleting: meta.deletion_timestamp.is_some(),
        owners: meta
            .owner_references
            .iter()
            .flatten()
            .map(|o| (kind(&o.kind), Token::new(&o.uid)))
            .collect(),
    }
}

pub fn set_view(sts: &StatefulSet) -> SetView {
    let spec = &sts.spec;
    SetView {
        namespace: namespace(sts.metadata.namespace.as_ref()),
        name: boxed(sts.metadata.name.as_ref()),
        uid: token(sts.metadata.uid.as_ref()),
        replicas: crate::policy::identity::replicas(sts),
        ordinals_start: crate::policy::identity::ordinals_start(sts),
        templates: spec
            .volume_claim_templates
            .iter()
            .flatten()
            .filter_map(|t| t.metadata.name.as_deref().map(Box::from))
            .collect(),
        selector: Selector::try_from(spec.selector.clone()).ok(),
        when_scaled_delete: spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_scaled.as_deref())
            == Some("Delete"),
        annotations: stateward_annotations(sts.metadata.annotations.as_ref()),
    }
}

pub fn pod_view(pod: &Pod) -> PodView {
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    PodView {
        namespace: namespace(pod.metadata.namespace.as_ref()),
        name: boxed(pod.metadata.name.as_ref()),
        uid: token(pod.metadata.uid.as_ref()),
        claims: if finished {
            Names::default()
        } else {
            pod.spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .map(|c| c.claim_name.as_str())
                .collect()
        },
    }
}

/// The API of `K` in `namespace`, or in every namespace.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
