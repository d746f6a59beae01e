//! Reading manifests: files, directories, stdin; multi-document YAML, JSON and `kind: List`.
//! Documents are split on `---` lines before parsing, as kubectl does, so one broken
//! document never hides the others.
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Files larger than this are refused rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// One input: a file or standard input, with its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// A source that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ReadError {
    pub name: String,
    pub message: String,
}

/// Reads every path: `-` is stdin, a directory is read recursively (`*.yaml`, `*.yml`,
/// `*.json`, in name order). Unreadable paths become errors; the rest are still read.
pub fn read_paths(paths: &[PathBuf]) -> (Vec<Source>, Vec<ReadError>) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            match read_limited(std::io::stdin().lock(), "<stdin>") {
                Ok(text) => sources.push(Source {
                    name: "<stdin>".into(),
                    text,
                }),
                Err(err) => errors.push(err),
            }
        } else if path.is_dir() {
            let mut files = Vec::new();
            if let Err(err) = collect_dir(path, &mut files) {
                errors.push(err);
            }
            files.sort();
            for file in files {
                read_file(&file, &mut sources, &mut errors);
            }
        } else {
            read_file(path, &mut sources, &mut errors);
        }
    }
    (sources, errors)
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReadError> {
    let entries = std::fs::read_dir(dir).map_err(|err| ReadError {
        name: dir.display().to_string(),
        message: format!("cannot read directory: {err}"),
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_dir(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}

fn read_file(path: &Path, sources: &mut Vec<Source>, errors: &mut Vec<ReadError>) {
    let name = path.display().to_string();
    let result = std::fs::File::open(path)
        .map_err(|err| ReadError {
            name: name.clone(),
            message: format!("cannot read: {err}"),
        })
        .and_then(|file| read_limited(file, &name));
    match result {
        Ok(text) => sources.push(Source { name, text }),
        Err(err) => errors.push(err),
    }
}

fn read_limited(reader: impl Read, name: &str) -> Result<String, ReadError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| ReadError {
            name: name.into(),
            message: format!("cannot read: {err}"),
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError {
            name: name.into(),
            message: format!(
                "larger than {} MiB; split it",
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        });
    }
    String::from_utf8(bytes).map_err(|err| ReadError {
        name: name.into(),
        message: format!("not UTF-8 text: {err}"),
    })
}

/// One document of a source: its index (items of a `kind: List` are numbered after it),
/// and its parsed value or why it could not be parsed.
#[derive(Debug, Clone)]
pub struct Document {
    pub index: usize,
    /// The document's text as written (for `mutate` to pass an unparseable one through).
    pub text: String,
    pub value: Result<Value, String>,
    /// Set on items expanded from a `kind: List` (index of the List document).
    pub list_parent: Option<usize>,
}

/// Splits a source into documents and parses each one.
pub fn documents(source: &Source) -> Vec<Document> {
    let mut out = Vec::new();
    for chunk in split_documents(&source.text) {
        let value = parse_document(chunk);
        let index = out.len();
        let items = match &value {
            Ok(Value::Object(map)) if is_list(map) => {
                map.get("items").and_then(Value::as_array).cloned()
            }
            _ => None,
        };
        out.push(Document {
            index,
            text: chunk.to_owned(),
            value,
            list_parent: None,
        });
        for item in items.into_iter().flatten() {
            let text = serde_json::to_string(&item).unwrap_or_default();
            out.push(Document {
                index: out.len(),
                text,
                value: Ok(item),
                list_parent: Some(index),
            });
        }
    }
    out
}

fn is_list(map: &serde_json::Map<String, Value>) -> bool {
    map.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && map.get("items").is_some_and(Value::is_array)
}

/// Splits YAML text at `---` document markers; chunks with nothing but comments and
/// blank lines are dropped. A JSON source is one document.
pub fn split_documents(text: &str) -> Vec<&str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end();
        let is_marker = trimmed == "---"
            || trimmed.starts_with("--- ")
            || trimmed.starts_with("---\t")
            || trimmed == "...";
        if is_marker {
            chunks.push(&text[start..offset]);
            start = offset + line.len();
            // `--- value` starts the next document on the marker line itself.
            if let Some(rest) = trimmed.strip_prefix("--- ")
                && !rest.trim_start().starts_with('#')
            {
                start = offset + 4;
            }
        }
        offset += line.len();
    }
    chunks.push(&text[start..]);
    chunks.into_iter().filter(|c| has_content(c)).collect()
}

fn has_content(chunk: &str) -> bool {
    chunk.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && !t.starts_with("%YAML") && !t.starts_with("%TAG")
    })
}

