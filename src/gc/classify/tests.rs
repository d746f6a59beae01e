use super::*;
use crate::cluster::views::uuid_number;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

fn labels(pairs: &[(&str, &str)]) -> Pairs {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A pod as the collector projects it (`phase` empty: not reported).
fn pod(namespace: &str, uid: &str, phase: &str, claim: &str) -> PodView {
    let status = if phase.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({"phase": phase})
    };
    crate::cluster::views::pod_view(
        &serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": namespace, "name": format!("pod-{uid}"), "uid": uid},
            "spec": {"containers": [], "volumes": [
                {"name": "v", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": status,
        }))
        .expect("pod"),
    )
}

fn selector(selector: LabelSelector) -> Option<Selector> {
    Selector::try_from(selector).ok()
}

fn set(name: &str, replicas: i32) -> SetView {
    SetView {
        namespace: "db".into(),
        name: name.into(),
        uid: Token::new(&format!("uid-{name}")),
        replicas,
        ordinals_start: 0,
        templates: Box::new(["data".into()]),
        selector: selector(LabelSelector {
            match_labels: Some(labels(&[("app", name)]).to_map()),
            match_expressions: None,
        }),
        ..SetView::default()
    }
}

fn claim(name: &str, app: &str) -> ClaimView {
    ClaimView {
        namespace: "db".into(),
        name: name.into(),
        uid: Token::new(&format!("uid-{name}")),
        resource_version: "7".into(),
        labels: Arc::new(labels(&[("app", app)])),
        ..ClaimView::default()
    }
    .with_requested_bytes(Some(1 << 30))
}

fn with_provenance(mut c: ClaimView, set: &str) -> ClaimView {
    let annotations = Arc::make_mut(&mut c.annotations);
    annotations.insert(SET_ANNOTATION.into(), set.into());
    annotations.insert(SET_UID_ANNOTATION.into(), format!("uid-{set}"));
    c
}

fn names(orphans: &[Orphan]) -> Vec<(&str, Reason, bool)> {
    orphans
        .iter()
        .map(|o| (o.claim.as_str(), o.reason, o.verified))
        .collect()
}

