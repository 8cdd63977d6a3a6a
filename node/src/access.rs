//! Who may do what: the users file (names, hashed secrets, permissions by
//! name pattern) and the checks every client request passes.
//!
//! ```toml
//! [[user]]
//! name = "orders-app"
//! secret = "$argon2id$v=19$..."   # raftmq-node token orders-app
//! publish = ["orders", "orders.*"]
//! consume = ["orders.*", "tmp.*"]
//! manage = []                     # declare, delete, bind
//! admin = false                   # membership, transfer-leader, snapshots
//! ```
//!
//! A client proves it is a user with a token `NAME:SECRET` or with a
//! client certificate naming the user (`tls::Holder::User`); a user with
//! no `secret` can only do the latter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Users one file may list.
pub const USERS_MAX: usize = 10_000;
/// Patterns one user may have, over all actions.
pub const PATTERNS_PER_USER_MAX: usize = 1_000;
/// Longest name pattern, user name or token.
pub const PATTERN_BYTES_MAX: usize = 255;
pub const TOKEN_BYTES_MAX: usize = 1_024;
/// Tokens whose check is remembered: argon2 costs milliseconds and megabytes
/// by design, and a client sends its token with every request.
const VERIFIED_MAX: usize = 4_096;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Why a client is not let in (the client gets UNAUTHENTICATED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no credentials: send a token (authorization: Bearer NAME:SECRET) or a client certificate"
    )]
    Missing,
    #[error("the token is not NAME:SECRET")]
    Malformed,
    #[error("unknown user or wrong secret")]
    WrongToken,
    #[error("the client certificate names no user of this cluster")]
    UnknownCertificate,
}

impl AuthError {
    /// The metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::WrongToken => "wrong_token",
            AuthError::UnknownCertificate => "unknown_certificate",
        }
    }
}

/// What a request asks to do to a named topic or exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Publish,
    Consume,
    /// Declare, delete, bind and unbind.
    Manage,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Consume => "consume",
            Action::Manage => "manage",
        }
    }
}

/// A name pattern: `*` stands for any run of characters (dots included),
/// everything else for itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }
}

/// Matches with one remembered `*` to backtrack to: linear in the name for
/// each star, so no pattern costs more than length × length.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// One user of the file.
#[derive(Debug)]
pub struct User {
    pub name: String,
    secret: Option<String>,
    publish: Vec<Pattern>,
    consume: Vec<Pattern>,
    manage: Vec<Pattern>,
    admin: bool,
}

impl User {
    fn patterns(&self, action: Action) -> &[Pattern] {
        match action {
            Action::Publish => &self.publish,
            Action::Consume => &self.consume,
            Action::Manage => &self.manage,
        }
    }
}

/// Who a request comes from.
#[derive(Clone, Debug)]
pub enum Principal {
    /// Client authentication is off (no users file): anyone may do anything.
    Anyone,
    /// A node of this cluster (its own certificate): its join, health and
    /// hand-off calls.
    Node,
    User(Arc<User>),
}

impl Principal {
    pub fn may(&self, action: Action, name: &str) -> bool {
        match self {
            Principal::Anyone | Principal::Node => true,
            Principal::User(user) => user.patterns(action).iter().any(|p| p.matches(name)),
        }
    }

