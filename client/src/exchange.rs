//! Exchanges and bindings: declaring, binding, and publishing through an
//! exchange, which stores each message once and appends it to every topic
//! it routes to (RabbitMQ's model; ARCHITECTURE.md, "Exchanges").

use std::collections::BTreeMap;

use raftmq_proto::v1 as proto;
use serde::Serialize;

use crate::client::Route;
use crate::{Client, ClientError, Declared, Message, Position};

/// How an exchange matches a message against its bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeKind {
    /// The routing key equals the binding's.
    Direct,
    /// The routing key matches the binding's pattern: words separated by
    /// `.`, `*` one word, `#` zero or more; the empty key is no word.
    Topic,
    /// Every bound topic, whatever the routing key.
    Fanout,
    /// The message's headers match the binding's arguments (`x-match`).
    Headers,
}

impl ExchangeKind {
    fn to_proto(self) -> proto::ExchangeType {
        match self {
            ExchangeKind::Direct => proto::ExchangeType::Direct,
            ExchangeKind::Topic => proto::ExchangeType::Topic,
            ExchangeKind::Fanout => proto::ExchangeType::Fanout,
            ExchangeKind::Headers => proto::ExchangeType::Headers,
        }
    }

    fn from_proto(kind: proto::ExchangeType) -> Result<ExchangeKind, ClientError> {
        match kind {
            proto::ExchangeType::Direct => Ok(ExchangeKind::Direct),
            proto::ExchangeType::Topic => Ok(ExchangeKind::Topic),
            proto::ExchangeType::Fanout => Ok(ExchangeKind::Fanout),
            proto::ExchangeType::Headers => Ok(ExchangeKind::Headers),
            proto::ExchangeType::Unspecified => Err(ClientError::Protocol {
                reason: "an exchange without a type".into(),
            }),
        }
    }
}

/// What declaring an exchange may set besides its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeOptions {
    /// Where messages this exchange routes nowhere go instead (AMQP's
    /// `alternate-exchange`).
    pub alternate: Option<String>,
    /// Fail with ALREADY_EXISTS if it exists, whatever its settings.
    pub fail_if_exists: bool,
}

/// A topic bound to an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    pub topic: String,
    /// Direct: the routing key; topic: the pattern; ignored by the others.
    pub routing_key: String,
    /// Headers exchanges: the headers to match, and `x-match` (`all`, the
    /// default, `any`, `all-with-x`, `any-with-x`).
    pub arguments: BTreeMap<String, String>,
}

impl Binding {
    /// A binding by routing key or pattern (direct, topic and fanout
    /// exchanges).
    pub fn key(topic: impl Into<String>, routing_key: impl Into<String>) -> Binding {
        Binding {
            topic: topic.into(),
            routing_key: routing_key.into(),
            arguments: BTreeMap::new(),
        }
    }

    /// A headers exchange's binding: `arguments` as they are, `x-match`
    /// among them.
    pub fn headers<K: Into<String>, V: Into<String>>(
        topic: impl Into<String>,
        arguments: impl IntoIterator<Item = (K, V)>,
    ) -> Binding {
        Binding {
            topic: topic.into(),
            routing_key: String::new(),
            arguments: arguments
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    fn to_proto(&self) -> proto::Binding {
        proto::Binding {
            topic: self.topic.clone(),
            routing_key: self.routing_key.clone(),
            arguments: self.arguments.clone().into_iter().collect(),
        }
    }
}

/// What `list_exchanges` reports about an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExchangeInfo {
    pub name: String,
    pub kind: ExchangeKind,
    pub alternate: Option<String>,
    pub bindings: Vec<Binding>,
    /// Messages published to it that went to no topic: returned to a
    /// mandatory publisher or dropped.
    pub unroutable: u64,
}

/// Where one message published through an exchange went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Routed {
    /// Appended to each of these topics, at these positions.
    To(Vec<(String, Position)>),
    /// It routed nowhere and the publish was mandatory: stored nowhere.
    Returned,
    /// It routed nowhere: stored nowhere, counted on the exchange.
    Dropped,
}

