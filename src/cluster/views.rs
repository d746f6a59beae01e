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
//! of them is kept, [`shared_str`], [`shared_pairs`]), a name a [`ShortStr`] (inline up to 22 bytes).
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

/// Most bytes a [`ShortStr`] keeps inline.
const INLINE: usize = 22;

/// A text of up to 22 bytes kept inline (the names of most pods and claims), a longer one
/// boxed: 24 bytes either way, where a `Box<str>` takes 16 and its allocation 32 more.
/// Compares, orders and hashes as its text, so a map keyed by it is read by `&str`.
#[derive(Clone)]
pub enum ShortStr {
    Inline(u8, [u8; INLINE]),
    Boxed(Box<str>),
}

const _: () = assert!(std::mem::size_of::<ShortStr>() == 24);

impl ShortStr {
    pub fn new(text: &str) -> ShortStr {
        match u8::try_from(text.len()) {
            Ok(len) if usize::from(len) <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                ShortStr::Inline(len, bytes)
            }
            _ => ShortStr::Boxed(text.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Always valid: the bytes were copied from a `str` of that length.
            ShortStr::Inline(len, bytes) => bytes
                .get(..usize::from(*len))
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default(),
            ShortStr::Boxed(text) => text,
        }
    }
}

impl Default for ShortStr {
    fn default() -> ShortStr {
        ShortStr::Inline(0, [0; INLINE])
    }
}

impl std::ops::Deref for ShortStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ShortStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for ShortStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for ShortStr {
    fn from(text: &str) -> ShortStr {
        ShortStr::new(text)
    }
}

impl From<String> for ShortStr {
    fn from(text: String) -> ShortStr {
        ShortStr::new(&text)
    }
}

impl PartialEq for ShortStr {
    fn eq(&self, other: &ShortStr) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ShortStr {}

impl PartialEq<str> for ShortStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ShortStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for ShortStr {
    fn partial_cmp(&self, other: &ShortStr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShortStr {
    fn cmp(&self, other: &ShortStr) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for ShortStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl serde::Serialize for ShortStr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
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
    pub name: ShortStr,
    pub uid: Token,
    pub resource_version: Token,
    pub labels: Arc<Pairs>,
    /// Only stateward's (`stateward.io/`): no other is read.
    pub annotations: Arc<Pairs>,
    /// (kind, uid) of each owner reference.
    pub owners: Box<[(Cow<'static, str>, Token)]>,
    /// Read with [`ClaimView::created`], [`ClaimView::requested_bytes`] and
    /// [`ClaimView::deleting`]; set with their `with_` methods.
    pub facts: Facts,
}

/// Two numbers that may be missing and a flag in 17 bytes, where two `Option<u64>` and a
/// `bool` take 33: what keeps a claim's view (and its `Arc`) in an allocation of 176
/// bytes, not 192.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Facts {
    created: i64,
    requested_bytes: u64,
    /// [`Facts::CREATED`] | [`Facts::REQUESTED`] | [`Facts::DELETING`].
    flags: u8,
}

impl Facts {
    const CREATED: u8 = 1;
    const REQUESTED: u8 = 2;
    const DELETING: u8 = 4;

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

impl ClaimView {
    /// `creationTimestamp`, in seconds since the Unix epoch.
    pub fn created(&self) -> Option<i64> {
        self.facts.has(Facts::CREATED).then_some(self.facts.created)
    }

    /// `spec.resources.requests.storage` in bytes (none when it is not a quantity).
    pub fn requested_bytes(&self) -> Option<u64> {
        self.facts
            .has(Facts::REQUESTED)
            .then_some(self.facts.requested_bytes)
    }

    /// It has a `deletionTimestamp`.
    pub fn deleting(&self) -> bool {
        self.facts.has(Facts::DELETING)
    }

    pub fn with_created(mut self, seconds: Option<i64>) -> ClaimView {
        self.facts.created = seconds.unwrap_or(0);
        self.facts.set(Facts::CREATED, seconds.is_some());
        self
    }

    pub fn with_requested_bytes(mut self, bytes: Option<u64>) -> ClaimView {
        self.facts.requested_bytes = bytes.unwrap_or(0);
        self.facts.set(Facts::REQUESTED, bytes.is_some());
        self
    }

    pub fn with_deleting(mut self, deleting: bool) -> ClaimView {
        self.facts.set(Facts::DELETING, deleting);
        self
    }
}

/// What classification needs of a StatefulSet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetView {
    pub namespace: Arc<str>,
    pub name: ShortStr,
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
    pub name: ShortStr,
    pub uid: Token,
    /// The claims it mounts, unless it is `Succeeded` or `Failed`.
    pub claims: Names,
}

/// A few names in one allocation (a pod's claims: most pods mount one or none), each
/// after its length and a `:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names(ShortStr);

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
        Names(ShortStr::from(text))
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

fn short(text: Option<&String>) -> ShortStr {
    text.map_or_else(ShortStr::default, |t| ShortStr::new(t))
}

fn namespace(text: Option<&String>) -> Arc<str> {
    shared_str(text.map_or("", String::as_str))
}

pub fn claim_view(pvc: &PersistentVolumeClaim) -> ClaimView {
    let meta = &pvc.metadata;
    ClaimView {
        namespace: namespace(meta.namespace.as_ref()),
        name: short(meta.name.as_ref()),
        uid: token(meta.uid.as_ref()),
        resource_version: token(meta.resource_version.as_ref()),
        labels: shared_pairs(meta.labels.clone().unwrap_or_default().into()),
        annotations: stateward_annotations(meta.annotations.as_ref()),
        owners: meta
            .owner_references
            .iter()
            .flatten()
            .map(|o| (kind(&o.kind), Token::new(&o.uid)))
            .collect(),
        facts: Facts::default(),
    }
    .with_created(meta.creation_timestamp.as_ref().map(|t| t.0.as_second()))
    .with_requested_bytes(
        pvc.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| quantity_bytes(&q.0)),
    )
    .with_deleting(meta.deletion_timestamp.is_some())
}

pub fn set_view(sts: &StatefulSet) -> SetView {
    let spec = &sts.spec;
    SetView {
        namespace: namespace(sts.metadata.namespace.as_ref()),
        name: short(sts.metadata.name.as_ref()),
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
        name: short(pod.metadata.name.as_ref()),
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
