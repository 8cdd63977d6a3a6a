//! What one client may hold of the node at once: bytes and commands
//! awaiting their commit, and attached consumers, per connection and per
//! user (`config::Share`). A client past its share of commands waits for
//! its own earlier ones to commit, so its requests queue behind its own
//! work instead of in front of everyone's; a consumer past its share is
//! refused. One flooding client cannot starve the others.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Status};

use super::status;
use crate::access::Principal;
use crate::config::Share;

/// Whose share ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Connection,
    User,
}

impl Holder {
    pub const ALL: [Holder; 2] = [Holder::Connection, Holder::User];

    pub fn label(self) -> &'static str {
        match self {
            Holder::Connection => "connection",
            Holder::User => "user",
        }
    }
}

/// Whose shares a request draws on: its connection (by the peer's
/// address; absent where the transport has none, as in the simulation)
/// and its user (absent with client authentication off).
pub struct Client {
    connection: Option<SocketAddr>,
    user: Option<String>,
}

impl Client {
    pub fn of<T>(request: &Request<T>, principal: &Principal) -> Client {
        Client {
            connection: request.remote_addr(),
            user: match principal {
                Principal::User(user) => Some(user.name.clone()),
                Principal::Anyone | Principal::Node => None,
            },
        }
    }
}

/// The room one holder has left.
struct Pool {
    bytes: Arc<Semaphore>,
    commands: Arc<Semaphore>,
    consumers: Arc<Semaphore>,
}

/// Pools by holder, kept while something is taken from them: a connection
/// or user with nothing in flight costs nothing, so the map is bounded by
/// what is in flight.
struct Pools<K> {
    share: Share,
    live: Mutex<HashMap<K, Weak<Pool>>>,
}

