//! Policy files: typed, with unknown fields rejected, resolved once into a [`Policy`] that
//! the engine reads without allocating. The `rules:` and `mutations:` sections are read
//! with each rule's declared settings type (see `rules.rs`): nothing here names a rule.
//! No I/O: callers read the file and call [`Policy::from_yaml`].
use std::borrow::Cow;
use std::sync::LazyLock;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use super::rules::{Policy, RULES, RuleId};
use super::settings::{AnySettings, Invalid};

/// The built-in policy: the text of `policies/baseline.yaml`.
pub const BASELINE_YAML: &str = include_str!("../../policies/baseline.yaml");

pub const API_VERSION: &str = "stateward.io/v1alpha1";

impl Policy {
    /// The built-in baseline policy.
    pub fn baseline() -> Policy {
        // The embedded file is checked by a unit test, so this never falls back in practice.
        Policy::from_yaml(BASELINE_YAML, "<built-in baseline>").unwrap_or_default()
    }

    /// Parses a policy from YAML text; `source_name` names it in errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        let file: PolicyFile = match serde_saphyr::from_str(text) {
            Ok(file) => file,
            Err(err) => return Err(PolicyError::from_parse(text, source_name, &err)),
        };
        file.resolve().map_err(|(field, message)| PolicyError {
            source_name: source_name.to_owned(),
            line: line_of_field(text, &field),
            field: Some(field),
            message,
        })
    }
}

/// A policy file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct PolicyError {
    pub source_name: String,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl PolicyError {
    /// A policy file the caller could not read (`cannot read: <why>`).
    pub fn unreadable(source_name: &str, why: impl std::fmt::Display) -> PolicyError {
        PolicyError {
            source_name: source_name.to_owned(),
            line: None,
            field: None,
            message: format!("cannot read: {why}"),
        }
    }

    fn render(&self) -> String {
        let mut out = format!("invalid policy {}", self.source_name);
        if let Some(line) = self.line {
            out.push_str(&format!(" line {line}"));
        }
        if let Some(field) = &self.field {
            out.push_str(&format!(" field {field}"));
        }
        out.push_str(": ");
        out.push_str(&self.message);
        out
    }

    fn from_parse(text: &str, source_name: &str, err: &serde_saphyr::Error) -> PolicyError {
        let line = err.location().map(|l| l.line() as usize);
        // The typed parse knows the line; a second, untyped pass names the field path.
        let field = serde_saphyr::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|value| {
                serde_path_to_error::deserialize::<_, PolicyFile>(value)
                    .err()
                    .map(|e| e.path().to_string())
            })
            .filter(|p| p != ".");
        let message = err
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned();
        PolicyError {
            source_name: source_name.to_owned(),
            line,
            field,
            message,
        }
    }
}

/// Finds the line of the last segment of a dotted field path (best effort, for errors found
/// after parsing).
fn line_of_field(text: &str, field: &str) -> Option<usize> {
    let key = field.rsplit('.').next()?;
    let key = key.split('[').next()?;
    text.lines()
        .position(|line| {
            let t = line.trim_start().trim_start_matches("- ");
            t.starts_with(&format!("{key}:")) || t.contains(&format!(" {key}:"))
        })
        .map(|i| i + 1)
}

/// The JSON Schema (draft-07, as editors read it) of policy files, generated from the types
/// they are read into: unknown fields are `additionalProperties: false`, as the reader
/// rejects them, and each rule and mutation id is described by its summary.
pub fn schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let root = generator.into_root_schema_for::<PolicyFile>();
    let mut schema = serde_json::to_value(root).unwrap_or_default();
    if let Some(map) = schema.as_object_mut() {
        map.insert("title".into(), "stateward policy".into());
        map.insert(
            "description".into(),
            "A stateward policy file (`stateward policy schema` prints this schema; \
             `stateward policy check FILE` validates a file)."
                .into(),
        );
    }
    // A parameter's default comes from its settings type; `mode`, `enabled` and
    // `skippable` have theirs in the id's description instead of a `null`.
    if let Some(definitions) = schema
        .get_mut("definitions")
        .and_then(serde_json::Value::as_object_mut)
    {
        for definition in definitions.values_mut() {
            let properties = definition
                .get_mut("properties")
                .and_then(serde_json::Value::as_object_mut);
            for property in properties.into_iter().flat_map(|p| p.values_mut()) {
                if let Some(property) = property.as_object_mut()
                    && property.get("default") == Some(&serde_json::Value::Null)
                {
                    property.remove("default");
                }
            }
        }
    }
    // Each id's description after its `allOf` (as editors have shown it so far).
    for section in ["RulesSection", "MutationsSection"] {
        let properties = schema
            .pointer_mut(&format!("/definitions/{section}/properties"))
            .and_then(serde_json::Value::as_object_mut);
        for property in properties.into_iter().flat_map(|p| p.values_mut()) {
            if let Some(property) = property.as_object_mut()
                && let Some(description) = property.remove("description")
            {
                property.insert("description".into(), description);
            }
        }
    }
    schema
}