#[test]
fn pairs_read_as_the_map_they_were_made_of() {
    let map: BTreeMap<String, String> = [("b", "2"), ("app", "x"), ("a", "1"), (KEEP, "")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut pairs = Pairs::from(map.clone());
    assert_eq!(pairs.to_map(), map);
    assert_eq!(pairs.len(), 4);
    assert_eq!(pairs.get("a"), Some("1"));
    assert_eq!(pairs.get(KEEP), Some(""));
    assert!(pairs.contains_key("app") && !pairs.contains_key("c"));
    pairs.insert("c".into(), "3".into());
    pairs.insert("a".into(), "one".into());
    pairs.insert("0".into(), "zero".into());
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec!["0", "a", "app", "b", "c", KEEP]);
    assert_eq!(pairs.get("a"), Some("one"));
    assert!(Pairs::default().is_empty());
    // Made of pairs with a key twice, the last value wins (as in a map).
    let twice: Pairs = [("k", "1"), ("k", "2")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!((twice.len(), twice.get("k")), (1, Some("2")));
}

#[test]
fn uuids_read_as_numbers_one_to_one() {
    let uid = "0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b";
    assert_eq!(
        uuid_number(uid),
        Some(0x0f8e2a4c_1b3d_4e5f_8a9b_0c1d2e3f4a5b)
    );
    for other in [
        "0F8E2A4C-1B3D-4E5F-8A9B-0C1D2E3F4A5B",
        "0f8e2a4c1b3d4e5f8a9b0c1d2e3f4a5b",
        "0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5",
        "0f8e2a4c-1b3d-4e5f-8a9b+0c1d2e3f4a5b",
        "uid-web",
        "",
    ] {
        assert_eq!(uuid_number(other), None, "{other}");
    }
}

#[test]
fn tokens_keep_their_text_one_to_one() {
    for text in [
        "0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b",
        "0F8E2A4C-1B3D-4E5F-8A9B-0C1D2E3F4A5B",
        "0f8e2a4c1b3d4e5f8a9b0c1d2e3f4a5b",
        "0",
        "7",
        "18446744073709551615",
        "18446744073709551616",
        "007",
        "-1",
        "+1",
        "1 ",
        "uid-web",
        "",
    ] {
        let token = Token::new(text);
        assert_eq!(token.to_string(), text);
        assert_eq!(token, *text);
        assert_eq!(serde_json::to_value(&token).expect("json"), text);
    }
    assert!(matches!(
        Token::new("0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b"),
        Token::Uuid(_)
    ));
    assert!(matches!(Token::new("123456"), Token::Number(123456)));
    assert!(matches!(Token::new("007"), Token::Text(_)));
    assert_ne!(Token::new("7"), Token::new("07"));
    assert!(Token::default().is_empty() && !Token::new("0").is_empty());
    // 16 bytes of payload and a tag, no allocation for a UUID or a number.
    assert!(std::mem::size_of::<Token>() <= 24);
}

#[test]
fn names_keep_each_name_as_it_was() {
    use crate::cluster::views::Names;
    for names in [
        vec![],
        vec!["data-db-0"],
        vec!["data-db-0", "wal-db-0", ""],
        vec!["12:34", "a:b:c", "9"],
    ] {
        let kept: Names = names.iter().copied().collect();
        assert_eq!(kept.iter().collect::<Vec<_>>(), names);
        assert_eq!(kept.is_empty(), names.is_empty());
    }
}

#[test]
fn short_strings_keep_their_text_inline_or_boxed() {
    use crate::cluster::views::ShortStr;
    let (longest_inline, too_long) = ("x".repeat(22), "y".repeat(23));
    for text in [
        "",
        "db-0",
        "data-db-00012-3",
        &longest_inline,
        &too_long,
        "naïve-ü",
    ] {
        let short = ShortStr::new(text);
        assert_eq!(short.as_str(), text);
        assert_eq!(matches!(short, ShortStr::Inline(..)), text.len() <= 22);
        // Found by its text, as the caches look names up.
        let set: HashSet<ShortStr> = [short.clone()].into();
        assert!(set.contains(text));
    }
    assert!(ShortStr::new("a") < ShortStr::new(&"b".repeat(30)));
}

#[test]
fn views_stay_small() {
    // What `gc --watch` keeps per claim and pod of the fleet (docs/gc.md, "Memory").
    assert!(
        std::mem::size_of::<ClaimView>() <= 144,
        "{}",
        std::mem::size_of::<ClaimView>()
    );
    assert!(
        std::mem::size_of::<PodView>() <= 88,
        "{}",
        std::mem::size_of::<PodView>()
    );
}

#[test]
fn a_pod_index_decides_as_the_pod_views() {
    let uid = "0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b";
    let pods = vec![
        pod("db", uid, "Running", "data-web-5"),
        pod("db", "p2", "Failed", "data-web-6"),
        pod("other", "p3", "", "data-web-7"),
    ];
    let owned = |name: &str, kind: &str, owner: &str| {
        let mut c = claim(name, "web");
        c.owners = Box::new([(kind.to_owned().into(), owner.into())]);
        c
    };
    let claims: Vec<ClaimView> = (3..9)
        .map(|i| claim(&format!("data-web-{i}"), "web"))
        .chain([
            owned("data-web-9", "Pod", uid),
            owned("data-web-10", "Pod", &uid.to_uppercase()),
            owned("data-web-11", "Pod", "p2"),
            owned("data-web-12", "StatefulSet", "p3"),
            owned("data-web-13", "Pod", "p4"),
            owned("data-web-14", "Pod", "uid-web"),
        ])
        .collect();
    let sets = [set("web", 3)];
    let mut index = PodIndex::default();
    for pod in pods.clone() {
        index.add(pod);
    }
    let classifier = Classifier::with_pod_index(&sets, index);
    let indexed: Vec<Orphan> = claims.iter().filter_map(|c| classifier.orphan(c)).collect();
    let viewed = classify(&claims, &sets, &pods);
    assert_eq!(indexed, viewed);
    assert_eq!(
        names(&viewed).iter().map(|n| n.0).collect::<Vec<_>>(),
        vec![
            "data-web-3",
            "data-web-4",
            "data-web-6",
            "data-web-7",
            "data-web-8",
            "data-web-10",
            "data-web-13"
        ]
    );
}

#[test]
fn scaled_down_claims_are_orphans_with_ordinals_start() {
    let claims: Vec<_> = (0..5)
        .map(|i| claim(&format!("data-web-{i}"), "web"))
        .collect();
    let orphans = classify(&claims, &[set("web", 3)], &[]);
    assert_eq!(
        names(&orphans),
        vec![
            ("data-web-3", Reason::ScaledDown, true),
            ("data-web-4", Reason::ScaledDown, true)
        ]
    );
    assert_eq!(orphans[0].ordinal, 3);
    assert_eq!(orphans[0].statefulset, "web");
    assert_eq!(orphans[0].template, "data");
    let mut shifted = set("web", 2);
    shifted.ordinals_start = 3;
    // Ordinals 3 and 4 exist; 0..2 are outside the range.
    let orphans = classify(&claims, &[shifted], &[]);
    assert_eq!(
        names(&orphans).iter().map(|n| n.0).collect::<Vec<_>>(),
        vec!["data-web-0", "data-web-1", "data-web-2"]
    );
}

#[test]
fn several_templates_and_dashed_names() {
    let mut s = set("my-app", 1);
    s.templates = Box::new(["data".into(), "wal-log".into()]);
    let claims = vec![
        claim("data-my-app-0", "my-app"),
        claim("data-my-app-1", "my-app"),
        claim("wal-log-my-app-1", "my-app"),
        // Set "app" does not exist: this is not a claim of "my-app" either.
        claim("data-my-app-x", "my-app"),
    ];
    let orphans = classify(&claims, &[s, set("app", 5)], &[]);
    assert_eq!(
        names(&orphans),
        vec![
            ("data-my-app-1", Reason::ScaledDown, true),
            ("wal-log-my-app-1", Reason::ScaledDown, true)
        ]
    );
    // "data-my-app-3" with set "app" (5 replicas) alive would read as template
    // "data-my" of "app": only if "app" had such a template.
    let orphans = classify(&[claim("data-my-app-7", "app")], &[set("app", 5)], &[]);
    assert!(orphans.iter().all(|o| o.statefulset != "app"));
}

#[test]
fn labels_that_do_not_match_are_not_the_sets_claims() {
    let orphans = classify(&[claim("data-web-4", "other")], &[set("web", 3)], &[]);
    // Not the set's claim, and with labels but a live set named "web": left alone.
    assert!(orphans.is_empty(), "{orphans:?}");
}

#[test]
fn protected_claims_are_never_candidates() {
    let mut keep = claim("data-web-4", "web");
    Arc::make_mut(&mut keep.annotations).insert(KEEP.into(), "true".into());
    let deleting = claim("data-web-5", "web").with_deleting(true);
    let mut owned = claim("data-web-6", "web");
    owned.owners = Box::new([("StatefulSet".into(), "uid-web".into())]);
    let mut foreign = claim("data-web-7", "web");
    foreign.owners = Box::new([("Backup".into(), "x".into())]);
    let mut dead_owner = claim("data-web-8", "web");
    dead_owner.owners = Box::new([("Pod".into(), "gone".into())]);
    let mounted = claim("data-web-9", "web");
    let finished = claim("data-web-10", "web");
    let pods = vec![
        pod("db", "p1", "Running", "data-web-9"),
        pod("db", "p2", "Succeeded", "data-web-10"),
        pod("other", "p3", "Pending", "data-web-10"),
    ];
    let orphans = classify(
        &[
            keep, deleting, owned, foreign, dead_owner, mounted, finished,
        ],
        &[set("web", 3)],
        &pods,
    );
    assert_eq!(
        names(&orphans),
        vec![
            ("data-web-8", Reason::ScaledDown, true),
            ("data-web-10", Reason::ScaledDown, true)
        ]
    );
}

#[test]
fn retention_policy_delete_leaves_it_to_kubernetes() {
    let mut s = set("web", 1);
    s.when_scaled_delete = true;
    assert!(classify(&[claim("data-web-2", "web")], &[s], &[]).is_empty());
}

#[test]
fn deleted_sets_verified_by_provenance_or_guessed() {
    let claims = vec![
        with_provenance(claim("data-my-db-0", "my-db"), "my-db"),
        claim("logs-old-2", "old"),
        // No labels: not a claim-template claim as far as we can tell.
        ClaimView {
            labels: Arc::default(),
            ..claim("backup-2024-1", "")
        },
    ];
    let orphans = classify(&claims, &[], &[]);
    assert_eq!(
        names(&orphans),
        vec![
            ("data-my-db-0", Reason::SetDeleted, true),
            ("logs-old-2", Reason::SetDeleted, false)
        ]
    );
    assert_eq!(
        (
            orphans[0].statefulset.as_str(),
            orphans[0].template.as_str(),
            orphans[0].ordinal
        ),
        ("my-db", "data", 0)
    );
    assert_eq!(
        (
            orphans[1].statefulset.as_str(),
            orphans[1].template.as_str()
        ),
        ("old", "logs")
    );
}

#[test]
fn a_recreated_set_reclaims_its_claims() {
    // Provenance points at the old uid, but a set of that name exists again and names
    // the claim: not an orphan (the watch loop moves the provenance to the new uid).
    let c = with_provenance(claim("data-web-1", "web"), "web");
    let mut recreated = set("web", 3);
    recreated.uid = "uid-new".into();
    assert!(
        classify(
            std::slice::from_ref(&c),
            std::slice::from_ref(&recreated),
            &[]
        )
        .is_empty()
    );
    let live = claims_of_live_sets(std::slice::from_ref(&c), std::slice::from_ref(&recreated));
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].1.uid, "uid-new");
    // Scaled below it: an orphan of the new set, verified by the set itself (the old
    // uid in the provenance does not matter while a set claims it).
    recreated.replicas = 1;
    let orphans = classify(&[c], &[recreated], &[]);
    assert_eq!(
        names(&orphans),
        vec![("data-web-1", Reason::ScaledDown, true)]
    );
}

