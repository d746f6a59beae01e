//! Label selector semantics (matchLabels and matchExpressions) as the API server applies them.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// Does `selector` select an object with `labels`? An empty selector selects everything,
/// as in the API; callers that need "empty is invalid" check that themselves.
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|req| {
            let values = req.values.as_deref().unwrap_or_default();
            let value = labels.get(&req.key);
            match req.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                // An unknown operator is rejected by the API server; it selects nothing.
                _ => false,
            }
        })
}

/// Does a Service-style equality selector select `labels`? An empty map selects nothing
/// for Services (no endpoints are managed).
pub fn map_selector_matches(selector: &Labels, labels: &Labels) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
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

    /// As [`map_selector_matches`] with `self` as the selector: does this Service-style
    /// equality selector select `labels`? Empty selects nothing.
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

pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
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
        assert!(map_selector_matches(&labels(&[("app", "web")]), &pod));
        assert!(!map_selector_matches(&labels(&[("app", "db")]), &pod));
        assert!(!map_selector_matches(&Labels::new(), &pod));
        for selector in [
            labels(&[("app", "web")]),
            labels(&[("app", "db")]),
            labels(&[("app", "web"), ("tier", "db")]),
            labels(&[("app", "web"), ("zone", "a")]),
            Labels::new(),
        ] {
            let set = LabelSet::from(selector.clone());
            assert_eq!(set.selects(&pod), map_selector_matches(&selector, &pod));
            assert_eq!(set.to_labels(), selector);
            for key in ["app", "tier", "zone", ""] {
                assert_eq!(set.get(key), selector.get(key).map(String::as_str));
            }
        }
    }
}