// ---- file schema ---------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyFile {
    /// Always `stateward.io/v1alpha1`.
    #[schemars(extend("const" = API_VERSION))]
    api_version: String,
    /// Always `Policy`.
    #[schemars(extend("const" = "Policy"))]
    kind: String,
    metadata: FileMetadata,
    #[serde(default)]
    spec: PolicySpec,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FileMetadata {
    /// The policy's name (in logs and metrics).
    #[schemars(length(min = 1))]
    name: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicySpec {
    /// Objects in these namespaces are never evaluated (default: kube-system,
    /// kube-node-lease).
    excluded_namespaces: Option<Vec<String>>,
    /// Validation rules by id; a rule not listed keeps its default.
    #[serde(default)]
    rules: Section<false>,
    /// Mutations by id; a mutation not listed keeps its default.
    #[serde(default)]
    mutations: Section<true>,
}

/// The `rules:` (`MUTATIONS = false`) or `mutations:` section: entries by id, each read
/// with the rule's declared settings type, in file order.
#[derive(Debug, Default)]
struct Section<const MUTATIONS: bool>(Vec<(RuleId, Box<dyn AnySettings>)>);

impl<const MUTATIONS: bool> Section<MUTATIONS> {
    const NAME: &'static str = if MUTATIONS { "mutations" } else { "rules" };

    fn declared() -> impl Iterator<Item = &'static super::rules::RuleInfo> {
        RULES
            .iter()
            .copied()
            .filter(|info| info.is_mutation() == MUTATIONS)
    }

    /// The section's ids, for "expected one of" in errors.
    fn names() -> &'static [&'static str] {
        static VALIDATIONS: LazyLock<Vec<&'static str>> =
            LazyLock::new(|| Section::<false>::declared().map(|i| i.name).collect());
        static MUTATIONS_: LazyLock<Vec<&'static str>> =
            LazyLock::new(|| Section::<true>::declared().map(|i| i.name).collect());
        if MUTATIONS { &MUTATIONS_ } else { &VALIDATIONS }
    }
}

impl<'de, const MUTATIONS: bool> Deserialize<'de> for Section<MUTATIONS> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SectionVisitor<const M: bool>;

        impl<'de, const M: bool> Visitor<'de> for SectionVisitor<M> {
            type Value = Section<M>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(if M {
                    "struct MutationsSection"
                } else {
                    "struct RulesSection"
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Section<M>, A::Error> {
                let mut entries: Vec<(RuleId, Box<dyn AnySettings>)> = Vec::new();
                while let Some(id) = map.next_key_seed(IdSeed::<M>)? {
                    if entries.iter().any(|(seen, _)| *seen == id) {
                        return Err(de::Error::duplicate_field(id.as_str()));
                    }
                    let settings = super::rules::read_settings(id, &mut map)?;
                    entries.push((id, settings));
                }
                Ok(Section(entries))
            }

            /// As a derived struct reads a sequence: here, only an empty one.
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Section<M>, A::Error> {
                match seq.next_element::<de::IgnoredAny>()? {
                    None => Ok(Section(Vec::new())),
                    Some(_) => Err(de::Error::invalid_length(1, &self)),
                }
            }
        }

        /// An id of the section, rejected while the key is read (so errors name it).
        struct IdSeed<const M: bool>;

        impl<'de, const M: bool> de::DeserializeSeed<'de> for IdSeed<M> {
            type Value = RuleId;

            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<RuleId, D::Error> {
                d.deserialize_identifier(self)
            }
        }

        impl<'de, const M: bool> Visitor<'de> for IdSeed<M> {
            type Value = RuleId;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("field identifier")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<RuleId, E> {
                Section::<M>::declared()
                    .find(|info| info.name == key)
                    .map(|info| info.id)
                    .ok_or_else(|| de::Error::unknown_field(key, Section::<M>::names()))
            }
        }

        // As a struct (the shape the section had as a derived type, and errors keep).
        let name = if MUTATIONS {
            "MutationsSection"
        } else {
            "RulesSection"
        };
        deserializer.deserialize_struct(name, Self::names(), SectionVisitor::<MUTATIONS>)
    }
}

impl<const MUTATIONS: bool> JsonSchema for Section<MUTATIONS> {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed(if MUTATIONS {
            "MutationsSection"
        } else {
            "RulesSection"
        })
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut properties = serde_json::Map::new();
        for info in Self::declared() {
            let reference = super::rules::settings_schema(info.id, generator);
            properties.insert(
                info.name.into(),
                serde_json::json!({
                    // Draft-07 ignores the siblings of `$ref`: the reference goes into `allOf`.
                    "allOf": [reference],
                    "description": format!("{} (default: {})", info.summary, info.default_label()),
                }),
            );
        }
        schemars::json_schema!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        })
    }
}

