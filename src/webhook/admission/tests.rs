use serde_json::{Value, json};

use super::*;
use crate::metrics::Metrics;
use crate::policy::NoContext;

fn admission() -> Admission {
    Admission::new(
        Policy::default(),
        Arc::new(NoContext),
        Arc::new(Metrics::new()),
    )
}

fn review(kind: (&str, &str, &str), op: &str, object: Value, old: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1",
        "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
        "resource": {"group": kind.0, "version": "v1", "resource": kind.2},
        "name": object["metadata"]["name"].as_str().or(old["metadata"]["name"].as_str()),
        "namespace": "shop", "operation": op,
        "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
        "object": object, "oldObject": old, "dryRun": false,
        "options": {"gracePeriodSeconds": 0}}})
}

fn sts(replicas: i32, grace: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"replicas": replicas, "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                "terminationGracePeriodSeconds": grace,
                "containers": [{"name": "db", "image": "db:1",
                    "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
}

/// Every shape of request, including ones the one pass hands on to the second read.
fn bodies() -> Vec<Value> {
    let sts_kind = ("apps", "StatefulSet", "statefulsets");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db-0",
        "namespace": "shop", "ownerReferences": [{"apiVersion": "apps/v1",
        "kind": "StatefulSet", "name": "db", "uid": "x", "controller": true}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "db", "image": "db:1"}]},
        "status": {"phase": "Running"}});
    let scale = |r: i32| {
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "db", "namespace": "shop"}, "spec": {"replicas": r}})
    };
    let mut scale_review = review(
        ("autoscaling", "Scale", "statefulsets"),
        "UPDATE",
        scale(1),
        scale(3),
    );
    scale_review["request"]["resource"]["group"] = json!("apps");
    scale_review["request"]["subResource"] = json!("scale");
    // Object before kind: another field order than the API server's.
    let mut reordered = serde_json::Map::new();
    let create = review(sts_kind, "CREATE", sts(3, 0), Value::Null);
    for key in [
        "object",
        "oldObject",
        "uid",
        "kind",
        "resource",
        "name",
        "namespace",
        "operation",
        "userInfo",
        "dryRun",
        "options",
    ] {
        reordered.insert(key.into(), create["request"][key].clone());
    }
    // The subresource after the objects: read as a Scale only by the second read.
    let mut scale_late = serde_json::Map::new();
    for (key, value) in scale_review["request"].as_object().expect("a request") {
        if key != "subResource" {
            scale_late.insert(key.clone(), value.clone());
        }
    }
    scale_late.insert("subResource".into(), json!("scale"));
    // The operation after the object: a full decode, fit for a CREATE too.
    let mut operation_late = create["request"].as_object().expect("a request").clone();
    let operation = operation_late.remove("operation").expect("an operation");
    operation_late.insert("operation".into(), operation);
    // What the lean decode does not read but the full decode does: answered by the
    // second read.
    let mut null_metadata = review(sts_kind, "CREATE", sts(3, 0), Value::Null);
    null_metadata["request"]["object"]["metadata"] = Value::Null;
    // Options of any shape read as kube's `RawExtension` reads them.
    let mut odd_options = review(
        ("", "Service", "services"),
        "DELETE",
        Value::Null,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop"}}),
    );
    odd_options["request"]["options"] = json!({"gracePeriodSeconds": "30"});
    let mut listed_options = odd_options.clone();
    listed_options["request"]["options"] = json!([1, {"a": null}]);
    vec![
        create.clone(),
        review(sts_kind, "CREATE", sts(3, 30), Value::Null),
        review(sts_kind, "UPDATE", sts(1, 30), sts(3, 30)),
        review(
            ("", "Service", "services"),
            "DELETE",
            Value::Null,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop"}}),
        ),
        review(("", "Pod", "pods"), "DELETE", Value::Null, pod.clone()),
        review(("", "Pod", "pods"), "CREATE", pod, Value::Null),
        review(
            ("apps", "Deployment", "deployments"),
            "CREATE",
            json!({"metadata": {"name": "d"}}),
            Value::Null,
        ),
        scale_review,
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": reordered}),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": scale_late}),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": operation_late}),
        null_metadata,
        odd_options,
        listed_options,
    ]
}

