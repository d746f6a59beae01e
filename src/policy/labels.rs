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
/// the pairs sorted by key in one boxed slice. A `BTreeMap` allocates a node for eleven
/// pairs (about 540 bytes) even for the one label of a typical selector; this takes the
/// slice and the strings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSet(Box<[(Box<str>, Box<str>)]>);

impl LabelSet {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
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

impl From<Labels> for LabelSet {
    fn from(labels: Labels) -> LabelSet {
        // A BTreeMap iterates in key order: the slice is sorted.
        LabelSet(
            labels
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
        )
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
            Labels::new(),
        ] {
            let set = LabelSet::from(selector.clone());
            let expected =
                !selector.is_empty() && selector.iter().all(|(k, v)| pod.get(k) == Some(v));
            assert_eq!(set.selects(&pod), expected);
            assert_eq!(set.to_labels(), selector);
            for key in ["app", "tier", "zone", ""] {
                assert_eq!(set.get(key), selector.get(key).map(String::as_str));
            }
        }
    }
}