type ResolveError = (String, String);

impl PolicyFile {
    fn resolve(self) -> Result<Policy, ResolveError> {
        if self.api_version != API_VERSION {
            return Err((
                "apiVersion".into(),
                format!("is `{}`; expected `{API_VERSION}`", self.api_version),
            ));
        }
        if self.kind != "Policy" {
            return Err((
                "kind".into(),
                format!("is `{}`; expected `Policy`", self.kind),
            ));
        }
        if self.metadata.name.trim().is_empty() {
            return Err(("metadata.name".into(), "must not be empty".into()));
        }
        let mut policy = Policy {
            name: self.metadata.name,
            ..Policy::default()
        };
        if let Some(namespaces) = self.spec.excluded_namespaces {
            policy.excluded_namespaces = namespaces;
        }
        let sections = [
            (Section::<false>::NAME, self.spec.rules.0),
            (Section::<true>::NAME, self.spec.mutations.0),
        ];
        for (section, entries) in sections {
            for (id, mut settings) in entries {
                if let Err(Invalid { parameter, message }) = settings.check() {
                    return Err((format!("spec.{section}.{id}.{parameter}"), message));
                }
                let i = id.index();
                let switch = settings.take_switch();
                if let Some(mode) = switch.mode {
                    policy.modes[i] = mode;
                }
                if let Some(enabled) = switch.enabled {
                    policy.enabled[i] = enabled;
                }
                if let Some(skippable) = switch.skippable {
                    policy.skippable[i] = skippable;
                }
                policy.settings[i] = settings;
            }
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::{Mode, Rule, defaults, live, statefulset};
    use super::super::settings::Settings;
    use super::*;

    fn settings<'p, S: Settings>(policy: &'p Policy, rule: &Rule<S>) -> &'p S {
        policy
            .settings(rule)
            .expect("every declared rule has settings")
    }

    #[test]
    fn baseline_file_equals_catalogue_defaults() {
        let parsed = Policy::from_yaml(BASELINE_YAML, "baseline.yaml");
        assert_eq!(parsed, Ok(Policy::default()));
    }

    /// The baseline file shows every rule with its switch, `skippable` and every parameter
    /// that has a default (so equal to the defaults is not just "lists nothing").
    #[test]
    fn baseline_file_shows_every_declared_setting() {
        let file: serde_json::Value = serde_saphyr::from_str(BASELINE_YAML).expect("YAML");
        let schema = schema();
        for info in RULES {
            let section = if info.is_mutation() {
                "mutations"
            } else {
                "rules"
            };
            let entry = file["spec"][section][info.name]
                .as_object()
                .unwrap_or_else(|| {
                    panic!("policies/baseline.yaml has no spec.{section}.{}", info.name)
                });
            let definitions = if info.is_mutation() {
                "MutationsSection"
            } else {
                "RulesSection"
            };
            let reference = schema["definitions"][definitions]["properties"][info.name]["allOf"][0]
                ["$ref"]
                .as_str()
                .expect("a reference to the settings type");
            let name = reference.trim_start_matches("#/definitions/");
            let properties = schema["definitions"][name]["properties"]
                .as_object()
                .expect("properties");
            for (key, property) in properties {
                let shown = matches!(key.as_str(), "mode" | "enabled" | "skippable")
                    || property.get("default").is_some();
                assert!(
                    !shown || entry.contains_key(key),
                    "policies/baseline.yaml: {} does not show `{key}`",
                    info.name
                );
            }
            for key in entry.keys() {
                assert!(properties.contains_key(key), "{}: `{key}`", info.name);
            }
        }
    }

    #[test]
    fn strict_file_raises_warnings_to_enforce() {
        let text = include_str!("../../policies/strict.yaml");
        let strict = Policy::from_yaml(text, "strict.yaml").expect("strict policy parses");
        for id in [
            RuleId::StatefulSetReadinessProbe,
            RuleId::StatefulSetResources,
            RuleId::StatefulSetAntiAffinity,
            RuleId::StatefulSetHeadlessService,
            RuleId::StatefulSetSecurityContext,
            RuleId::StatefulSetUpdateStrategy,
            RuleId::StatefulSetClaimTemplateAccessMode,
            RuleId::StatefulSetAntiAffinitySelectsSelf,
        ] {
            assert_eq!(strict.mode(id), Mode::Enforce, "{id}");
        }
    }

    fn error_of(text: &str) -> PolicyError {
        match Policy::from_yaml(text, "p.yaml") {
            Ok(_) => panic!("expected an error for {text}"),
            Err(err) => err,
        }
    }