#[test]
fn the_one_pass_answers_as_the_second_read() {
    let admission = admission();
    for body in bodies() {
        let bytes = serde_json::to_vec(&body).expect("json");
        for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
            let fast = admission.answer(endpoint, &bytes).expect("answer");
            let general = admission.answer_in_full(endpoint, &bytes).expect("answer");
            let (fast_body, general_body): (Value, Value) = (
                serde_json::from_slice(&fast.body).expect("json"),
                serde_json::from_slice(&general.body).expect("json"),
            );
            assert_eq!(fast_body, general_body, "{endpoint:?} {body}");
            assert_eq!(fast.summary.decision, general.summary.decision);
            assert_eq!(fast.summary.kind, general.summary.kind);
            assert_eq!(fast.summary.namespace, general.summary.namespace);
            assert_eq!(fast.summary.denied_by, general.summary.denied_by);
        }
    }
}

/// The request fields the reader takes are those kube's admission types read.
#[test]
fn the_reader_reads_the_request_as_kube_reads_it() {
    use kube::core::DynamicObject;
    use kube::core::admission::{AdmissionRequest, AdmissionReview};
    for body in bodies() {
        let bytes = serde_json::to_vec(&body).expect("json");
        // The objects aside (a `DynamicObject` needs metadata).
        let mut fields = body.clone();
        fields["request"]["object"] = Value::Null;
        fields["request"]["oldObject"] = Value::Null;
        let kube: AdmissionRequest<DynamicObject> =
            serde_json::from_value::<AdmissionReview<DynamicObject>>(fields)
                .expect("kube reads it")
                .try_into()
                .expect("a request");
        // The one pass when it reads the body (not a null metadata), and the second read.
        let one_pass = wire::read(&bytes).ok();
        for envelope in one_pass
            .into_iter()
            .chain([wire::read_in_full(&bytes).expect("read")])
        {
            let ours = envelope.request.expect("a request");
            assert_eq!(
                (&ours.uid, &ours.name, &ours.namespace, ours.dry_run),
                (&kube.uid, &kube.name, &kube.namespace, kube.dry_run),
                "{body}"
            );
            assert_eq!(
                serde_json::to_value(&kube.operation).expect("json"),
                json!(ours.operation)
            );
            assert_eq!(
                (&ours.user.username, &ours.user.groups),
                (
                    &kube.user_info.username.clone().unwrap_or_default(),
                    &kube.user_info.groups.clone().unwrap_or_default()
                )
            );
            assert_eq!(
                ours.grace_period_seconds,
                kube.options
                    .as_ref()
                    .and_then(|o| o.0.get("gracePeriodSeconds"))
                    .and_then(Value::as_i64),
                "{body}"
            );
        }
    }
}

/// A field after an object that changes how the object is read (here a repeated
/// `kind`): the one pass hands the request on, the second read decodes the object as
/// the request's last word says.
#[test]
fn an_object_read_before_its_kind_changed_is_read_again() {
    let body = review(
        ("apps", "StatefulSet", "statefulsets"),
        "CREATE",
        sts(3, 0),
        Value::Null,
    );
    let text = serde_json::to_string(&body).expect("json");
    let twice = text.replacen(
        r#""object":"#,
        r#""kind":{"group":"","version":"v1","kind":"Pod"},"object":"#,
        1,
    );
    let twice = twice.replacen(
        r#""oldObject":null"#,
        r#""oldObject":null,"kind":{"group":"apps","version":"v1","kind":"StatefulSet"}"#,
        1,
    );
    assert_ne!(text, twice);
    let request = wire::read(twice.as_bytes())
        .expect("read")
        .request
        .expect("a request");
    assert!(
        matches!(request.object, wire::Payload::Lean(Resource::Pod(_))),
        "{:?}",
        request.object
    );
    let admission = admission();
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let again = admission
            .answer(endpoint, twice.as_bytes())
            .expect("an answer");
        let once = admission
            .answer(endpoint, text.as_bytes())
            .expect("an answer");
        assert_eq!(again.body, once.body);
        assert_eq!(again.summary.kind, "StatefulSet");
        assert_eq!(again.summary.decision, once.summary.decision);
    }
}