impl<K: Hash + Eq + Clone> Pools<K> {
    fn new(share: Share) -> Self {
        Pools {
            share,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn pool(&self, key: &K) -> Arc<Pool> {
        let mut live = self.live.lock().expect("share pools poisoned");
        if let Some(pool) = live.get(key).and_then(Weak::upgrade) {
            return pool;
        }
        // Forget the pools nobody holds before the map doubles.
        if live.len() >= live.capacity() {
            live.retain(|_, pool| pool.strong_count() > 0);
        }
        let pool = Arc::new(Pool {
            bytes: Arc::new(Semaphore::new(self.share.bytes_max as usize)),
            commands: Arc::new(Semaphore::new(self.share.commands_max as usize)),
            consumers: Arc::new(Semaphore::new(self.share.consumers_max as usize)),
        });
        live.insert(key.clone(), Arc::downgrade(&pool));
        pool
    }
}

/// Room held for one command or consumer; dropping it gives it back (a
/// wait cancelled halfway gives back what it took).
#[derive(Default)]
pub struct Held {
    _permits: Vec<OwnedSemaphorePermit>,
    /// Keeps the pools alive while their permits are out.
    _pools: Vec<Arc<Pool>>,
}

/// Every client's shares of this node.
pub struct Shares {
    connections: Pools<SocketAddr>,
    users: Pools<String>,
    /// Commands that waited for their share, by holder.
    waits: [AtomicU64; 2],
    /// Consumers refused, by holder.
    refused: [AtomicU64; 2],
}

impl Shares {
    pub fn new(connection: Share, user: Share) -> Shares {
        Shares {
            connections: Pools::new(connection),
            users: Pools::new(user),
            waits: Default::default(),
            refused: Default::default(),
        }
    }

    fn pools(&self, client: &Client) -> Vec<(Holder, Arc<Pool>, Share)> {
        let connection = client.connection.map(|addr| {
            let pool = self.connections.pool(&addr);
            (Holder::Connection, pool, self.connections.share)
        });
        let user = client.user.as_ref().map(|name| {
            let pool = self.users.pool(name);
            (Holder::User, pool, self.users.share)
        });
        connection.into_iter().chain(user).collect()
    }

    /// Waits for room for one command of `bytes` (the connection's share
    /// first, then the user's: one order everywhere, so no two waiters
    /// hold what the other needs). A command larger than a whole share
    /// takes all of it.
    pub async fn command(&self, client: &Client, bytes: usize) -> Held {
        let mut held = Held::default();
        for (holder, pool, share) in self.pools(client) {
            let bytes = u32::try_from(bytes)
                .unwrap_or(u32::MAX)
                .min(share.bytes_max);
            if pool.commands.available_permits() == 0
                || pool.bytes.available_permits() < bytes as usize
            {
                self.waits[holder as usize].fetch_add(1, Ordering::Relaxed);
            }
            // The semaphores are never closed: acquiring only waits.
            let permits = [
                pool.commands.clone().acquire_many_owned(1).await,
                pool.bytes.clone().acquire_many_owned(bytes).await,
            ];
            held._permits.extend(permits.into_iter().flatten());
            held._pools.push(pool);
        }
        held
    }

    /// Room for one more consumer, or RESOURCE_EXHAUSTED naming the share
    /// that is full.
    pub fn consumer(&self, client: &Client) -> Result<Held, Status> {
        let mut held = Held::default();
        for (holder, pool, share) in self.pools(client) {
            let Ok(permit) = pool.consumers.clone().try_acquire_owned() else {
                self.refused[holder as usize].fetch_add(1, Ordering::Relaxed);
                return Err(status::share_full(holder.label(), share.consumers_max));
            };
            held._permits.push(permit);
            held._pools.push(pool);
        }
        Ok(held)
    }

    /// Commands that waited for their share so far, by holder.
    pub fn waits(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        by_holder(&self.waits)
    }

    /// Consumers refused so far, by holder.
    pub fn refused(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        by_holder(&self.refused)
    }
}

fn by_holder(counts: &[AtomicU64; 2]) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    Holder::ALL
        .into_iter()
        .zip(counts)
        .map(|(holder, count)| (holder.label(), count.load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SHARE: Share = Share {
        bytes_max: 100,
        commands_max: 3,
        consumers_max: 2,
    };

    fn client(port: u16, user: Option<&str>) -> Client {
        Client {
            connection: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            user: user.map(str::to_string),
        }
    }

    /// Whether a command of `bytes` gets room at once.
    async fn admitted(shares: &Shares, client: &Client, bytes: usize) -> Option<Held> {
        tokio::time::timeout(Duration::from_millis(50), shares.command(client, bytes))
            .await
            .ok()
    }

    #[tokio::test]
    async fn commands_past_a_share_wait_until_earlier_ones_give_room_back() {
        let shares = Shares::new(
            SHARE,
            Share {
                commands_max: 4,
                ..SHARE
            },
        );
        let one = client(1, Some("u"));
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(admitted(&shares, &one, 10).await.expect("within the share"));
        }
        assert!(
            admitted(&shares, &one, 10).await.is_none(),
            "a fourth command"
        );
        // Another connection of the same user has the user's fourth.
        let other = client(2, Some("u"));
        let fourth = admitted(&shares, &other, 10)
            .await
            .expect("the user's fourth");
        assert!(
            admitted(&shares, &other, 10).await.is_none(),
            "the user's fifth"
        );
        // A connection without a user is limited by its own share only.
        assert!(admitted(&shares, &client(3, None), 10).await.is_some());
        held.pop();
        held.push(admitted(&shares, &one, 10).await.expect("room given back"));
        assert!(admitted(&shares, &one, 10).await.is_none(), "both full");
        drop(fourth);
        assert!(
            admitted(&shares, &one, 10).await.is_none(),
            "the connection is still full"
        );
        assert!(
            admitted(&shares, &other, 10).await.is_some(),
            "the user has room"
        );
        let waits: Vec<_> = shares.waits().collect();
        assert_eq!(waits, [("connection", 3), ("user", 1)]);
    }

    #[tokio::test]
    async fn bytes_past_a_share_wait_and_a_command_larger_than_it_takes_all_of_it() {
        let shares = Shares::new(SHARE, SHARE);
        let one = client(1, None);
        let sixty = admitted(&shares, &one, 60).await.expect("60 of 100 bytes");
        assert!(
            admitted(&shares, &one, 50).await.is_none(),
            "110 of 100 bytes"
        );
        drop(sixty);
        let whole = admitted(&shares, &one, 1_000)
            .await
            .expect("larger than the share");
        assert!(
            admitted(&shares, &one, 1).await.is_none(),
            "the share is taken"
        );
        drop(whole);
        assert!(admitted(&shares, &one, 1).await.is_some());
    }

    #[tokio::test]
    async fn a_wait_given_up_takes_nothing() {
        let shares = Shares::new(SHARE, SHARE);
        let one = client(1, None);
        let held = admitted(&shares, &one, 90).await.expect("90 bytes");
        // Takes a command, then waits for bytes, and is cancelled.
        assert!(admitted(&shares, &one, 20).await.is_none());
        let _more = admitted(&shares, &one, 10)
            .await
            .expect("the last 10 bytes");
        drop(held);
        for _ in 0..2 {
            admitted(&shares, &one, 1)
                .await
                .expect("every command given back");
        }
    }

    #[test]
    fn consumers_past_a_share_are_refused_naming_it() {
        let shares = Shares::new(
            SHARE,
            Share {
                consumers_max: 3,
                ..SHARE
            },
        );
        let one = client(1, Some("u"));
        let first = shares.consumer(&one).expect("first");
        let _second = shares.consumer(&one).expect("second");
        let refused = shares
            .consumer(&one)
            .err()
            .expect("third on one connection");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused
                .message()
                .contains("this connection has 2 consumers"),
            "{refused:?}"
        );
        let other = client(2, Some("u"));
        let _third = shares.consumer(&other).expect("the user's third");
        let refused = shares.consumer(&other).err().expect("the user's fourth");
        assert!(
            refused.message().contains("this user has 3 consumers"),
            "{refused:?}"
        );
        drop(first);
        shares.consumer(&other).expect("room given back");
        let refused: Vec<_> = shares.refused().collect();
        assert_eq!(refused, [("connection", 1), ("user", 1)]);
    }

    #[test]
    fn pools_nobody_holds_are_forgotten() {
        let pools = Pools::new(SHARE);
        let kept = pools.pool(&0u32);
        for key in 1..1_000u32 {
            drop(pools.pool(&key));
        }
        let live = pools.live.lock().expect("pools");
        assert!(live.len() < 100, "{} pools kept", live.len());
        assert!(live.get(&0).and_then(Weak::upgrade).is_some());
        drop(kept);
    }
}
