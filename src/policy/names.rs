//! Kubernetes name and label syntax.

/// RFC 1123 label: at most 63 lower-case alphanumerics or '-', starting and ending with an
/// alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A label key: optional DNS subdomain prefix and '/', then a name of at most 63
/// alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric.
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && is_label_name(name)
}

fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// Splits `<prefix>-<ordinal>` at the last dash when the suffix is an ordinal as the
/// controller writes it.
pub fn split_ordinal(name: &str) -> Option<(&str, i64)> {
    let (prefix, ordinal) = name.rsplit_once('-')?;
    if prefix.is_empty() {
        return None;
    }
    Some((prefix, super::identity::parse_ordinal(ordinal)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(is_dns1123_label("web"));
        assert!(is_dns1123_label("a-1"));
        assert!(!is_dns1123_label("Web"));
        assert!(!is_dns1123_label("-web"));
        assert!(!is_dns1123_label("web.svc"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(!is_dns1123_label(""));
    }

    #[test]
    fn label_keys() {
        assert!(is_label_key("instance"));
        assert!(is_label_key("statefulset.kubernetes.io/pod-name"));
        assert!(!is_label_key("bad key"));
        assert!(!is_label_key("/name"));
        assert!(!is_label_key("Example.com/x"));
    }

    #[test]
    fn ordinals() {
        assert_eq!(split_ordinal("data-web-3"), Some(("data-web", 3)));
        assert_eq!(split_ordinal("web-01"), None);
        assert_eq!(split_ordinal("web"), None);
        assert_eq!(split_ordinal("web-"), None);
    }
}
