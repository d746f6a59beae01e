//! Labels as the engine holds them: [`selector_matches`] applies a `LabelSelector` with
//! kube's [`Selector`] (no second implementation of its semantics), and [`LabelSet`] is the
//! compact form the cluster caches keep for Service selectors. Pure: no I/O.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

pub type Labels = BTreeMap<String, String>;

/// Does `selector` select an object with `labels`? kube's [`Selector`] semantics (an empty
/// selector selects everything, as in the API; callers that need "empty is invalid" check
/// [`selector_is_empty`]). A selector the API server would reject (an unknown operator,
/// `In` without values) selects nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels))
}

/// Labels held for a long time (the cluster caches hold one per Service and StatefulSet):
/// one string of every key and value in key order, each after its length in bytes and a
/// `:` (`3:app3:web`). A `BTreeMap` allocates a node for eleven pairs (about 540 bytes) even
/// for the one label of a typical selector, a slice of boxed strings three allocations
/// (112 bytes); this is one (32 bytes for `app: web`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSet(Box<str>);

impl LabelSet {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut rest: &str = &self.0;
        std::iter::from_fn(move || {
            let key = next_field(&mut rest)?;
            let value = next_field(&mut rest)?;
            Some((key, value))
        })
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Does this Service-style equality selector select `labels`? Empty selects nothing
    /// (a Service without a selector manages no endpoints).
    pub fn selects(&self, labels: &Labels) -> bool {
        !self.is_empty()
            && self
                .iter()
                .all(|(k, v)| labels.get(k).map(String::as_str) == Some(v))
    }

    pub fn to_labels(&self) -> Labels {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// The next `LEN:TEXT` field of a [`LabelSet`]'s string, advancing `rest` past it.
fn next_field<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let (len, after) = rest.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let field = after.get(..len)?;
    *rest = after.get(len..)?;
    Some(field)
}

impl From<Labels> for LabelSet {
    fn from(labels: Labels) -> LabelSet {
        use std::fmt::Write;
        // A BTreeMap iterates in key order.
        let size = labels.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
        let mut text = String::with_capacity(size);
        for (k, v) in &labels {
            let _ = write!(text, "{}:{k}{}:{v}", k.len(), v.len());
        }
        LabelSet(text.into_boxed_str())
    }
}

impl<const N: usize> From<[(String, String); N]> for LabelSet {
    fn from(pairs: [(String, String); N]) -> LabelSet {
        LabelSet::from(Labels::from(pairs))
    }
}

/// Has `selector` no terms at all (it selects everything)?
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    Selector::try_from(selector.clone()).is_ok_and(|s| s.selects_all())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions() {
        let pod = labels(&[("app", "web"), ("tier", "db")]);
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expr("tier", "In", &["db", "cache"]),
                expr("env", "NotIn", &["prod"]),
                expr("app", "Exists", &[]),
                expr("legacy", "DoesNotExist", &[]),
            ]),
        };
        assert!(selector_matches(&sel, &pod));
        let other = labels(&[("app", "web"), ("tier", "frontend")]);
        assert!(!selector_matches(&sel, &other));
        let bad_op = LabelSelector {
            match_expressions: Some(vec![expr("app", "Bogus", &[])]),
            ..LabelSelector::default()
        };
        assert!(!selector_matches(&bad_op, &pod));
    }

    #[test]
    fn service_selectors() {
        let pod = labels(&[("app", "web")]);
        for selector in [
            labels(&[("app", "web")]),
            labels(&[("app", "db")]),
            labels(&[("app", "web"), ("tier", "db")]),
            labels(&[("app", "web"), ("zone", "a")]),
            labels(&[("1:2", ":3:"), ("", ""), ("é", "10:x"), ("a", "")]),
            Labels::new(),
        ] {
            let set = LabelSet::from(selector.clone());
            let expected =
                !selector.is_empty() && selector.iter().all(|(k, v)| pod.get(k) == Some(v));
            assert_eq!(set.selects(&pod), expected);
            assert_eq!(set.to_labels(), selector);
            assert_eq!(set.len(), selector.len());
            assert_eq!(
                set.iter().collect::<Vec<_>>(),
                selector
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect::<Vec<_>>()
            );
            for key in ["app", "tier", "zone", "", "1:2", "é", "a", "1"] {
                assert_eq!(set.get(key), selector.get(key).map(String::as_str));
            }
        }
    }
}
