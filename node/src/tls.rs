//! TLS for peer and client traffic (rustls through tonic), read from PEM
//! files, and the identities certificates carry.
//!
//! A certificate says who holds it with a SPIFFE id among its subject
//! alternative names: `spiffe://CLUSTER/node/ID` for a node of cluster
//! CLUSTER, `spiffe://CLUSTER/user/NAME` for a client. The CA decides whom
//! a node talks to at all; the id decides what the holder may do there (a
//! client certificate never passes for a node), and its cluster part keeps
//! a node of another cluster signed by the same CA out.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::machine::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Where a node's certificate, its key and the cluster's CA are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A node's TLS material, checked to be PEM of the right kind.
#[derive(Clone)]
pub struct Tls {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

impl Tls {
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let cert = read(&files.cert)?;
        let key = read(&files.key)?;
        let ca = read(&files.ca)?;
        leaf(&cert).map_err(|reason| TlsError::Invalid {
            path: files.cert.clone(),
            reason,
        })?;
        leaf(&ca).map_err(|reason| TlsError::Invalid {
            path: files.ca.clone(),
            reason,
        })?;
        if !String::from_utf8_lossy(&key).contains("PRIVATE KEY-----") {
            return Err(TlsError::Invalid {
                path: files.key.clone(),
                reason: "no PEM private key in it".to_string(),
            });
        }
        Ok(Tls { cert, key, ca })
    }

    /// The node's side of its listener: its certificate, and client
    /// certificates checked against the CA when one is presented (clients
    /// may instead bring a token; peers must present one, which the Raft
    /// service checks).
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .client_auth_optional(true)
    }

    /// The node's side of a connection to a peer: the peer's certificate
    /// must chain to the CA and name the address dialled; this node shows
    /// its own.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
    }

    /// The PEM files' contents, for the node's own client calls (join,
    /// health, hand-off), which present the node's certificate.
    pub fn pem(&self) -> (&[u8], &[u8], &[u8]) {
        (&self.cert, &self.key, &self.ca)
    }
}

/// Who a certificate says holds it, in one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    Node(NodeId),
    User(String),
}

/// The SPIFFE id naming `holder` in `cluster`.
pub fn spiffe_id(cluster: &str, holder: &Holder) -> String {
    match holder {
        Holder::Node(id) => format!("spiffe://{cluster}/node/{id}"),
        Holder::User(name) => format!("spiffe://{cluster}/user/{name}"),
    }
}

/// Who the DER certificate `der` names in `cluster`, if anyone: a
/// certificate of another cluster, or with no SPIFFE id, names no one.
pub fn holder(der: &[u8], cluster: &str) -> Option<Holder> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let names = cert.subject_alternative_name().ok()??;
    let prefix = format!("spiffe://{cluster}/");
    names.value.general_names.iter().find_map(|name| {
        let x509_parser::extensions::GeneralName::URI(uri) = name else {
            return None;
        };
        let rest = uri.strip_prefix(&prefix)?;
        match rest.split_once('/')? {
            ("node", id) => id.parse().ok().map(Holder::Node),
            ("user", name) if !name.is_empty() => Some(Holder::User(name.to_string())),
            _ => None,
        }
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The first certificate of a PEM file, checked to parse.
fn leaf(pem: &[u8]) -> Result<(), String> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("no PEM certificate: {e}"))?;
    block
        .parse_x509()
        .map(|_| ())
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{Authority, Subject};

    #[test]
    fn a_certificate_names_its_holder_only_in_its_own_cluster() {
        let ca = Authority::new("main").expect("ca");
        let check = |subject: Subject, cluster: &str, expected: Option<Holder>| {
            let made = ca.issue(&subject).expect("issue");
            let (_, block) = x509_parser::pem::parse_x509_pem(made.cert.as_bytes()).expect("pem");
            assert_eq!(
                holder(&block.contents, cluster),
                expected,
                "{subject:?} in {cluster}"
            );
        };
        check(
            Subject::node(2, &["127.0.0.1"]),
            "main",
            Some(Holder::Node(2)),
        );
        check(Subject::node(2, &["127.0.0.1"]), "other", None);
        check(
            Subject::user("alice"),
            "main",
            Some(Holder::User("alice".into())),
        );
        check(Subject::user("alice"), "mai", None);
    }

    #[test]
    fn files_that_are_not_pem_of_the_right_kind_are_refused_by_name() {
        let dir = tempfile::TempDir::new().expect("dir");
        let ca = Authority::new("main").expect("ca");
        let node = ca.issue(&Subject::node(1, &["127.0.0.1"])).expect("issue");
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("cert.pem"), &node.cert).expect("write");
        std::fs::write(path("key.pem"), &node.key).expect("write");
        std::fs::write(path("ca.pem"), ca.cert_pem()).expect("write");
        std::fs::write(path("junk.pem"), "hello").expect("write");
        let files = |cert: &str, key: &str, ca: &str| TlsFiles {
            cert: path(cert),
            key: path(key),
            ca: path(ca),
        };
        assert!(Tls::load(&files("cert.pem", "key.pem", "ca.pem")).is_ok());
        for (bad, which) in [
            (files("junk.pem", "key.pem", "ca.pem"), "junk.pem"),
            (files("cert.pem", "cert.pem", "ca.pem"), "cert.pem"),
            (files("cert.pem", "key.pem", "missing.pem"), "missing.pem"),
        ] {
            let error = Tls::load(&bad).expect_err("refused").to_string();
            assert!(error.contains(which), "{error}");
        }
    }
}
