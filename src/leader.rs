//! Leader election over a `coordination.k8s.io/v1` Lease, for `stateward gc --watch` run as
//! several replicas: only the holder of the lease writes.
//!
//! The protocol is client-go's:
//!
//! - A candidate takes the lease when it does not exist, when its holder is empty (released)
//!   or when the holder has not renewed it for `leaseDurationSeconds` **as measured by the
//!   candidate's own clock** from the moment it first saw the current record (so clock skew
//!   between replicas does not matter). Writes use the lease's resourceVersion, so of two
//!   candidates only one wins.
//! - The holder renews it every `retry_period` (a third of the lease duration, with jitter),
//!   retrying sooner after a failure.
//! - The holder counts itself leader only until `renew_deadline` (two thirds of the lease
//!   duration) after the start of its last successful renewal. Another candidate can take
//!   the lease no earlier than the full lease duration after that renewal, so a holder that
//!   cannot renew (API server unreachable, partition) stops writing at least a third of the
//!   lease duration before anyone else may start.
//! - On shutdown the holder stops writing first, then releases the lease (empty holder), so
//!   the next replica takes over at its next attempt instead of waiting for the expiry.
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

/// Timing and names of one election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This candidate's `holderIdentity`.
    pub identity: String,
    pub lease_duration: Duration,
    /// A holder that has not renewed within this time since its last successful renewal
    /// stops writing. Shorter than `lease_duration`.
    pub renew_deadline: Duration,
    /// Time between two attempts (renewals, or acquisitions by a follower).
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Renew deadline two thirds and retry period a third of `lease_duration`.
    pub fn new(name: &str, namespace: &str, identity: &str, lease_duration: Duration) -> Self {
        LeaseSettings {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: lease_duration / 3,
        }
    }
}

/// A random number (the process-wide random keys of the standard library's hasher).
fn random_u64(salt: u64) -> u64 {
    RandomState::new().hash_one((salt, Instant::now()))
}

/// `base` plus up to `factor` of it, at random.
pub fn jitter(base: Duration, factor: f64) -> Duration {
    let fraction = (random_u64(7) % 10_000) as f64 / 10_000.0;
    base + base.mul_f64(factor * fraction)
}

/// The holder identity of this process: the pod name (`POD_NAME`, from the downward API),
/// else the host name, plus a random suffix so that two processes never share one.
pub fn default_identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|v| !v.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "stateward".to_owned());
    format!(
        "{base}_{:08x}",
        random_u64(u64::from(std::process::id())) as u32
    )
}

/// Whether this process may write now. Cheap; checked before every write.
#[derive(Clone)]
pub struct Leadership(Arc<LeadershipState>);

struct LeadershipState {
    /// Without election (a single replica): always the leader.
    always: bool,
    identity: String,
    /// Leader until this instant (the renew deadline after the last successful renewal).
    until: Mutex<Option<Instant>>,
}

impl Leadership {
    /// No election: this process always writes.
    pub fn always() -> Leadership {
        Leadership(Arc::new(LeadershipState {
            always: true,
            identity: String::new(),
            until: Mutex::new(None),
        }))
    }

    fn elected(identity: &str) -> Leadership {
        Leadership(Arc::new(LeadershipState {
            always: false,
            identity: identity.to_owned(),
            until: Mutex::new(None),
        }))
    }

    pub fn is_leader(&self) -> bool {
        self.0.always || self.until().is_some_and(|until| Instant::now() < until)
    }

    pub fn identity(&self) -> &str {
        &self.0.identity
    }

    fn until(&self) -> Option<Instant> {
        *self.0.until.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_until(&self, until: Option<Instant>) {
        *self.0.until.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }
}

/// The record a candidate last saw, and when (by its own clock).
#[derive(Debug, Clone)]
struct Observed {
    holder: String,
    renew_time: Option<MicroTime>,
    at: Instant,
}

/// What a candidate does with the current lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Another holder's lease is valid for this long yet.
    Held { by: String, left: Duration },
    /// Write this spec (take or renew).
    Take(LeaseSpec),
}

/// Decides on the current `spec`, seen unchanged for `seen_for` by this candidate. Pure.
pub fn decide(
    spec: &LeaseSpec,
    me: &str,
    seen_for: Duration,
    settings: &LeaseSettings,
    now: jiff::Timestamp,
) -> Decision {
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
    if !holder.is_empty() && holder != me && seen_for < duration {
        return Decision::Held {
            by: holder,
            left: duration - seen_for,
        };
    }
    let renewing = holder == me;
    Decision::Take(LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(duration_seconds(settings.lease_duration)),
        acquire_time: if renewing {
            spec.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(
            spec.lease_transitions.unwrap_or(0) + i32::from(!renewing && !holder.is_empty()),
        ),
        ..LeaseSpec::default()
    })
}

