//! Who gets in: the principal of every client request (a client
//! certificate, a token checked against the users file, or anyone when
//! client authentication is off) and whether it may do what it asks; and
//! whether a Raft RPC comes from a node of this cluster. Refusals are
//! counted (the metrics page) and logged, at 1, 2, 4, 8, ... of each
//! kind, so a stranger knocking all day does not fill the disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tonic::{Request, Status};

use super::status;
use crate::access::{Access, Action, AuthError, Principal};
use crate::tls::{self, Holder};

/// Token checks (argon2: milliseconds of CPU and 19 MiB each) running at
/// once; more wait.
const VERIFYING_MAX: usize = 2;

/// Why a Raft RPC was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRefusal {
    /// It names another cluster.
    Cluster,
    /// TLS is on and it came without a node certificate of this cluster.
    Certificate,
}

impl PeerRefusal {
    pub const ALL: [PeerRefusal; 2] = [PeerRefusal::Cluster, PeerRefusal::Certificate];

    pub fn reason(self) -> &'static str {
        match self {
            PeerRefusal::Cluster => "cluster_id",
            PeerRefusal::Certificate => "certificate",
        }
    }
}

const AUTH_FAILURES: [AuthError; 4] = [
    AuthError::Missing,
    AuthError::Malformed,
    AuthError::WrongToken,
    AuthError::UnknownCertificate,
];

/// Refusals so far, by kind.
#[derive(Default)]
pub struct Refusals {
    peers: [AtomicU64; 2],
    unauthenticated: [AtomicU64; 4],
    denied: AtomicU64,
}

impl Refusals {
    pub fn peers(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        PeerRefusal::ALL
            .into_iter()
            .zip(&self.peers)
            .map(|(kind, count)| (kind.reason(), count.load(Ordering::Relaxed)))
    }

    pub fn unauthenticated(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        AUTH_FAILURES
            .iter()
            .zip(&self.unauthenticated)
            .map(|(kind, count)| (kind.reason(), count.load(Ordering::Relaxed)))
    }

    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }
}

/// Adds one and says whether this one is to be logged.
fn count(counter: &AtomicU64) -> bool {
    (counter.fetch_add(1, Ordering::Relaxed) + 1).is_power_of_two()
}

/// The checks, shared by both services.
pub struct Gate {
    cluster: String,
    /// Whether connections are TLS, so peers must show certificates.
    tls: bool,
    /// The users file; `None` turns client authentication off.
    access: Option<Arc<Access>>,
    verifying: Semaphore,
    refusals: Refusals,
}

impl Gate {
    pub fn new(cluster: String, tls: bool, access: Option<Arc<Access>>) -> Gate {
        Gate {
            cluster,
            tls,
            access,
            verifying: Semaphore::new(VERIFYING_MAX),
            refusals: Refusals::default(),
        }
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn access(&self) -> Option<&Arc<Access>> {
        self.access.as_ref()
    }

    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// A Raft RPC naming `cluster` passes if that is this cluster and,
    /// with TLS on, the caller showed a node certificate of it. Refused
    /// before Raft sees it, so a stranger cannot touch the term.
    pub fn peer<T>(&self, request: &Request<T>, cluster: &str) -> Result<(), Status> {
        let refusal = if cluster != self.cluster {
            Some(PeerRefusal::Cluster)
        } else if self.tls && !matches!(self.holder(request), Some(Holder::Node(_))) {
            Some(PeerRefusal::Certificate)
        } else {
            None
        };
        let Some(refusal) = refusal else {
            return Ok(());
        };
        let counter = &self.refusals.peers[refusal as usize];
        let remote = request.remote_addr();
        if count(counter) {
            tracing::warn!(
                ?remote,
                reason = refusal.reason(),
                their_cluster = cluster,
                refused = counter.load(Ordering::Relaxed),
                "refused a Raft RPC from outside the cluster"
            );
        }
        Err(status::peer_refused(match refusal {
            PeerRefusal::Cluster => format!(
                "this node is of cluster {:?}, not {cluster:?}",
                self.cluster
            ),
            PeerRefusal::Certificate => {
                format!(
                    "Raft RPCs need a node certificate of cluster {:?}",
                    self.cluster
                )
            }
        }))
    }

    /// Who sent `request`, or UNAUTHENTICATED.
    pub async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.authenticate(request).await.map_err(|error| {
            let counter = &self.refusals.unauthenticated[AUTH_FAILURES
                .iter()
                .position(|kind| *kind == error)
                .unwrap_or_default()];
            if count(counter) {
                tracing::warn!(remote = ?request.remote_addr(), reason = error.reason(), "refused a client");
            }
            status::unauthenticated(&error)
        })
    }

    /// The principal, if it may do `action` to `name`; else
    /// PERMISSION_DENIED, before anything is written.
    pub async fn allow<T>(
        &self,
        request: &Request<T>,
        action: Action,
        name: &str,
    ) -> Result<Principal, Status> {
        let principal = self.principal(request).await?;
        if principal.may(action, name) {
            Ok(principal)
        } else {
            Err(self.deny(&principal, &format!("{} {name:?}", action.name())))
        }
    }

    /// Passes a principal that may administer the cluster.
    pub async fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let principal = self.principal(request).await?;
        if principal.is_admin() {
            Ok(())
        } else {
            Err(self.deny(&principal, "administer the cluster"))
        }
    }

    /// PERMISSION_DENIED for `principal`, counted.
    pub fn deny(&self, principal: &Principal, what: &str) -> Status {
        if count(&self.refusals.denied) {
            tracing::warn!(user = principal.name(), what, "permission denied");
        }
        status::permission_denied(principal.name(), what)
    }

    async fn authenticate<T>(&self, request: &Request<T>) -> Result<Principal, AuthError> {
        let Some(access) = &self.access else {
            return Ok(Principal::Anyone);
        };
        if let Some(certs) = request.peer_certs() {
            if let Some(leaf) = certs.first() {
                return match tls::holder(leaf, &self.cluster) {
                    Some(Holder::Node(_)) => Ok(Principal::Node),
                    Some(Holder::User(name)) => access
                        .user(&name)
                        .map(Principal::User)
                        .ok_or(AuthError::UnknownCertificate),
                    None => Err(AuthError::UnknownCertificate),
                };
            }
        }
        let token = bearer(request)?;
        if let Some(user) = access.remembered(&token) {
            return Ok(Principal::User(user));
        }
        let _permit = self
            .verifying
            .acquire()
            .await
            .map_err(|_| AuthError::WrongToken)?;
        let access = access.clone();
        tokio::task::spawn_blocking(move || access.verify(&token))
            .await
            .map_err(|_| AuthError::WrongToken)?
            .map(Principal::User)
    }

    fn holder<T>(&self, request: &Request<T>) -> Option<Holder> {
        let certs = request.peer_certs()?;
        tls::holder(certs.first()?, &self.cluster)
    }
}

/// The token of `authorization: Bearer TOKEN`.
fn bearer<T>(request: &Request<T>) -> Result<String, AuthError> {
    let value = request
        .metadata()
        .get("authorization")
        .ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    value
        .strip_prefix("Bearer ")
        .map(str::to_string)
        .ok_or(AuthError::Malformed)
}