    const HEAD: &str =
        "apiVersion: stateward.io/v1alpha1\nkind: Policy\nmetadata:\n  name: t\nspec:\n";

    #[test]
    fn unknown_rule_id_names_file_line_and_field() {
        let err = error_of(&format!(
            "{HEAD}  rules:\n    statefulset.readiness-prob: {{mode: warn}}\n"
        ));
        assert_eq!(err.line, Some(7));
        assert!(
            err.message
                .contains("unknown field `statefulset.readiness-prob`"),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("p.yaml line 7"), "{text}");
    }

    #[test]
    fn misspelt_parameter_is_rejected() {
        let err = error_of(&format!(
            "{HEAD}  rules:\n    statefulset.termination-grace-period:\n      mode: enforce\n      minSecond: 5\n"
        ));
        assert_eq!(err.line, Some(9));
        assert!(err.message.contains("unknown field `minSecond`"), "{err}");
        assert_eq!(
            err.field.as_deref(),
            Some("spec.rules.statefulset.termination-grace-period.minSecond")
        );
    }

    #[test]
    fn wrong_type_and_bad_mode_are_rejected() {
        let err = error_of(&format!(
            "{HEAD}  rules:\n    statefulset.termination-grace-period: {{minSeconds: three}}\n"
        ));
        assert_eq!(err.line, Some(7));
        let err = error_of(&format!(
            "{HEAD}  rules:\n    statefulset.resources: {{mode: deny}}\n"
        ));
        assert_eq!(err.line, Some(7));
        assert!(err.to_string().contains("deny"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let err = error_of(&format!(
            "{HEAD}  rules:\n    statefulset.termination-grace-period:\n      minSeconds: 60\n      maxSeconds: 10\n"
        ));
        assert_eq!(
            err.field.as_deref(),
            Some("spec.rules.statefulset.termination-grace-period.minSeconds")
        );
        assert_eq!(err.line, Some(8));
        let err = error_of(&format!(
            "{HEAD}  mutations:\n    statefulset.default-anti-affinity: {{weight: 0}}\n"
        ));
        assert!(err.message.contains("1 to 100"));
        let err = error_of("apiVersion: v1\nkind: Policy\nmetadata: {name: x}\n");
        assert_eq!(err.field.as_deref(), Some("apiVersion"));
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn live_state_thresholds_are_durations() {
        let policy = Policy::from_yaml(
            &format!(
                "{HEAD}  rules:\n    statefulset.rollout-blocked: {{notReadyFor: 90s}}\n    statefulset.pod-stuck-terminating: {{margin: 2m}}\n    statefulset.claim-unbound: {{mode: enforce, pendingFor: 1h}}\n"
            ),
            "p.yaml",
        )
        .expect("valid");
        assert_eq!(
            settings(&policy, &live::ROLLOUT_BLOCKED).not_ready_for_seconds(),
            90
        );
        assert_eq!(
            settings(&policy, &live::POD_STUCK_TERMINATING).margin_seconds(),
            120
        );
        assert_eq!(
            settings(&policy, &live::CLAIM_UNBOUND).pending_for_seconds(),
            3600
        );
        assert_eq!(policy.mode(RuleId::StatefulSetClaimUnbound), Mode::Enforce);
        let err = error_of(&format!(
            "{HEAD}  rules:\n    statefulset.claim-unbound:\n      pendingFor: soon\n"
        ));
        assert_eq!(
            err.field.as_deref(),
            Some("spec.rules.statefulset.claim-unbound.pendingFor")
        );
        assert_eq!(err.line, Some(8));
        assert!(err.message.contains("not a duration"), "{err}");
    }

    #[test]
    fn parameters_and_excluded_namespaces_are_read() {
        let policy = Policy::from_yaml(
            &format!(
                "{HEAD}  excludedNamespaces: [infra]\n  rules:\n    statefulset.claim-template-storage: {{allowedStorageClasses: [fast]}}\n  mutations:\n    pod.identity-labels: {{aliasLabels: [instance]}}\n    statefulset.default-pod-management-policy: {{value: Parallel}}\n"
            ),
            "p.yaml",
        )
        .expect("valid");
        assert_eq!(policy.excluded_namespaces, vec!["infra".to_string()]);
        assert_eq!(
            settings(&policy, &statefulset::CLAIM_TEMPLATE_STORAGE).allowed_storage_classes,
            Some(vec!["fast".to_string()])
        );
        assert_eq!(
            settings(&policy, &defaults::IDENTITY_LABELS).alias_labels,
            Some(vec!["instance".to_string()])
        );
        assert_eq!(
            settings(&policy, &defaults::POD_MANAGEMENT_POLICY).value,
            Some(defaults::PodManagementPolicy::Parallel)
        );
        assert!(policy.is_excluded("infra"));
        assert!(!policy.is_excluded("kube-system"));
    }
}
