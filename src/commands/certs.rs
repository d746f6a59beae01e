//! Certificates for the webhook: `stateward certs` (a CA and a serving certificate for a
//! Service DNS name) and the throw-away set `serve --dev` uses.
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::CertsArgs;
use crate::commands::Exit;

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0} exists; pass --force to overwrite")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--days must be between 1 and 3650")]
    Days,
}

/// A CA and a serving certificate, PEM encoded.
pub struct Bundle {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// Generates a CA and a serving certificate valid for `names` (DNS names or IP
/// addresses) for `days` days.
pub fn generate(names: &[String], days: i64) -> Result<Bundle, CertsError> {
    // rcgen's dates are of the `time` crate; they are reached from its own constructor so
    // that stateward keeps one time crate (jiff) of its own.
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    let validity = Duration::from_secs(86_400 * days.max(0) as u64);
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "stateward webhook CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::from_secs(300);
    ca.not_after = now + validity;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "stateward".into()),
    );
    for name in names {
        leaf.subject_alt_names.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into()?),
        });
    }
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - Duration::from_secs(300);
    leaf.not_after = now + validity;
    let key = KeyPair::generate()?;
    let issuer = Issuer::new(ca, &ca_key);
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(Bundle {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The DNS names the API server uses to reach a Service.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Writes `files` into `dir`, refusing to overwrite unless `force`; private keys are
/// written with mode 0600.
pub fn write_files(dir: &Path, files: &[(&str, &str)], force: bool) -> Result<(), CertsError> {
    if !force {
        for (name, _) in files {
            let path = dir.join(name);
            if path.exists() {
                return Err(CertsError::Exists(path));
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| CertsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    for (name, content) in files {
        let path = dir.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if name.ends_with(".key") {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options
            .open(&path)
            .and_then(|mut f| f.write_all(content.as_bytes()))
            .map_err(|source| CertsError::Write {
                path: path.clone(),
                source,
            })?;
    }
    Ok(())
}

/// The base64 `caBundle` value for webhook configurations.
pub fn ca_bundle(ca_pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(ca_pem)
}

/// Writes `certs/dev/{ca.crt,tls.crt,tls.key}` for `localhost` and `127.0.0.1`
/// (overwriting an earlier set) and returns the directory.
pub fn generate_dev(dir: &Path) -> Result<PathBuf, CertsError> {
    let bundle = generate(&["localhost".into(), "127.0.0.1".into()], 30)?;
    write_files(
        dir,
        &[
            ("ca.crt", &bundle.ca_cert),
            ("tls.crt", &bundle.cert),
            ("tls.key", &bundle.key),
        ],
        true,
    )?;
    Ok(dir.to_owned())
}

pub fn run(args: CertsArgs) -> anyhow::Result<Exit> {
    if !(1..=3650).contains(&args.days) {
        return Err(CertsError::Days.into());
    }
    let names = service_names(&args.service, &args.namespace);
    let bundle = generate(&names, args.days)?;
    write_files(
        &args.out,
        &[
            ("ca.crt", &bundle.ca_cert),
            ("ca.key", &bundle.ca_key),
            ("tls.crt", &bundle.cert),
            ("tls.key", &bundle.key),
        ],
        args.force,
    )?;
    eprintln!(
        "wrote ca.crt, ca.key, tls.crt, tls.key to {} (serving names: {}; valid {} days)",
        args.out.display(),
        names.join(", "),
        args.days
    );
    eprintln!("caBundle for the webhook configurations:");
    println!("{}", ca_bundle(&bundle.ca_cert));
    Ok(Exit::Ok)
}
