//! JSON to CEL values, for the tests that evaluate stateward's CEL (the webhook entries'
//! matchConditions, the native policies) with the `cel` crate.
#![allow(dead_code)]
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// A JSON value as CEL sees it: numbers that fit are `int`, as Kubernetes' are.
pub fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let map: HashMap<String, cel::Value> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            map.into()
        }
    }
}