/// YAML as Kubernetes reads it (sigs.k8s.io/yaml on go-yaml): `0755` is octal, a repeated
/// key keeps the last value, and closing quotes of multi-line scalars may sit at the
/// parent's indentation.
fn kubernetes_yaml() -> serde_saphyr::Options {
    serde_saphyr::options! {
        legacy_octal_numbers: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
        strict_indentation: false,
    }
}

fn parse_document(chunk: &str) -> Result<Value, String> {
    let trimmed = chunk.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // JSON (also valid YAML, but serde_json reports JSON errors more precisely).
        if let Ok(value) = serde_json::from_str::<Value>(chunk) {
            return Ok(value);
        }
    }
    let mut text = std::borrow::Cow::Borrowed(chunk);
    for _ in 0..MAX_REINDENTS {
        match serde_saphyr::from_str_with_options::<Value>(&text, kubernetes_yaml()) {
            Ok(value) => return Ok(value),
            Err(err) => {
                // go-yaml accepts continuation lines of a quoted scalar at the parent's
                // indentation; YAML 1.2 does not. Their leading blanks are folded away,
                // so indenting such a line changes nothing in the value.
                let line = err.location().map(|l| l.line() as usize);
                match line {
                    Some(line) if err.to_string().contains(QUOTED_INDENT_ERROR) && line > 0 => {
                        text = std::borrow::Cow::Owned(indent_line(&text, line - 1));
                    }
                    _ => return Err(first_line(&err)),
                }
            }
        }
    }
    serde_saphyr::from_str_with_options::<Value>(&text, kubernetes_yaml())
        .map_err(|err| first_line(&err))
}

const QUOTED_INDENT_ERROR: &str = "invalid indentation in multiline quoted scalar";
const MAX_REINDENTS: usize = 64;

fn indent_line(text: &str, index: usize) -> String {
    text.split_inclusive('\n')
        .enumerate()
        .map(|(i, line)| {
            if i == index {
                format!("  {line}")
            } else {
                line.to_owned()
            }
        })
        .collect()
}

fn first_line(err: &serde_saphyr::Error) -> String {
    err.to_string()
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim_start_matches("error: ")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source {
            name: "t.yaml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn splits_on_markers_and_drops_empty_documents() {
        let docs = split_documents("---\n# only a comment\n---\na: 1\n--- \nb: 2\n...\n");
        assert_eq!(docs, vec!["a: 1\n", "b: 2\n"]);
        assert_eq!(split_documents("--- {c: 3}\n"), vec!["{c: 3}\n"]);
    }

    #[test]
    fn broken_document_does_not_hide_the_others() {
        let docs = documents(&source("a: 1\n---\nb: [1,\n---\nc: 3\n"));
        assert_eq!(docs.len(), 3);
        assert!(docs[0].value.is_ok());
        assert!(
            docs[1].value.as_ref().is_err_and(|e| e.contains("line")),
            "{:?}",
            docs[1].value
        );
        assert_eq!(
            docs[2].value.as_ref().ok(),
            Some(&serde_json::json!({"c": 3}))
        );
    }

    #[test]
    fn list_items_are_numbered_after_the_list() {
        let docs = documents(&source(
            "kind: List\napiVersion: v1\nitems:\n- {kind: Service}\n- {kind: Pod}\n---\nkind: Other\n",
        ));
        let kinds: Vec<(usize, Option<usize>)> =
            docs.iter().map(|d| (d.index, d.list_parent)).collect();
        assert_eq!(
            kinds,
            vec![(0, None), (1, Some(0)), (2, Some(0)), (3, None)]
        );
    }

    #[test]
    fn reads_yaml_as_kubernetes_does() {
        let docs = documents(&source("mode: 0755\nkey: 1\nkey: 2\nq: '[\n  1\n'\n"));
        assert_eq!(
            docs[0].value.as_ref().ok(),
            Some(&serde_json::json!({"mode": 493, "key": 2, "q": "[ 1 "}))
        );
    }

    #[test]
    fn accepts_under_indented_quoted_continuation_lines() {
        let docs = documents(&source("a:\n  b: '[\n    1\n  ]'\n"));
        assert_eq!(
            docs[0].value.as_ref().ok(),
            Some(&serde_json::json!({"a": {"b": "[ 1 ]"}}))
        );
    }

    #[test]
    fn json_sources_parse() {
        let docs = documents(&source("{\"kind\": \"Service\", \"apiVersion\": \"v1\"}"));
        assert_eq!(docs.len(), 1);
        assert!(docs[0].value.is_ok());
    }
}
