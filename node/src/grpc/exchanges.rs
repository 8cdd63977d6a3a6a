//! The exchange RPCs: declare, delete, list, bind, and publish through one.

use raftmq_proto::v1;
use tonic::Status;

use super::broker_service::BrokerService;
use super::convert;
use super::status::{internal, invalid};
use crate::machine::{Binding, Command, ExchangeKind, ExchangeSummary, Outcome};

pub async fn declare(
    service: &BrokerService,
    request: v1::DeclareExchangeRequest,
) -> Result<v1::DeclareExchangeResponse, Status> {
    let kind = exchange_kind(request.r#type())?;
    let committed = service
        .write(Command::DeclareExchange {
            name: request.name,
            kind,
            alternate: request.alternate_exchange,
            fail_if_exists: request.fail_if_exists,
        })
        .await?;
    match committed.outcome {
        Outcome::Declared { created, .. } => Ok(v1::DeclareExchangeResponse { created }),
        other => Err(internal(format!("unexpected declare outcome {other:?}"))),
    }
}

pub async fn delete(
    service: &BrokerService,
    request: v1::DeleteExchangeRequest,
) -> Result<v1::DeleteExchangeResponse, Status> {
    service
        .write(Command::DeleteExchange {
            name: request.name,
            if_unused: request.if_unused,
        })
        .await?;
    Ok(v1::DeleteExchangeResponse {})
}

pub fn list(exchanges: Vec<ExchangeSummary>) -> v1::ListExchangesResponse {
    v1::ListExchangesResponse {
        exchanges: exchanges
            .into_iter()
            .map(|exchange| v1::ExchangeInfo {
                name: exchange.name,
                r#type: exchange_type(exchange.kind).into(),
                alternate_exchange: exchange.alternate,
                bindings: exchange
                    .bindings
                    .into_iter()
                    .map(|binding| v1::Binding {
                        topic: binding.topic,
                        routing_key: binding.key,
                        arguments: binding.arguments.into_iter().collect(),
                    })
                    .collect(),
                unroutable: exchange.unroutable,
            })
            .collect(),
    }
}

/// Binds (`bind`) or unbinds.
pub async fn bind(
    service: &BrokerService,
    request: v1::BindRequest,
    bind: bool,
) -> Result<v1::BindResponse, Status> {
    let binding = request
        .binding
        .ok_or_else(|| invalid("a binding request needs a binding"))?;
    let binding = Binding {
        topic: binding.topic,
        key: binding.routing_key,
        arguments: binding.arguments.into_iter().collect(),
    };
    let exchange = request.exchange;
    let command = if bind {
        Command::Bind { exchange, binding }
    } else {
        Command::Unbind { exchange, binding }
    };
    service.write(command).await?;
    Ok(v1::BindResponse {})
}

pub async fn publish(
    service: &BrokerService,
    request: v1::PublishToExchangeRequest,
) -> Result<v1::PublishToExchangeResponse, Status> {
    service.check_messages(&request.messages)?;
    let command = Command::PublishTo {
        exchange: request.exchange,
        routing_key: request.routing_key,
        messages: request
            .messages
            .into_iter()
            .map(convert::new_message)
            .collect(),
    };
    let placements = match service.write(command).await?.outcome {
        Outcome::Routed(placements) => placements,
        other => return Err(internal(format!("unexpected publish outcome {other:?}"))),
    };
    let messages = placements
        .into_iter()
        .map(|placements| v1::Routed {
            returned: request.mandatory && placements.is_empty(),
            placements: placements
                .into_iter()
                .map(|(topic, partition, offset)| v1::Placement {
                    topic,
                    partition,
                    offset,
                })
                .collect(),
        })
        .collect();
    Ok(v1::PublishToExchangeResponse { messages })
}

fn exchange_kind(kind: v1::ExchangeType) -> Result<ExchangeKind, Status> {
    match kind {
        v1::ExchangeType::Unspecified => Err(invalid(
            "an exchange needs a type: direct, topic, fanout or headers",
        )),
        v1::ExchangeType::Direct => Ok(ExchangeKind::Direct),
        v1::ExchangeType::Topic => Ok(ExchangeKind::Topic),
        v1::ExchangeType::Fanout => Ok(ExchangeKind::Fanout),
        v1::ExchangeType::Headers => Ok(ExchangeKind::Headers),
    }
}

fn exchange_type(kind: ExchangeKind) -> v1::ExchangeType {
    match kind {
        ExchangeKind::Direct => v1::ExchangeType::Direct,
        ExchangeKind::Topic => v1::ExchangeType::Topic,
        ExchangeKind::Fanout => v1::ExchangeType::Fanout,
        ExchangeKind::Headers => v1::ExchangeType::Headers,
    }
}