/// An object before its kind is kept as JSON; when it is not valid for its kind the
/// error names the field as the second read would.
#[test]
fn an_invalid_object_before_its_kind_is_named() {
    let mut body = review(
        ("apps", "StatefulSet", "statefulsets"),
        "UPDATE",
        sts(3, 30),
        sts(3, 30),
    );
    body["request"]["oldObject"]["spec"]["replicas"] = json!("three");
    let request = body["request"].as_object().expect("a request");
    let mut reordered = serde_json::Map::new();
    reordered.insert("oldObject".into(), request["oldObject"].clone());
    for (key, value) in request {
        reordered.insert(key.clone(), value.clone());
    }
    body["request"] = Value::Object(reordered);
    let bytes = serde_json::to_vec(&body).expect("json");
    let admission = admission();
    let message = |result: Result<Answer, AdmissionError>| {
        result.err().map(|e| e.to_string()).unwrap_or_default()
    };
    let err = message(admission.answer(Endpoint::Validate, &bytes));
    assert_eq!(
        err,
        "request.object is not a valid StatefulSet: request.oldObject.spec.replicas: \
         invalid type: string \"three\", expected i32"
    );
    assert_eq!(
        err,
        message(admission.answer_in_full(Endpoint::Validate, &bytes))
    );
}

#[test]
fn invalid_objects_are_named_by_the_second_read() {
    let mut body = review(
        ("apps", "StatefulSet", "statefulsets"),
        "CREATE",
        sts(3, 30),
        Value::Null,
    );
    body["request"]["object"]["spec"]["replicas"] = json!("three");
    let bytes = serde_json::to_vec(&body).expect("json");
    let err = admission()
        .answer(Endpoint::Validate, &bytes)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("request.object.spec.replicas"), "{err}");
}

/// A CREATE is decoded with only the fields its rules read ([`lean`]): a wrong
/// type in another field is not looked at (the API server never sends one). The
/// second read, which decodes in full, still names it.
#[test]
fn a_create_is_not_checked_in_fields_no_rule_reads() {
    let mut body = review(
        ("apps", "StatefulSet", "statefulsets"),
        "CREATE",
        sts(3, 30),
        Value::Null,
    );
    body["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] = json!(5);
    let bytes = serde_json::to_vec(&body).expect("json");
    let err = admission()
        .answer_in_full(Endpoint::Validate, &bytes)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("containers[0].image"), "{err}");
    let answer = admission()
        .answer(Endpoint::Validate, &bytes)
        .expect("an answer");
    let body: Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(body["response"]["allowed"], json!(true), "{body}");
    // An UPDATE is decoded in full: the one pass fails, the second read names the field.
    let mut update = review(
        ("apps", "StatefulSet", "statefulsets"),
        "UPDATE",
        sts(3, 30),
        sts(3, 30),
    );
    update["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] = json!(5);
    let bytes = serde_json::to_vec(&update).expect("json");
    assert!(admission().answer(Endpoint::Validate, &bytes).is_err());
}

#[test]
fn responses_are_written_as_kube_writes_them() {
    use kube::core::DynamicObject;
    use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
    let request: AdmissionRequest<DynamicObject> =
        serde_json::from_value::<AdmissionReview<DynamicObject>>(review(
            ("", "Service", "services"),
            "CREATE",
            json!({"metadata": {"name": "s"}}),
            Value::Null,
        ))
        .expect("review")
        .try_into()
        .expect("request");
    let kube = |response: AdmissionResponse| -> Value {
        serde_json::to_value(response.into_review()).expect("json")
    };
    let ours = |response: wire::Response<'_>| -> Value {
        serde_json::from_slice(&wire::encode(&response).expect("encode")).expect("json")
    };
    assert_eq!(
        ours(wire::Response {
            uid: "u-1",
            ..wire::Response::default()
        }),
        kube(AdmissionResponse::from(&request))
    );
    let mut denied = AdmissionResponse::from(&request).deny("no");
    denied.result.code = 403;
    denied.result.reason = "Forbidden".into();
    let warnings = vec!["w: one".to_owned()];
    denied.warnings = Some(warnings.clone());
    assert_eq!(
        ours(wire::Response {
            uid: "u-1",
            denied: Some("no"),
            warnings: &warnings,
            patch: None
        }),
        kube(denied)
    );
    let patch = json_patch::Patch(vec![]);
    let mut patched = kube(
        AdmissionResponse::from(&request)
            .with_patch(patch)
            .expect("patch"),
    );
    // kube writes the patch bytes as a number array; the API documents base64 text.
    patched["response"]["patch"] = json!("W10=");
    assert_eq!(
        ours(wire::Response {
            uid: "u-1",
            patch: Some(b"[]"),
            ..wire::Response::default()
        }),
        patched
    );
}
