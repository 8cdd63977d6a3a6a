//! The raftmq client library.
//!
//! A [`Client`] knows the cluster's seed addresses and finds the Raft leader
//! by itself: it remembers the last leader, follows a follower's redirect
//! (`x-raftmq-leader`), and rotates through the seeds with exponential
//! backoff while there is no leader, all within a deadline.
//!
//! ```no_run
//! # async fn example() -> Result<(), raftmq_client::ClientError> {
//! use raftmq_client::{Client, Message};
//!
//! let client = Client::connect(vec!["127.0.0.1:7001".into(), "127.0.0.1:7002".into()])?;
//! client.create_topic("orders", 4).await?;
//!
//! let producer = client.producer("orders");
//! let confirm = producer.send(Message::new("hello").with_key("customer-1")).await?;
//! let position = confirm.await?;
//! producer.close().await?;
//!
//! let mut consumer = client.subscribe("orders", "billing", 100).await?;
//! if let Some(delivery) = consumer.next().await {
//!     let delivery = delivery?;
//!     consumer.ack([&delivery]).await?;
//! }
//! # let _ = position;
//! # Ok(())
//! # }
//! ```
//!
//! Delivery guarantees: a confirmed message is stored; a write whose answer
//! was lost (leader crash, timeout) may have been stored, and its retries
//! are idempotent (a producer id and sequence per message), so it is stored
//! once. Consumers see every message at least once.

mod backoff;
mod batch;
mod client;
mod cluster;
mod connector;
mod consumer;
mod delivery;
mod error;
mod exchange;
mod message;
mod options;
mod pipeline;
mod position;
mod producer;
mod recovery;
mod request;
mod routing;
mod sequence;
mod topic;

pub use client::{Acked, Client};
pub use cluster::{ClusterStatus, LeaderMoved, Member, NodeStatus, SnapshotTaken};
pub use connector::{Connector, TcpConnector};
pub use consumer::Consumer;
pub use delivery::Delivery;
pub use error::ClientError;
pub use exchange::{Binding, ExchangeInfo, ExchangeKind, ExchangeOptions, Routed};
pub use message::{Message, Properties};
pub use options::{
    ClientOptions, DeleteOptions, NackOptions, Overflow, ProducerOptions, StartAt,
    SubscribeOptions, SubscriptionMode, TlsOptions, Token, TopicOptions,
};
pub use position::Position;
pub use producer::{Confirm, Producer};
pub use request::{Requester, PENDING_MAX, REPLY_LEASE};
pub use tonic::Code;
pub use topic::{Declared, SubscriptionStats, TopicInfo, TopicStats};
