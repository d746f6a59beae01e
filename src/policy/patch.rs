//! JSON patches from typed diffs. Each mutation names the part of the object it may
//! change; the patch is `json_patch::diff` of that part before and after, re-rooted at its
//! place in the object (RFC 6901 escaping of `/` and `~` included).
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::Value;

use super::review::Resource;
use super::rules::Target;

/// The patch that turns each target's `before` value into its value in `after`.
pub fn diff_targets(targets: &[(Target, Option<Value>)], after: &Resource) -> Patch {
    let mut ops = Vec::new();
    for (target, before) in targets {
        match (before, (target.extract)(after)) {
            (None, Some(value)) => {
                if let Ok(path) = target.pointer.parse() {
                    ops.push(PatchOperation::Add(AddOperation { path, value }));
                }
            }
            (Some(old), Some(new)) => {
                let inner = json_patch::diff(old, &new);
                ops.extend(
                    inner
                        .0
                        .into_iter()
                        .filter_map(|op| reroot(op, target.pointer)),
                );
            }
            _ => {}
        }
    }
    Patch(ops)
}

/// Prefixes an operation's path (and `from`, for move/copy) with `root`.
fn reroot(op: PatchOperation, root: &str) -> Option<PatchOperation> {
    let mut value = serde_json::to_value(&op).ok()?;
    for key in ["path", "from"] {
        if let Some(Value::String(path)) = value.get_mut(key) {
            *path = format!("{root}{path}");
        }
    }
    serde_json::from_value(value).ok()
}
