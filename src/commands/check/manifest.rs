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
    /// Lines of the source before the document's text (items share their List's).
    pub line_offset: usize,
}

/// Splits a source into documents and parses each one.
pub fn documents(source: &Source) -> Vec<Document> {
    let mut out = Vec::new();
    let base = source.text.as_ptr() as usize;
    for chunk in split_documents(&source.text) {
        // Every chunk is a slice of the source's text.
        let start = (chunk.as_ptr() as usize).saturating_sub(base);
        let line_offset = source
            .text
            .get(..start)
            .map_or(0, |before| before.matches('\n').count());
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
            line_offset,
        });
        for item in items.into_iter().flatten() {
            let text = serde_json::to_string(&item).unwrap_or_default();
            out.push(Document {
                index: out.len(),
                text,
                value: Ok(item),
                list_parent: Some(index),
                line_offset,
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
    parse_yaml::<Value>(chunk).map_err(|err| first_line(&err))
}

/// Parses YAML as Kubernetes reads it ([`kubernetes_yaml`]).
fn parse_yaml<T: serde::de::DeserializeOwned>(chunk: &str) -> Result<T, serde_saphyr::Error> {
    let mut text = std::borrow::Cow::Borrowed(chunk);
    for _ in 0..MAX_REINDENTS {
        match serde_saphyr::from_str_with_options::<T>(&text, kubernetes_yaml()) {
            Ok(value) => return Ok(value),
            Err(err) => {
                // go-yaml accepts continuation lines of a quoted scalar at the parent's
                // indentation; YAML 1.2 does not. Their leading blanks are folded away,
                // so indenting such a line changes nothing in the value (nor the position
                // of any key).
                let line = err.location().map(|l| l.line() as usize);
                match line {
                    Some(line) if err.to_string().contains(QUOTED_INDENT_ERROR) && line > 0 => {
                        text = std::borrow::Cow::Owned(indent_line(&text, line - 1));
                    }
                    _ => return Err(err),
                }
            }
        }
    }
    serde_saphyr::from_str_with_options::<T>(&text, kubernetes_yaml())
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

// ---- positions -----------------------------------------------------------------------

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A line and column in a source, both 1-based (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Where each field of one document is written: a mapping entry's position is that of its
/// key, a sequence item's that of the item. Positions are relative to the document's text.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    fields: std::collections::HashMap<Vec<Segment>, Position>,
}

impl Positions {
    /// Reads the positions of a document's text (as YAML; JSON is YAML too). A document
    /// that does not parse has none.
    pub fn of(text: &str) -> Positions {
        let mut positions = Positions::default();
        if let Ok(root) = parse_yaml::<serde_saphyr::Spanned<Node>>(text) {
            let mut path = Vec::new();
            positions.collect(&mut path, &root.value);
        }
        positions
    }

    fn collect(&mut self, path: &mut Vec<Segment>, node: &Node) {
        match node {
            Node::Map(entries) => {
                for (key, value) in entries {
                    path.push(Segment::Key(key.value.0.clone()));
                    if let Some(position) = position_of(&key.referenced) {
                        // A repeated key keeps the last one, as the value does.
                        self.fields.insert(path.clone(), position);
                    }
                    self.collect(path, &value.value);
                    path.pop();
                }
            }
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Segment::Index(i));
                    if let Some(position) = position_of(&item.referenced) {
                        self.fields.insert(path.clone(), position);
                    }
                    self.collect(path, &item.value);
                    path.pop();
                }
            }
            Node::Scalar => {}
        }
    }

    /// The position of a field path, if the field is written in the document.
    pub fn get(&self, path: &[Segment]) -> Option<Position> {
        self.fields.get(path).copied()
    }
}

fn position_of(location: &serde_saphyr::Location) -> Option<Position> {
    let (line, column) = (location.line(), location.column());
    (line > 0 && column > 0).then_some(Position {
        line: line as usize,
        column: column as usize,
    })
}

/// Parses a finding's field path as the rules write it: dotted keys, `[n]` for sequence
/// items and `[key]` for map keys that contain dots (`spec.selector[app.kubernetes.io/x]`).
pub fn parse_field_path(field: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !current.is_empty() {
                    segments.push(Segment::Key(std::mem::take(&mut current)));
                }
            }
            '[' => {
                if !current.is_empty() {
                    segments.push(Segment::Key(std::mem::take(&mut current)));
                }
                let inner: String = chars.by_ref().take_while(|&c| c != ']').collect();
                segments.push(match inner.parse::<usize>() {
                    Ok(index) => Segment::Index(index),
                    Err(_) => Segment::Key(inner),
                });
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        segments.push(Segment::Key(current));
    }
    segments
}

/// The 1-based line of the first line of `chunk` that holds content (not a comment or a
/// blank line).
pub fn first_content_line(chunk: &str) -> usize {
    chunk
        .lines()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .map_or(1, |i| i + 1)
}

/// A YAML node with the positions of its keys and items, for [`Positions`].
#[derive(Debug)]
enum Node {
    Map(Vec<(serde_saphyr::Spanned<KeyText>, serde_saphyr::Spanned<Node>)>),
    Seq(Vec<serde_saphyr::Spanned<Node>>),
    Scalar,
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        serde::Deserialize::deserialize(d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key as text (Kubernetes keys are strings; others are kept as written).
#[derive(Debug)]
struct KeyText(String);

impl<'de> serde::Deserialize<'de> for KeyText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
        }
        deserializer.deserialize_any(V)
    }
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
        let offsets: Vec<usize> = docs.iter().map(|d| d.line_offset).collect();
        assert_eq!(offsets, vec![0, 0, 0, 6]);
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
    #[test]
    fn positions_point_at_keys_and_items() {
        let text = "# comment\napiVersion: apps/v1\nspec:\n  template:\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers:\n        - name: a\n        - {name: b, image: x}\n  selector: {matchLabels: {app.kubernetes.io/name: web}}\n";
        let positions = Positions::of(text);
        let at = |path: &str| {
            positions
                .get(&parse_field_path(path))
                .map(|p| (p.line, p.column))
        };
        assert_eq!(at("apiVersion"), Some((2, 1)));
        assert_eq!(
            at("spec.template.spec.terminationGracePeriodSeconds"),
            Some((6, 7))
        );
        assert_eq!(at("spec.template.spec.containers[0].name"), Some((8, 11)));
        assert_eq!(at("spec.template.spec.containers[1].image"), Some((9, 21)));
        assert_eq!(
            at("spec.selector.matchLabels[app.kubernetes.io/name]"),
            Some((10, 28))
        );
        assert_eq!(at("spec.template.spec.containers[2]"), None);
        assert_eq!(first_content_line(text), 2);
    }
    #[test]
    fn positions_survive_under_indented_quoted_continuation_lines() {
        let positions = Positions::of("a:\n  b: '[\n    1\n  ]'\n  c: 0\n");
        let c = positions.get(&parse_field_path("a.c"));
        assert_eq!(c, Some(Position { line: 5, column: 3 }));
    }

    #[test]
    fn field_paths_parse_keys_indices_and_bracketed_keys() {
        assert_eq!(
            parse_field_path("spec.a[0].b[statefulset.kubernetes.io/pod-name]"),
            vec![
                Segment::Key("spec".into()),
                Segment::Key("a".into()),
                Segment::Index(0),
                Segment::Key("b".into()),
                Segment::Key("statefulset.kubernetes.io/pod-name".into()),
            ]
        );
    }
}