#[test]
fn a_live_set_verifies_its_claims_without_annotations() {
    // The controller's own rule: template of the set, same namespace, labels matching
    // the selector. No provenance needed.
    let c = claim("data-db-2", "db");
    assert!(c.annotations.is_empty());
    let orphans = classify(std::slice::from_ref(&c), &[set("db", 2)], &[]);
    assert_eq!(
        names(&orphans),
        vec![("data-db-2", Reason::ScaledDown, true)]
    );
    // Another namespace: not the set's claim; its name reads as a guess of a deleted
    // set "db" there (unverified).
    let mut elsewhere = c.clone();
    elsewhere.namespace = "other".into();
    let orphans = classify(&[elsewhere], &[set("db", 2)], &[]);
    assert_eq!(
        names(&orphans),
        vec![("data-db-2", Reason::SetDeleted, false)]
    );
    // Not one of the set's templates: left alone (the name reads as a live set's).
    let mut s = set("db", 2);
    s.templates = Box::new(["wal".into()]);
    assert!(classify(std::slice::from_ref(&c), &[s], &[]).is_empty());
    // A selector with expressions is honoured too.
    let mut s = set("db", 2);
    s.selector = selector(LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                key: "app".into(),
                operator: "In".into(),
                values: Some(vec!["db".into(), "db2".into()]),
            },
        ]),
    });
    assert_eq!(
        names(&classify(&[c], &[s], &[])),
        vec![("data-db-2", Reason::ScaledDown, true)]
    );
}

