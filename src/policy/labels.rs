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
    }
}