impl Client {
    /// Declares an exchange: creates it, or succeeds if it exists with the
    /// same kind and alternate. A difference fails with
    /// FAILED_PRECONDITION naming the setting.
    pub async fn declare_exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
        options: ExchangeOptions,
    ) -> Result<Declared, ClientError> {
        let request = proto::DeclareExchangeRequest {
            name: name.to_string(),
            r#type: kind.to_proto().into(),
            alternate_exchange: options.alternate,
            fail_if_exists: options.fail_if_exists,
        };
        let response = self
            .call_unary(Route::Leader, request, |mut broker, request| async move {
                broker.declare_exchange(request).await
            })
            .await?;
        Ok(if response.created {
            Declared::Created
        } else {
            Declared::Existed
        })
    }

    /// Deletes an exchange and its bindings (the topics stay); `if_unused`:
    /// only if it has no binding.
    pub async fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), ClientError> {
        let request = proto::DeleteExchangeRequest {
            name: name.to_string(),
            if_unused,
        };
        self.call_unary(Route::Leader, request, |mut broker, request| async move {
            broker.delete_exchange(request).await
        })
        .await?;
        Ok(())
    }

    /// Binds a topic to an exchange; binding it the same way again is a
    /// no-op.
    pub async fn bind(&self, exchange: &str, binding: &Binding) -> Result<(), ClientError> {
        let request = proto::BindRequest {
            exchange: exchange.to_string(),
            binding: Some(binding.to_proto()),
        };
        self.call_unary(Route::Leader, request, |mut broker, request| async move {
            broker.bind(request).await
        })
        .await?;
        Ok(())
    }

    /// Removes a binding; removing one that is not there is a no-op.
    pub async fn unbind(&self, exchange: &str, binding: &Binding) -> Result<(), ClientError> {
        let request = proto::BindRequest {
            exchange: exchange.to_string(),
            binding: Some(binding.to_proto()),
        };
        self.call_unary(Route::Leader, request, |mut broker, request| async move {
            broker.unbind(request).await
        })
        .await?;
        Ok(())
    }

    /// Lists exchanges with their bindings, from the leader when it is
    /// known, else from any node that answers.
    pub async fn list_exchanges(&self) -> Result<Vec<ExchangeInfo>, ClientError> {
        let response = self
            .call_unary(
                Route::AnyNode,
                proto::ListExchangesRequest {},
                |mut broker, request| async move { broker.list_exchanges(request).await },
            )
            .await?;
        response
            .exchanges
            .into_iter()
            .map(|exchange| {
                Ok(ExchangeInfo {
                    kind: ExchangeKind::from_proto(exchange.r#type())?,
                    name: exchange.name,
                    alternate: exchange.alternate_exchange,
                    bindings: exchange
                        .bindings
                        .into_iter()
                        .map(|binding| Binding {
                            topic: binding.topic,
                            routing_key: binding.routing_key,
                            arguments: binding.arguments.into_iter().collect(),
                        })
                        .collect(),
                    unroutable: exchange.unroutable,
                })
            })
            .collect()
    }

    /// Publishes a batch through an exchange ("" is the default exchange:
    /// the topic `routing_key` names) and says where each message went.
    /// The routing key chooses topics; a message's key still chooses its
    /// partition within each. With `mandatory`, a message that routes
    /// nowhere is `Returned` rather than `Dropped`.
    ///
    /// Retried through the leader like every write; unlike `publish`, a
    /// retry after a lost answer may store a batch twice (at least once,
    /// as RabbitMQ's confirms are).
    pub async fn publish_to_exchange(
        &self,
        exchange: &str,
        routing_key: &str,
        messages: Vec<Message>,
        mandatory: bool,
    ) -> Result<Vec<Routed>, ClientError> {
        let count = messages.len();
        let request = proto::PublishToExchangeRequest {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
            messages: messages.into_iter().map(proto::Message::from).collect(),
            mandatory,
        };
        let response = self
            .call_unary(Route::Leader, request, |mut broker, request| async move {
                broker.publish_to_exchange(request).await
            })
            .await?;
        if response.messages.len() != count {
            return Err(ClientError::Protocol {
                reason: format!("{} answers for {count} messages", response.messages.len()),
            });
        }
        Ok(response
            .messages
            .into_iter()
            .map(
                |routed| match (routed.placements.is_empty(), routed.returned) {
                    (false, _) => Routed::To(
                        routed
                            .placements
                            .into_iter()
                            .map(|p| {
                                let position = Position {
                                    partition: p.partition,
                                    offset: p.offset,
                                };
                                (p.topic, position)
                            })
                            .collect(),
                    ),
                    (true, true) => Routed::Returned,
                    (true, false) => Routed::Dropped,
                },
            )
            .collect())
    }
}
