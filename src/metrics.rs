//! Prometheus metrics. Every label has a small, fixed set of values (rule ids, kinds,
//! operations, decisions): never object names. [`Metrics`] are the webhook's (`serve`);
//! [`Process`] is the registry of the loops (`gc --watch`, `audit --watch`), which
//! register their own families in it and export nothing of the webhook's.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub kind: &'static str,
    pub operation: &'static str,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub rule: &'static str,
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub resource: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// `serving` or `ca`.
    pub certificate: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: &'static str,
}

/// Latency buckets, most of them below one millisecond; the top ones reach the webhook's
/// `timeoutSeconds` (chart default 5, most 30) so a p99 near the timeout can be seen.
const LATENCY_BUCKETS: [f64; 15] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0,
    2.5, 5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// What the admin port's `/metrics` serves: the Prometheus text exposition of a registry.
pub trait Exposition: Send + Sync {
    fn encode(&self) -> String;
}

fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

/// The metrics registry of a loop (`gc --watch`, `audit --watch`): empty until the loop
/// registers its families (prefix `stateward_`, as the webhook's).
pub struct Process {
    registry: Registry,
}

impl Default for Process {
    fn default() -> Self {
        Process::new()
    }
}

impl Process {
    pub fn new() -> Process {
        Process {
            registry: Registry::with_prefix("stateward"),
        }
    }

    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

impl Exposition for Process {
    fn encode(&self) -> String {
        encode(&self.registry)
    }
}

impl Exposition for Metrics {
    fn encode(&self) -> String {
        Metrics::encode(self)
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    pub violations: Family<ViolationLabels, Counter>,
    pub skips: Family<RuleLabels, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub in_flight: Gauge,
    pub certificate_expiry: Family<CertificateLabels, Gauge>,
    pub last_reload: Family<ResourceLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("stateward");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered, by endpoint, kind, operation and decision",
            requests.clone(),
        );
        let duration = Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission review (read, decide, encode)",
            duration.clone(),
        );
        let violations = Family::<ViolationLabels, Counter>::default();
        registry.register(
            "violations",
            "Rule findings by rule id and mode (enforce, warn, audit, mutate)",
            violations.clone(),
        );
        let skips = Family::<RuleLabels, Counter>::default();
        registry.register(
            "skips",
            "Rules switched off for an object by the stateward.io/skip annotation",
            skips.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Certificate and policy reloads by outcome (success, failure)",
            reloads.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Admission reviews being answered",
            in_flight.clone(),
        );
        let certificate_expiry = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the certificate in use (serving) and of the CA beside it (ca), seconds since the Unix epoch",
            certificate_expiry.clone(),
        );
        let last_reload = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "last_reload_success_timestamp_seconds",
            "When the files of a resource (certificate, policy) were last loaded successfully, at start or by a reload",
            last_reload.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            violations,
            skips,
            reloads,
            in_flight,
            certificate_expiry,
            last_reload,
        }
    }

    /// For other components (cluster caches) to register their metrics before serving.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }

    /// Publishes certificate expiries as `(certificate, notAfter)`.
    pub fn certificates(&self, expiries: &[(&'static str, i64)]) {
        for (certificate, not_after) in expiries {
            self.certificate_expiry
                .get_or_create(&CertificateLabels { certificate })
                .set(*not_after);
        }
    }

    /// Records a successful load of `resource` now (start-up or reload).
    pub fn loaded(&self, resource: &'static str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.last_reload
            .get_or_create(&ResourceLabels { resource })
            .set(now);
    }

    pub fn reload(&self, resource: &'static str, ok: bool) {
        if ok {
            self.loaded(resource);
        }
        self.reloads
            .get_or_create(&ReloadLabels {
                resource,
                outcome: if ok { "success" } else { "failure" },
            })
            .inc();
    }
}