#[test]
fn provenance_of_a_deleted_set_does_not_verify_a_claim_of_another_live_set() {
    // Provenance names "old" (gone); the live set "db" claims the claim by name,
    // template and labels: it is db's, verified by db, in range here.
    let c = with_provenance(claim("data-db-1", "db"), "old");
    assert!(classify(std::slice::from_ref(&c), &[set("db", 2)], &[]).is_empty());
    assert_eq!(
        names(&classify(&[c], &[set("db", 1)], &[])),
        vec![("data-db-1", Reason::ScaledDown, true)]
    );
}

#[test]
fn claim_names_parse_against_live_set_names_longest_first() {
    assert_eq!(
        parse_claim_name("data-my-db-0", &["db", "my-db"]),
        Some(("data", "my-db", 0, true))
    );
    assert_eq!(
        parse_claim_name("data-my-db-0", &["db"]),
        Some(("data-my", "db", 0, true))
    );
    assert_eq!(
        parse_claim_name("data-my-db-0", &[]),
        Some(("data", "my-db", 0, false))
    );
    assert_eq!(parse_claim_name("data-my-db-01", &[]), None);
    assert_eq!(parse_claim_name("db-0", &["db"]), None);
    // No template before the live name: a guess (template "x" of a set "db").
    assert_eq!(
        parse_claim_name("x-db-0", &["x-db"]),
        Some(("x", "db", 0, false))
    );

    // "my-data-web-3" of the live set "web" whose selector does not match the claim's
    // labels: left alone. Split at the first dash it would have read as a claim of a
    // deleted set "data-web".
    let orphans = classify(&[claim("my-data-web-3", "other")], &[set("web", 1)], &[]);
    assert!(orphans.is_empty(), "{orphans:?}");
    let orphans = classify(&[claim("my-data-web-3", "other")], &[], &[]);
    assert_eq!(orphans[0].statefulset, "data-web");
    assert_eq!(orphans[0].template, "my");

    // Two live sets could claim one name: the longer set name wins.
    let mut short = set("db", 5);
    short.templates = Box::new(["data-my".into()]);
    short.selector = set("my-db", 1).selector;
    let long = set("my-db", 1);
    let c = claim("data-my-db-3", "my-db");
    let sets = [short, long];
    let live = claims_of_live_sets(std::slice::from_ref(&c), &sets);
    assert_eq!(&*live[0].1.name, "my-db");
    let orphans = classify(&[c], &sets, &[]);
    assert_eq!(
        (
            orphans[0].statefulset.as_str(),
            orphans[0].template.as_str()
        ),
        ("my-db", "data")
    );
}