fn duration_seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// The running election: stop it (and release the lease) with [`Elector::release`].
pub struct Elector {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Elector {
    /// Starts campaigning on the current runtime. `leader` is set to 1 while this process
    /// leads.
    pub fn spawn(client: Client, settings: LeaseSettings, leader: Gauge) -> (Leadership, Elector) {
        let leadership = Leadership::elected(&settings.identity);
        let (stop, stopped) = watch::channel(false);
        let campaign = Campaign {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            leadership: leadership.clone(),
            observed: None,
            leader,
        };
        let task = tokio::spawn(campaign.run(stopped));
        (leadership, Elector { stop, task })
    }

    /// Stops leading at once, releases the lease if this process holds it, and returns
    /// within `limit`. Call it after the last write.
    pub async fn release(self, limit: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::warn!("could not release the lease in time; it expires on its own");
        }
    }
}

struct Campaign {
    api: Api<Lease>,
    settings: LeaseSettings,
    leadership: Leadership,
    observed: Option<Observed>,
    leader: Gauge,
}

impl Campaign {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let s = self.settings.clone();
        tracing::info!(
            lease = %format!("{}/{}", s.namespace, s.name),
            identity = %s.identity,
            lease_duration_ms = s.lease_duration.as_millis() as u64,
            renew_deadline_ms = s.renew_deadline.as_millis() as u64,
            "campaigning for the lease"
        );
        let attempt_limit = s.retry_period.max(Duration::from_secs(1));
        let soon = (s.retry_period / 4).max(Duration::from_millis(200));
        let mut announced = false;
        loop {
            let started = Instant::now();
            let outcome = tokio::select! {
                r = tokio::time::timeout(attempt_limit, self.attempt()) => r,
                _ = stopped.changed() => break,
            };
            let wait = match outcome {
                Ok(Ok(None)) => {
                    self.leadership.set_until(Some(started + s.renew_deadline));
                    jitter(s.retry_period, 0.2)
                }
                Ok(Ok(Some(left))) => {
                    self.leadership.set_until(None);
                    // Again at the next period, or right when the holder's lease runs out.
                    jitter(s.retry_period, 0.2).min(left + Duration::from_millis(50))
                }
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, leader = announced, "lease attempt failed");
                    if announced {
                        soon
                    } else {
                        jitter(s.retry_period, 0.2)
                    }
                }
                Err(_) => {
                    tracing::warn!(leader = announced, "lease attempt timed out");
                    soon
                }
            };
            self.announce(&mut announced);
            // A leader wakes up at its deadline at the latest, to say it stopped writing.
            let now = Instant::now();
            let wake = match self.leadership.until() {
                Some(until) if until > now => wait.min(until - now + Duration::from_millis(1)),
                _ => wait,
            };
            tokio::select! {
                _ = tokio::time::sleep(wake) => {}
                _ = stopped.changed() => break,
            }
            self.announce(&mut announced);
        }
        // Stop writing first, then let the others take over at once.
        let held = self.leadership.is_leader();
        self.leadership.set_until(None);
        self.leader.set(0);
        if held {
            match self.release().await {
                Ok(()) => tracing::info!(identity = %s.identity, "released the lease"),
                Err(err) => tracing::warn!(error = %err, "cannot release the lease"),
            }
        }
    }

    /// Logs changes of leadership and exports it.
    fn announce(&self, announced: &mut bool) {
        let leading = self.leadership.is_leader();
        if leading && !*announced {
            tracing::info!(identity = %self.settings.identity, "became the leader; this replica writes");
        } else if !leading && *announced {
            tracing::warn!(
                identity = %self.settings.identity,
                "stopped writing: the lease was not renewed within the renew deadline or another replica holds it"
            );
        }
        *announced = leading;
        self.leader.set(i64::from(leading));
    }

    /// One attempt: `Ok(None)` when this process holds the lease afterwards,
    /// `Ok(Some(left))` when another holder's lease is valid for `left` yet.
    async fn attempt(&mut self) -> Result<Option<Duration>, kube::Error> {
        let s = &self.settings;
        let now = jiff::Timestamp::now();
        let Some(current) = self.api.get_opt(&s.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(s.name.clone()),
                    namespace: Some(s.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(s.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds(s.lease_duration)),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(None),
                // Another candidate created it first.
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Some(Duration::ZERO)),
                Err(err) => Err(err),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew_time != spec.renew_time);
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew_time: spec.renew_time.clone(),
                at: Instant::now(),
            });
        }
        let seen_for = self
            .observed
            .as_ref()
            .map(|o| o.at.elapsed())
            .unwrap_or_default();
        match decide(&spec, &s.identity, seen_for, s, now) {
            Decision::Held { left, .. } => Ok(Some(left)),
            Decision::Take(spec) => {
                let mut lease = current;
                lease.spec = Some(spec);
                match self
                    .api
                    .replace(&s.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(None),
                    // Someone else wrote it since our read.
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(Some(Duration::ZERO)),
                    Err(err) => Err(err),
                }
            }
        }
    }

    async fn release(&self) -> Result<(), kube::Error> {
        let s = &self.settings;
        let Some(mut lease) = self.api.get_opt(&s.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        self.api
            .replace(&s.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

/// The namespace of a command's Lease: `--lease-namespace`, else the pod's own namespace
/// (`POD_NAMESPACE`), else the namespace the command is limited to, else `default`.
pub fn lease_namespace(explicit: Option<&str>, scope: Option<&str>) -> String {
    explicit
        .map(str::to_owned)
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .or_else(|| scope.map(str::to_owned))
        .unwrap_or_else(|| "default".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LeaseSettings {
        LeaseSettings::new("gc", "ns", "me_1", Duration::from_secs(15))
    }

    fn held_by(holder: Option<&str>, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(seconds),
            lease_transitions: Some(3),
            acquire_time: Some(MicroTime(jiff::Timestamp::UNIX_EPOCH)),
            renew_time: Some(MicroTime(jiff::Timestamp::UNIX_EPOCH)),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn settings_keep_the_renew_deadline_inside_the_lease() {
        let s = LeaseSettings::new("gc", "ns", "me", Duration::from_secs(6));
        assert_eq!(s.renew_deadline, Duration::from_secs(4));
        assert_eq!(s.retry_period, Duration::from_secs(2));
        assert!(s.renew_deadline < s.lease_duration);
        let j = jitter(Duration::from_secs(2), 0.2);
        assert!(
            j >= Duration::from_secs(2) && j <= Duration::from_millis(2400),
            "{j:?}"
        );
        let a = default_identity();
        let b = default_identity();
        assert_ne!(a, b, "a random suffix per identity");
    }

    #[test]
    fn a_valid_lease_of_another_holder_is_left_alone() {
        let now = jiff::Timestamp::now();
        let d = decide(
            &held_by(Some("other"), 15),
            "me_1",
            Duration::from_secs(10),
            &settings(),
            now,
        );
        assert_eq!(
            d,
            Decision::Held {
                by: "other".into(),
                left: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn an_expired_or_released_lease_is_taken_and_counted_as_a_transition() {
        let now = jiff::Timestamp::now();
        let Decision::Take(spec) = decide(
            &held_by(Some("other"), 15),
            "me_1",
            Duration::from_secs(15),
            &settings(),
            now,
        ) else {
            panic!("expired lease not taken");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("me_1"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(now)));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        // Released (empty holder): taken at once, no transition counted for nobody.
        let Decision::Take(spec) =
            decide(&held_by(None, 1), "me_1", Duration::ZERO, &settings(), now)
        else {
            panic!("released lease not taken");
        };
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn the_holder_renews_keeping_its_acquire_time() {
        let now = jiff::Timestamp::now();
        let Decision::Take(spec) = decide(
            &held_by(Some("me_1"), 15),
            "me_1",
            Duration::ZERO,
            &settings(),
            now,
        ) else {
            panic!("own lease not renewed");
        };
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
        assert_eq!(
            spec.acquire_time,
            Some(MicroTime(jiff::Timestamp::UNIX_EPOCH))
        );
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn leadership_ends_at_the_deadline() {
        let l = Leadership::elected("me");
        assert!(!l.is_leader());
        l.set_until(Some(Instant::now() + Duration::from_secs(60)));
        assert!(l.is_leader());
        l.set_until(Some(Instant::now()));
        assert!(!l.is_leader());
        assert!(Leadership::always().is_leader());
    }
}
