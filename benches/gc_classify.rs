//! Classification of 100,000 claims against 10,000 StatefulSets (and 20,000 pods).
//! Run: `cargo bench --bench gc_classify`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::Selector;
use stateward::gc::classify::{ClaimView, PodView, SetView, Token, classify};

fn data() -> (Vec<ClaimView>, Vec<SetView>, Vec<PodView>) {
    let mut sets = Vec::new();
    let mut claims = Vec::new();
    let mut pods = Vec::new();
    for s in 0..20_000 {
        let namespace: std::sync::Arc<str> = format!("team-{}", s % 200).into();
        let name = format!("db-{s}");
        let labels: BTreeMap<String, String> = [("app".to_owned(), name.clone())].into();
        sets.push(SetView {
            namespace: namespace.clone(),
            name: name.as_str().into(),
            uid: Token::new(&format!("uid-{s}")),
            replicas: 3,
            ordinals_start: 0,
            templates: Box::new(["data".into(), "wal".into()]),
            selector: Selector::try_from(LabelSelector {
                match_labels: Some(labels.clone()),
                match_expressions: None,
            })
            .ok(),
            ..SetView::default()
        });
        // Five claims per set (two scaled away), two templates for half of them.
        for o in 0..5 {
            let template = if o % 2 == 0 { "data" } else { "wal" };
            claims.push(
                ClaimView {
                    namespace: namespace.clone(),
                    name: format!("{template}-{name}-{o}").into(),
                    uid: Token::new(&format!("c-{s}-{o}")),
                    resource_version: "1".into(),
                    labels: std::sync::Arc::new(labels.clone().into()),
                    ..ClaimView::default()
                }
                .with_requested_bytes(Some(10 << 30)),
            );
        }
        for o in 0..2 {
            pods.push(PodView {
                namespace: namespace.clone(),
                name: format!("{name}-{o}").into(),
                uid: Token::new(&format!("p-{s}-{o}")),
                claims: [format!("data-{name}-{o}").as_str()].into_iter().collect(),
            });
        }
    }
    // 10,000 sets are live; the other 10,000 were deleted and left their claims.
    sets.truncate(10_000);
    (claims, sets, pods)
}

fn bench(c: &mut Criterion) {
    let (claims, sets, pods) = data();
    assert_eq!(claims.len(), 100_000);
    let orphans = classify(&claims, &sets, &pods);
    println!(
        "{} claims, {} live sets, {} pods: {} orphans",
        claims.len(),
        sets.len(),
        pods.len(),
        orphans.len()
    );
    let mut group = c.benchmark_group("gc");
    group.sample_size(10);
    group.bench_function("classify 100k claims / 10k sets", |b| {
        b.iter(|| classify(black_box(&claims), black_box(&sets), black_box(&pods)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
