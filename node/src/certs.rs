//! Certificates for a development or test cluster (`raftmq-node certs`,
//! `deploy/make-certs.sh`): a CA, and certificates it signs for nodes and
//! users, each naming its holder with the SPIFFE id `tls` reads. A
//! production cluster brings certificates from its own PKI with the same
//! ids.

use rcgen::{
    string::Ia5String, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::machine::NodeId;
use crate::tls::{spiffe_id, Holder};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("making a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// Whom a certificate is for: a node, reached at `hosts` (names or IP
/// addresses, each put in the certificate for clients and peers to check),
/// or a user.
#[derive(Clone, Debug)]
pub struct Subject {
    holder: Holder,
    hosts: Vec<String>,
}

impl Subject {
    pub fn node(id: NodeId, hosts: &[&str]) -> Subject {
        Subject {
            holder: Holder::Node(id),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    pub fn user(name: &str) -> Subject {
        Subject {
            holder: Holder::User(name.to_string()),
            hosts: Vec::new(),
        }
    }
}

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

/// A CA that signs certificates for one cluster.
pub struct Authority {
    cluster: String,
    cert: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    pub fn new(cluster: &str) -> Result<Authority, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("raftmq {cluster} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?.pem();
        Ok(Authority {
            cluster: cluster.to_string(),
            cert,
            issuer: Issuer::new(params, key),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert
    }

    /// A certificate for `subject` in this CA's cluster: a node's serves
    /// and dials (server and client use), a user's only dials.
    pub fn issue(&self, subject: &Subject) -> Result<Issued, CertError> {
        self.issue_in(&self.cluster, subject)
    }

    /// A certificate this CA signs for `subject` in `cluster`: one CA may
    /// serve several clusters, whose nodes still keep apart (tests show
    /// that they do).
    pub fn issue_in(&self, cluster: &str, subject: &Subject) -> Result<Issued, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(subject.hosts.clone())?;
        let id = spiffe_id(cluster, &subject.holder);
        params
            .distinguished_name
            .push(DnType::CommonName, id.clone());
        params
            .subject_alt_names
            .push(SanType::URI(Ia5String::try_from(id)?));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match subject.holder {
            Holder::Node(_) => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Holder::User(_) => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}
