//! The OpenReports CRDs in the chart are the ones stateward's types generate, and they are
//! valid CustomResourceDefinitions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or bench may stop on a broken fixture
use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

const CHART_COPY: &str = "charts/stateward/files/openreports-crds.yaml";

#[test]
fn the_chart_copy_of_the_crds_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CHART_COPY);
    let checked_in = std::fs::read_to_string(&path).expect("the chart's copy of the CRDs");
    let generated = stateward::audit::openreports::crds_yaml().expect("CRDs render");
    assert!(
        checked_in == generated,
        "{CHART_COPY} is out of date: cargo run -- audit --print-crds > {CHART_COPY}"
    );
}

#[test]
fn the_crds_decode_as_custom_resource_definitions() {
    for crd in stateward::audit::openreports::crds() {
        let typed: CustomResourceDefinition =
            serde_json::from_value(crd.clone()).expect("a CustomResourceDefinition");
        assert_eq!(typed.spec.group, "openreports.io");
        assert_eq!(typed.spec.versions.len(), 1);
        let back = serde_json::to_value(&typed).expect("serialises");
        assert_eq!(
            back["spec"], crd["spec"],
            "no field lost in the typed round trip"
        );
    }
}