    /// Membership, leadership and snapshots.
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Anyone | Principal::Node => true,
            Principal::User(user) => user.admin,
        }
    }

    /// Whether a listing shows `name`: the user may do something to it.
    pub fn sees(&self, name: &str) -> bool {
        [Action::Publish, Action::Consume, Action::Manage]
            .into_iter()
            .any(|action| self.may(action, name))
    }

    pub fn name(&self) -> &str {
        match self {
            Principal::Anyone => "anyone",
            Principal::Node => "node",
            Principal::User(user) => &user.name,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    secret: Option<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    consume: Vec<String>,
    #[serde(default)]
    manage: Vec<String>,
    #[serde(default)]
    admin: bool,
}

/// The users of one file, by name.
#[derive(Debug, Default)]
pub struct Users {
    by_name: BTreeMap<String, Arc<User>>,
}

impl Users {
    pub fn load(path: &Path) -> Result<Users, AccessError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Users::parse(&text).map_err(|reason| AccessError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<Users, String> {
        let file: UsersFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.user.len() > USERS_MAX {
            return Err(format!("{} users; at most {USERS_MAX}", file.user.len()));
        }
        let mut by_name = BTreeMap::new();
        for entry in file.user {
            let user = user(entry)?;
            let name = user.name.clone();
            if by_name.insert(name.clone(), Arc::new(user)).is_some() {
                return Err(format!("user {name:?} is listed twice"));
            }
        }
        Ok(Users { by_name })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<Arc<User>> {
        self.by_name.get(name).cloned()
    }
}

fn user(entry: UserEntry) -> Result<User, String> {
    let name = entry.name;
    if name.is_empty() || name.len() > PATTERN_BYTES_MAX || name.contains([':', '/']) {
        return Err(format!(
            "user name {name:?}: 1 to {PATTERN_BYTES_MAX} bytes, without ':' or '/'"
        ));
    }
    if let Some(secret) = &entry.secret {
        PasswordHash::new(secret)
            .map_err(|e| format!("user {name:?}: secret is not an argon2 hash: {e}"))?;
    }
    let count = entry.publish.len() + entry.consume.len() + entry.manage.len();
    if count > PATTERNS_PER_USER_MAX {
        return Err(format!(
            "user {name:?}: {count} patterns; at most {PATTERNS_PER_USER_MAX}"
        ));
    }
    let patterns = |list: Vec<String>| -> Result<Vec<Pattern>, String> {
        list.into_iter()
            .map(|p| match p.len() {
                1..=PATTERN_BYTES_MAX => Ok(Pattern(p)),
                _ => Err(format!(
                    "user {name:?}: pattern {p:?} is not 1 to {PATTERN_BYTES_MAX} bytes"
                )),
            })
            .collect()
    };
    Ok(User {
        publish: patterns(entry.publish)?,
        consume: patterns(entry.consume)?,
        manage: patterns(entry.manage)?,
        secret: entry.secret,
        admin: entry.admin,
        name,
    })
}

/// The argon2 hash of `secret` with a fresh salt, for the users file.
pub fn hash_secret(secret: &str) -> String {
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with its default parameters hashes any secret")
        .to_string()
}

/// The users in force (the file, reloaded on SIGHUP) and the tokens
/// already checked against them.
pub struct Access {
    path: PathBuf,
    users: RwLock<Arc<Users>>,
    verified: Mutex<BTreeMap<[u8; 32], Arc<User>>>,
}

impl Access {
    pub fn open(path: &Path) -> Result<Access, AccessError> {
        Ok(Access {
            path: path.to_path_buf(),
            users: RwLock::new(Arc::new(Users::load(path)?)),
            verified: Mutex::new(BTreeMap::new()),
        })
    }

    /// Reads the file again. On an error the users in force stay.
    pub fn reload(&self) -> Result<usize, AccessError> {
        let users = Users::load(&self.path)?;
        let count = users.len();
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(users);
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(count)
    }

    fn users(&self) -> Arc<Users> {
        self.users.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The user a certificate names, if the file has them.
    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.users().get(name)
    }

    /// The user of a token checked before (and not since reloaded): cheap.
    pub fn remembered(&self, token: &str) -> Option<Arc<User>> {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.get(&digest(token)).cloned()
    }

    /// Checks `token` against the user's hashed secret: milliseconds of
    /// CPU, so callers run it off the async threads. A token that passes is
    /// remembered.
    pub fn verify(&self, token: &str) -> Result<Arc<User>, AuthError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(AuthError::Malformed);
        }
        let (name, secret) = token.split_once(':').ok_or(AuthError::Malformed)?;
        let user = self.users().get(name).ok_or(AuthError::WrongToken)?;
        let hash = user.secret.as_deref().ok_or(AuthError::WrongToken)?;
        let hash = PasswordHash::new(hash).map_err(|_| AuthError::WrongToken)?;
        Argon2::default()
            .verify_password(secret.as_bytes(), &hash)
            .map_err(|_| AuthError::WrongToken)?;
        self.remember(token, user.clone());
        Ok(user)
    }

    /// Keeps `token`'s check; past `VERIFIED_MAX` the checks are forgotten
    /// (each costs one more argon2 then).
    fn remember(&self, token: &str, user: Arc<User>) {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(digest(token), user);
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_by_glob() {
        let check = |pattern: &str, name: &str, expected: bool| {
            assert_eq!(
                Pattern(pattern.to_string()).matches(name),
                expected,
                "{pattern:?} against {name:?}"
            );
        };
        check("orders", "orders", true);
        check("orders", "orders.eu", false);
        check("orders.*", "orders.eu", true);
        check("orders.*", "orders.", true);
        check("orders.*", "orders", false);
        check("*", "", true);
        check("*", "anything.at.all", true);
        check("a*b*c", "aXXbYYc", true);
        check("a*b*c", "aXXbYY", false);
        check("*.dlq", "orders.eu.dlq", true);
        check("*.dlq", "orders.eu.dlq2", false);
        check("tmp.*", "tmpX", false);
    }

    fn users() -> Users {
        let hash = hash_secret("s3cret");
        Users::parse(&format!(
            r#"
            [[user]]
            name = "app"
            secret = "{hash}"
            publish = ["orders.*"]
            consume = ["orders.*", "tmp.*"]

            [[user]]
            name = "ops"
            manage = ["*"]
            admin = true
            "#
        ))
        .expect("parses")
    }

    #[test]
    fn a_user_may_do_what_its_patterns_and_flags_say() {
        let users = users();
        let app = Principal::User(users.get("app").expect("app"));
        let ops = Principal::User(users.get("ops").expect("ops"));
        assert!(app.may(Action::Publish, "orders.eu"));
        assert!(!app.may(Action::Publish, "payments"));
        assert!(!app.may(Action::Manage, "orders.eu"));
        assert!(app.may(Action::Consume, "tmp.7"));
        assert!(!app.is_admin());
        assert!(app.sees("orders.eu") && !app.sees("payments"));
        assert!(ops.may(Action::Manage, "payments") && ops.is_admin());
        assert!(!ops.may(Action::Publish, "payments"));
        assert!(Principal::Anyone.may(Action::Manage, "x") && Principal::Node.is_admin());
    }

    #[test]
    fn tokens_are_checked_against_the_hash_and_remembered() {
        let dir = tempfile::TempDir::new().expect("dir");
        let path = dir.path().join("users.toml");
        let hash = hash_secret("s3cret");
        std::fs::write(
            &path,
            format!("[[user]]\nname = \"app\"\nsecret = \"{hash}\"\n"),
        )
        .expect("write");
        let access = Access::open(&path).expect("open");
        assert_eq!(access.verify("app").err(), Some(AuthError::Malformed));
        let long = format!("app:{}", "s".repeat(TOKEN_BYTES_MAX));
        assert_eq!(access.verify(&long).err(), Some(AuthError::Malformed));
        assert_eq!(
            access.verify("app:wrong").err(),
            Some(AuthError::WrongToken)
        );
        assert_eq!(
            access.verify("nobody:s3cret").err(),
            Some(AuthError::WrongToken)
        );
        assert!(access.remembered("app:s3cret").is_none());
        assert_eq!(access.verify("app:s3cret").expect("passes").name, "app");
        assert!(access.remembered("app:s3cret").is_some());
        assert!(access.remembered("app:wrong").is_none());
        // The checks remembered are bounded.
        let user = access.remembered("app:s3cret").expect("remembered");
        for i in 0..VERIFIED_MAX {
            access.remember(&format!("app:{i}"), user.clone());
        }
        assert!(access.verified.lock().expect("lock").len() <= VERIFIED_MAX);
        assert!(access
            .remembered(&format!("app:{}", VERIFIED_MAX - 1))
            .is_some());
        // A reload forgets what was checked, and a user removed is gone.
        std::fs::write(&path, "").expect("write");
        assert_eq!(access.reload().expect("reload"), 0);
        assert!(access.remembered("app:s3cret").is_none());
        assert_eq!(
            access.verify("app:s3cret").err(),
            Some(AuthError::WrongToken)
        );
        // A broken file keeps the users in force.
        std::fs::write(&path, "[[user]]\nname = 3\n").expect("write");
        assert!(access.reload().is_err());
    }

    #[test]
    fn a_bad_users_file_is_refused_with_the_reason() {
        let check = |text: &str, reason: &str| {
            let error = Users::parse(text).expect_err("refused");
            assert!(error.contains(reason), "{error:?} should say {reason:?}");
        };
        check("[[user]]\nname = \"a:b\"\n", "without ':'");
        check("[[user]]\nname = \"\"\n", "1 to 255");
        check(
            "[[user]]\nname = \"a\"\nsecret = \"plain\"\n",
            "not an argon2 hash",
        );
        check(
            "[[user]]\nname = \"a\"\n[[user]]\nname = \"a\"\n",
            "listed twice",
        );
        check("[[user]]\nname = \"a\"\npublish = [\"\"]\n", "pattern");
        check("[[user]]\nname = \"a\"\nwrite = [\"x\"]\n", "unknown field");
        let many = format!(
            "[[user]]\nname = \"a\"\npublish = [{}]\n",
            vec!["\"x\""; 1_001].join(",")
        );
        check(&many, "1001 patterns");
        let crowd: String = (0..=USERS_MAX)
            .map(|i| format!("[[user]]\nname = \"u{i}\"\n"))
            .collect();
        check(&crowd, "10001 users");
        let long = format!(
            "[[user]]\nname = \"{}\"\n",
            "n".repeat(PATTERN_BYTES_MAX + 1)
        );
        check(&long, "1 to 255");
    }
}
