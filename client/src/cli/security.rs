//! The TLS and credential flags of `raftmq` and `raftmq-check` (one
//! file, included by both binaries).

use raftmq_client::{ClientOptions, TlsOptions, Token};

/// TLS and credentials for a cluster that asks for them.
#[derive(Debug, Clone, clap::Args)]
pub struct Security {
    /// PEM file of the CA that signed the nodes' certificates: talk TLS.
    #[arg(long, global = true, env = "RAFTMQ_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate (with --tls-key): authenticates as the user
    /// it names, instead of a token.
    #[arg(long, global = true, env = "RAFTMQ_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM key of --tls-cert.
    #[arg(long, global = true, env = "RAFTMQ_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The name the nodes' certificates are checked for, instead of the
    /// host of each address.
    #[arg(long, global = true, env = "RAFTMQ_TLS_DOMAIN", requires = "tls_ca")]
    tls_domain: Option<String>,
    /// NAME:SECRET (prefer RAFTMQ_TOKEN or --token-file: a flag shows in
    /// the process list).
    #[arg(
        long,
        global = true,
        env = "RAFTMQ_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding NAME:SECRET.
    #[arg(long, global = true, env = "RAFTMQ_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
}

impl Security {
    pub fn apply(&self, options: &mut ClientOptions) -> anyhow::Result<()> {
        use anyhow::Context;
        let read = |path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        if let Some(ca) = &self.tls_ca {
            let identity = match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            };
            options.tls = Some(TlsOptions {
                ca_pem: read(ca)?,
                identity,
                domain: self.tls_domain.clone(),
            });
        }
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => Some(String::from_utf8_lossy(&read(path)?).into_owned()),
            (None, None) => None,
        };
        options.token = token.map(Token::new).transpose()?;
        Ok(())
    }
}
