//! CEL text: quoting strings and lists for the conditions and native policies the engine
//! derives from its rules. Pure text; no CEL is evaluated here.

/// Quotes `text` as a CEL string literal.
pub fn cel_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A CEL list literal of strings.
pub fn cel_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| cel_string(s)).collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cel_strings_are_escaped() {
        assert_eq!(cel_string(r"a'b\c"), r"'a\'b\\c'");
        assert_eq!(cel_list(&["x".into(), "y'".into()]), r"['x', 'y\'']");
    }
}
