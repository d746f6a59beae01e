//! The webhook transport of `stateward serve`: [`admission`] decodes AdmissionReviews and
//! encodes answers around the engine, [`routes`] maps HTTP to it, [`tls`] serves it over
//! rustls with certificate reload, [`reload`] swaps the policy. It holds no rule logic (the
//! engine in [`crate::policy`] decides) and reads the cluster only through
//! [`crate::cluster`]'s caches.
pub mod admission;
pub mod reload;
pub mod routes;
pub mod tls;
