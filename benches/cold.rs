//! One review at a time with the CPU caches cold, as a webhook sees reviews at the rate
//! of a cluster's writes: between two reviews the API server and everything else on the
//! node have run, and the webhook's code and data are no longer in the caches. At that
//! rate a review's cost is mostly cache misses, which instruction counts (benches/load.rs
//! `--instructions`) do not see and back-to-back loops hide.
//!
//! ```text
//! cargo bench --bench cold [-- --rounds 200]
//! ```
//!
//! Each round writes 256 MiB (more than the last-level cache) before each measured call,
//! then times one call, each call first in turn: stateward's `Admission::handle` on
//! `/mutate` and `/validate`, the no-op of benches/support/noop.rs (decode into a
//! `serde_json::Value`, echo the uid, allow), and three decodes of the object alone:
//! k8s-openapi's typed `StatefulSet` in full, the webhook's decode of a CREATE
//! (`webhook::admission::lean`: only the fields the rules read), and a `Value`. The review
//! is the StatefulSet CREATE of benches/apiserver.rs `--with-affinity` with the API server's
//! defaults (nothing to patch, its headless Service in context). The report gives the
//! median and quartiles of the cold calls and the mean of 2,000 warm ones.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
#[allow(dead_code)]
#[path = "../tests/e2e/k8s.rs"]
mod k8s;
#[allow(dead_code)]
#[path = "support/noop.rs"]
mod noop;
#[path = "support/sets.rs"]
mod sets;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::{Value, json};
use stateward::metrics::Metrics;
use stateward::policy::context::ServiceInfo;
use stateward::policy::{Kind, Policy, Resource, StaticContext};
use stateward::webhook::admission::{Admission, Endpoint, lean};

const NAME: &str = "orders-db";
/// Written before each cold call: eight times the 32 MiB last-level cache of the machine
/// the figures come from (64 MiB still left part of the previous call's code cached).
const EVICT_BYTES: usize = 256 << 20;
const NAMESPACE: &str = "shop";

fn review(object: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "8b0d2c1e-3f4a-4b5c-9d6e-7f8091a2b3c4",
        "kind": {"group": "apps", "version": "v1", "kind": "StatefulSet"},
        "resource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
        "requestKind": {"group": "apps", "version": "v1", "kind": "StatefulSet"},
        "requestResource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
        "name": NAME, "namespace": NAMESPACE, "operation": "CREATE",
        "userInfo": {"username": "system:admin", "groups": ["system:masters", "system:authenticated"]},
        "object": object, "oldObject": null, "dryRun": false,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}}))
    .expect("json")
}

fn main() {
    // `cargo test --benches` runs bench targets once with `--bench` absent: skip quietly.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut object = sets::padded(NAME, true);
    object["metadata"]["namespace"] = json!(NAMESPACE);
    // What the API server's defaulting adds before it calls a webhook.
    object["spec"]["updateStrategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}});
    object["spec"]["persistentVolumeClaimRetentionPolicy"] =
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"});
    object["spec"]["revisionHistoryLimit"] = json!(10);
    let body = review(&object);
    let object = serde_json::to_vec(&object).expect("json");
    let mut context = StaticContext::default();
    context.add_service(ServiceInfo {
        namespace: NAMESPACE.into(),
        name: NAME.into(),
        headless: true,
        selector: Some([("app".to_owned(), NAME.to_owned())].into()),
    });
    let admission = Admission::new(
        Policy::baseline(),
        Arc::new(context),
        Arc::new(Metrics::new()),
    );
    for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
        let answer = admission.handle(endpoint, &body).expect("an answer");
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            text.contains("\"allowed\":true") && !text.contains("patch"),
            "the review is allowed with nothing to patch: {text}"
        );
    }
    assert!(noop::answer(&body).is_some(), "the no-op answers");
    let lean = lean::decode(
        Kind::StatefulSet,
        &mut serde_json::Deserializer::from_slice(&object),
    );
    assert!(
        matches!(lean, Ok(Some(Resource::StatefulSet(ref s))) if s.spec.template.spec.as_ref().is_some_and(|p| p.containers.len() == 1)),
        "the lean decode reads the set"
    );

    let calls: [(&str, &dyn Fn()); 6] = [
        ("stateward /mutate", &|| {
            drop(black_box(
                admission.handle(Endpoint::Mutate, black_box(&body)),
            ))
        }),
        ("stateward /validate", &|| {
            drop(black_box(
                admission.handle(Endpoint::Validate, black_box(&body)),
            ))
        }),
        ("no-op", &|| drop(black_box(noop::answer(black_box(&body))))),
        ("decode: typed StatefulSet", &|| {
            drop(black_box(serde_json::from_slice::<StatefulSet>(black_box(
                &object,
            ))))
        }),
        ("decode: lean (the webhook's)", &|| {
            let mut de = serde_json::Deserializer::from_slice(black_box(&object));
            drop(black_box(lean::decode(Kind::StatefulSet, &mut de)))
        }),
        ("decode: Value", &|| {
            drop(black_box(serde_json::from_slice::<Value>(black_box(
                &object,
            ))))
        }),
    ];
    let mut evictor = vec![0u8; EVICT_BYTES];
    let mut cold: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); calls.len()];
    for round in 0..rounds {
        // Each call goes first in turn: code a call shares with the one before it may
        // still be cached despite the eviction.
        for i in (0..calls.len()).map(|k| (k + round) % calls.len()) {
            let call = calls[i].1;
            for (j, byte) in evictor.iter_mut().enumerate().step_by(64) {
                *byte = byte.wrapping_add((round + i + j) as u8);
            }
            black_box(&evictor);
            let started = Instant::now();
            call();
            cold[i].push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    println!(
        "StatefulSet CREATE review of {} bytes; {rounds} cold calls each ({} MiB written before each), 2,000 warm",
        body.len(),
        EVICT_BYTES >> 20
    );
    println!(
        "{:<28} {:>12} {:>16} {:>10}",
        "", "cold median", "cold p25-p75", "warm mean"
    );
    for ((name, call), times) in calls.iter().zip(cold.iter_mut()) {
        times.sort_by(|a, b| a.total_cmp(b));
        let at = |q: usize| times[(times.len() * q / 4).min(times.len() - 1)];
        let started = Instant::now();
        for _ in 0..2_000 {
            call();
        }
        let warm = started.elapsed().as_secs_f64() * 1e6 / 2_000.0;
        println!(
            "{name:<28} {:>9.1} us {:>7.1}-{:<6.1} us {warm:>7.1} us",
            at(2),
            at(1),
            at(3)
        );
    }
}
