//! TLS for the webhook port: a certificate resolver whose key can be swapped while the
//! server runs, a rustls configuration limited to TLS 1.2 and 1.3 with ALPN for HTTP/2
//! and HTTP/1.1, and the accept loop.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("cannot read private key {path}: {message}")]
    Key { path: String, message: String },
    #[error("certificate {cert} and key {key} do not belong together: {message}")]
    Mismatch {
        cert: String,
        key: String,
        message: String,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Reads a PEM certificate chain and private key and checks that they match.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_bytes = std::fs::read(cert).map_err(|e| TlsError::Certificate {
        path: cert.display().to_string(),
        message: e.to_string(),
    })?;
    let key_bytes = std::fs::read(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        message: e.to_string(),
    })?;
    certified_key_from_pem(&cert_bytes, &key_bytes).map_err(|err| match err {
        TlsError::Certificate { message, .. } => TlsError::Certificate {
            path: cert.display().to_string(),
            message,
        },
        TlsError::Key { message, .. } => TlsError::Key {
            path: key.display().to_string(),
            message,
        },
        TlsError::Mismatch { message, .. } => TlsError::Mismatch {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            message,
        },
        other => other,
    })
}

/// Builds a [`CertifiedKey`] from PEM bytes.
pub fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificate {
            path: String::new(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: String::new(),
            message: "no PEM certificate found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key {
        path: String::new(),
        message: e.to_string(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| TlsError::Mismatch {
        cert: String::new(),
        key: String::new(),
        message: e.to_string(),
    })
}

/// The `notAfter` of a DER certificate, in seconds since the Unix epoch; `None` when the
/// bytes are not an X.509 certificate. Walks only the fields before `validity`
/// (`Certificate` → `tbsCertificate` → version, serial, signature, issuer, validity).
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert, _) = der_item(der)?;
    let (_, tbs, _) = der_item(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = der_item(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit [0] version
    }
    for _ in 0..3 {
        rest = der_item(rest)?.2; // serialNumber, signature, issuer
    }
    let (tag, validity, _) = der_item(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, after_not_before) = der_item(validity)?;
    let (tag, time, _) = der_item(after_not_before)?;
    let text = std::str::from_utf8(time).ok()?;
    match tag {
        0x17 => {
            // UTCTime YYMMDDHHMMSSZ: years 50-99 are 19xx (RFC 5280 4.1.2.5.1).
            let yy: i64 = text.get(0..2)?.parse().ok()?;
            let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
            time_of(year, text.get(2..)?)
        }
        0x18 => time_of(text.get(0..4)?.parse().ok()?, text.get(4..)?),
        _ => None,
    }
}

/// One DER item: (tag, contents, the bytes after it).
fn der_item(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *bytes.first()?;
    let first = *bytes.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in bytes.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, bytes.get(header..end)?, bytes.get(end..)?))
}

/// `MMDDHHMMSSZ` after the year, to seconds since the epoch.
fn time_of(year: i64, rest: &str) -> Option<i64> {
    if rest.len() != 11 || !rest.ends_with('Z') {
        return None;
    }
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The `notAfter` of the first certificate of each PEM file that can be read: the serving
/// certificate, and the CA as `ca.crt` beside it (a `kubernetes.io/tls` Secret from the
/// chart's `helm` mode or cert-manager holds one; `--dev` writes one).
pub fn certificate_expiries(cert: &Path) -> Vec<(&'static str, i64)> {
    let first = |path: &Path| -> Option<i64> {
        let pem = std::fs::read(path).ok()?;
        let der = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
        not_after(der.as_ref())
    };
    let mut out = Vec::new();
    if let Some(t) = first(cert) {
        out.push(("serving", t));
    }
    if let Some(t) = cert.parent().and_then(|dir| first(&dir.join("ca.crt"))) {
        out.push(("ca", t));
    }
    out
}

/// Serves whatever certificate was stored last; swapping it affects new handshakes only.
#[derive(Debug)]
pub struct SwappableCert {
    current: ArcSwap<CertifiedKey>,
}

impl SwappableCert {
    pub fn new(key: CertifiedKey) -> Arc<SwappableCert> {
        Arc::new(SwappableCert {
            current: ArcSwap::from_pointee(key),
        })
    }

    pub fn swap(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// TLS 1.2 and 1.3 only (ring provider), ALPN `h2` then `http/1.1`.
pub fn server_config(resolver: Arc<SwappableCert>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Limits for the accept loop.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most connections at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// A client must finish the TLS handshake within this time.
    pub handshake_timeout: Duration,
    /// A client must send a request's headers within this time (slow-loris guard).
    pub header_read_timeout: Duration,
    /// In-flight requests get this long to finish after shutdown starts.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(25),
        }
    }
}

/// Accepts TLS connections and serves `router` on each until `shutdown` turns true; then
/// stops accepting, lets open connections finish their requests (bounded by
/// `drain_timeout`) and returns.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: axum::Router,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(config);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let limits = limits.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true);
            builder.http2().timer(TokioTimer::new());
            let service = TowerToHyperService::new(router);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(err) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_until(year: i32, month: u8, day: u8) -> rcgen::Certificate {
        let mut params =
            rcgen::CertificateParams::new(vec!["a.example".to_owned()]).expect("params");
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("self-signed")
    }

    #[test]
    fn not_after_reads_utc_time_and_generalized_time() {
        // Before 2050 rcgen writes UTCTime, from 2050 GeneralizedTime (RFC 5280).
        assert_eq!(
            not_after(cert_until(2031, 5, 17).der()),
            Some(1_936_742_400)
        );
        assert_eq!(not_after(cert_until(2051, 1, 2).der()), Some(2_556_230_400));
        assert_eq!(not_after(b"not a certificate"), None);
        assert_eq!(not_after(&[]), None);
    }

    #[test]
    fn expiries_name_the_serving_certificate_and_the_ca_beside_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("tls.crt");
        std::fs::write(&cert, cert_until(2031, 5, 17).pem()).expect("write");
        assert_eq!(
            certificate_expiries(&cert),
            vec![("serving", 1_936_742_400)]
        );
        std::fs::write(dir.path().join("ca.crt"), cert_until(2051, 1, 2).pem()).expect("write");
        assert_eq!(
            certificate_expiries(&cert),
            vec![("serving", 1_936_742_400), ("ca", 2_556_230_400)]
        );
    }
}
