//! Test PKI with rcgen: one CA, the API server's serving certificate, client certificates
//! for the admin and the controller manager, and the service-account key pair (ECDSA P-256,
//! PKCS#8 private key and SPKI public key, both accepted by kube-apiserver).
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub ca_pem: String,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    /// (certificate PEM, key PEM)
    pub admin: (String, String),
    pub controller_manager: (String, String),
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn params(cn: &str, org: Option<&str>) -> CertificateParams {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    if let Some(org) = org {
        p.distinguished_name.push(DnType::OrganizationName, org);
    }
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = now - Duration::from_secs(3600);
    p.not_after = now + Duration::from_secs(30 * 86_400);
    p
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    org: Option<&str>,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut p = params(cn, org);
    for san in sans {
        p.subject_alt_names.push(match san.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*san).try_into().expect("DNS name")),
        });
    }
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

pub fn create(dir: &Path) -> Pki {
    let dir = dir.join("pki");
    std::fs::create_dir_all(&dir).expect("pki dir");
    let mut ca = params("stateward-e2e-ca", None);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);

    let (api_cert, api_key) = leaf(
        &issuer,
        "kube-apiserver",
        None,
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let admin = leaf(
        &issuer,
        "test-admin",
        Some("system:masters"),
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let controller_manager = leaf(
        &issuer,
        "system:kube-controller-manager",
        Some("system:masters"),
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let sa = KeyPair::generate().expect("service-account key");

    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        ca_pem,
        apiserver_cert: dir.join("apiserver.crt"),
        apiserver_key: dir.join("apiserver.key"),
        admin,
        controller_manager,
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
    };
    write(&pki.ca_cert, &pki.ca_pem);
    write(&pki.ca_key, &ca_key_pem);
    write(&pki.apiserver_cert, &api_cert);
    write(&pki.apiserver_key, &api_key);
    write(&pki.sa_key, &sa.serialize_pem());
    write(&pki.sa_pub, &sa.public_key_pem());
    pki
}
