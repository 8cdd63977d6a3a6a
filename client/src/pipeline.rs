//! The producer's background task: batches queued messages, keeps the
//! unanswered requests in order, and re-sends them on a new stream when the
//! old one breaks.

use std::collections::BTreeMap;
use tokio::time::Instant;

use raftmq_proto::v1 as proto;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::backoff::Backoff;
use crate::batch::BatchSize;
use crate::client::Route;
use crate::recovery::Recovery;
use crate::routing::{is_retryable, Failure};
use crate::{Client, ClientError, Position, ProducerOptions};

type ConfirmSender = oneshot::Sender<Result<Position, ClientError>>;

/// What `Producer` asks of the task, in the order the caller did.
#[derive(Debug)]
pub(crate) enum Command {
    Publish(Pending),
    /// Resolve once every message queued before it has an outcome.
    Flush(oneshot::Sender<()>),
}

#[derive(Debug)]
pub(crate) struct Pending {
    pub message: proto::Message,
    /// `batch::message_bytes(&message)`, computed once by `send`.
    pub bytes: usize,
    pub confirm: ConfirmSender,
}

/// A request sent (or to be re-sent) and the confirms waiting on it.
struct InFlight {
    request: proto::PublishRequest,
    confirms: Vec<ConfirmSender>,
}

/// An open PublishStream to the node we believe leads.
struct Session {
    address: String,
    outbound: mpsc::Sender<proto::PublishRequest>,
    inbound: Streaming<proto::PublishResponse>,
}

struct FlushWaiter {
    /// Done when no request with an id up to this one is in flight.
    upto: u64,
    done: oneshot::Sender<()>,
}

enum Event {
    Command(Option<Command>),
    Response(Result<Option<proto::PublishResponse>, Status>),
    /// Requests are in flight and nothing was confirmed for `confirm_timeout`.
    Stalled,
}

pub(crate) struct Pipeline {
    client: Client,
    topic: String,
    options: ProducerOptions,
    commands: mpsc::Receiver<Command>,
    commands_closed: bool,
    /// A command taken from the queue that did not fit in the last batch.
    held: Option<Command>,
    /// Unanswered requests by id: ids grow, so iteration is send order.
    in_flight: BTreeMap<u64, InFlight>,
    request_id_next: u64,
    /// This producer's idempotence id and the sequence number of the next
    /// message: a resent request keeps its sequence, so the leader stores
    /// it once and refuses requests that skipped ahead of a lost one.
    producer_id: u64,
    sequence_next: u64,
    flushes: Vec<FlushWaiter>,
    session: Option<Session>,
    recovery: Recovery,
    /// The last confirm, stream open, or start of waiting; the stall clock.
    last_progress: Instant,
}

impl Pipeline {
    pub(crate) fn new(
        client: Client,
        topic: &str,
        options: ProducerOptions,
        commands: mpsc::Receiver<Command>,
    ) -> Pipeline {
        let client_options = client.options();
        let recovery = Recovery::new(
            Some(options.give_up_after),
            client_options.retry_deadline,
            Backoff::new(client_options.backoff_initial, client_options.backoff_max),
        );
        let producer_id = client.producer_id();
        Pipeline {
            client,
            topic: topic.to_string(),
            options,
            commands,
            commands_closed: false,
            held: None,
            in_flight: BTreeMap::new(),
            request_id_next: 1,
            producer_id,
            sequence_next: 0,
            flushes: Vec::new(),
            session: None,
            recovery,
            last_progress: Instant::now(),
        }
    }

    /// Runs until the producer is gone and nothing is left in flight. Each
    /// turn handles one event; the loop lives as long as the producer does,
    /// and every wait inside it is bounded (stall timer, recovery budget).
    pub(crate) async fn run(mut self) {
        loop {
            if self.session.is_none() && !self.in_flight.is_empty() {
                self.reopen().await;
                continue;
            }
            if self.commands_closed && self.held.is_none() && self.in_flight.is_empty() {
                return;
            }
            match self.next_event().await {
                Event::Command(Some(command)) => self.admit(command),
                Event::Command(None) => self.commands_closed = true,
                Event::Response(Ok(Some(response))) => self.on_response(response),
                Event::Response(Ok(None)) => self.on_break(None),
                Event::Response(Err(status)) => self.on_break(Some(&status)),
                Event::Stalled => {
                    tracing::warn!(topic = %self.topic, "no confirm in time; re-opening the stream");
                    self.on_break(None);
                }
            }
        }
    }

    async fn next_event(&mut self) -> Event {
        let room = self.in_flight.len() < self.options.window;
        if room {
            if let Some(command) = self.held.take() {
                return Event::Command(Some(command));
            }
        }
        let accept = room && !self.commands_closed;
        let Some(session) = &mut self.session else {
            // Idle: nothing in flight, so open no stream until there is
            // something to send. `run` returns before this if closed.
            return Event::Command(self.commands.recv().await);
        };
        let waiting = !self.in_flight.is_empty();
        let stall_at = self.last_progress + self.options.confirm_timeout;
        tokio::select! {
            biased;
            response = session.inbound.message() => Event::Response(response),
            command = self.commands.recv(), if accept => Event::Command(command),
            _ = tokio::time::sleep_until(stall_at), if waiting => Event::Stalled,
        }
    }

    /// Turns a command into a request (taking whatever else is queued, up to
    /// the batch limits) or registers a flush.
    fn admit(&mut self, command: Command) {
        let first = match command {
            Command::Publish(pending) => pending,
            Command::Flush(done) => {
                let upto = self.request_id_next - 1;
                self.flushes.push(FlushWaiter { upto, done });
                self.resolve_flushes();
                return;
            }
        };
        let mut size = BatchSize::new(
            &self.topic,
            self.options.batch_max,
            self.options.request_bytes_max,
        );
        size.try_add(first.bytes);
        let mut batch = vec![first];
        for _ in 1..self.options.batch_max {
            match self.commands.try_recv() {
                Ok(Command::Publish(pending)) if size.try_add(pending.bytes) => batch.push(pending),
                Ok(command) => {
                    self.held = Some(command);
                    break;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.commands_closed = true;
                    break;
                }
            }
        }
        let request_id = self.request_id_next;
        self.request_id_next += 1;
        let (messages, confirms): (Vec<proto::Message>, Vec<_>) = batch
            .into_iter()
            .map(|pending| (pending.message, pending.confirm))
            .unzip();
        let sequence = self.sequence_next;
        self.sequence_next += messages.len() as u64;
        let request = proto::PublishRequest {
            topic: self.topic.clone(),
            messages,
            request_id,
            producer_id: self.producer_id,
            sequence,
        };
        if self.in_flight.is_empty() {
            self.last_progress = Instant::now();
        }
        let sent = self.transmit(&request);
        self.in_flight
            .insert(request_id, InFlight { request, confirms });
        if !sent {
            self.on_break(None);
        }
    }

    /// Queues a request on the open stream; false if there is none or it is
    /// gone. The outbound channel holds `window` requests and at most
    /// `window` are in flight, so a live stream never refuses for lack of room.
    fn transmit(&mut self, request: &proto::PublishRequest) -> bool {
        match &self.session {
            Some(session) => session.outbound.try_send(request.clone()).is_ok(),
            None => true,
        }
    }

    fn on_response(&mut self, response: proto::PublishResponse) {
        let Some(in_flight) = self.in_flight.remove(&response.request_id) else {
            tracing::warn!(
                request_id = response.request_id,
                "confirm for a request not in flight; re-opening the stream"
            );
            self.on_break(None);
            return;
        };
        let count = in_flight.confirms.len();
        match (response.error, response.positions.len()) {
            (Some(error), _) => {
                let code = tonic::Code::from_i32(error.code);
                let rejected = ClientError::Rpc {
                    code,
                    message: error.message,
                };
                for confirm in in_flight.confirms {
                    let _ = confirm.send(Err(rejected.clone()));
                }
                // A transient refusal (the node is no longer leader) says the
                // stream is in the wrong place: move it. A publish's only
                // FAILED_PRECONDITION is that refusal.
                let failure = Failure {
                    code,
                    not_leader: code == tonic::Code::FailedPrecondition,
                    leader: None,
                    local: false,
                };
                if is_retryable(&failure) {
                    self.on_break(None);
                }
            }
            (None, positions) if positions != count => {
                let violation = ClientError::Protocol {
                    reason: format!("{positions} positions confirm {count} messages"),
                };
                for confirm in in_flight.confirms {
                    let _ = confirm.send(Err(violation.clone()));
                }
            }
            (None, _) => {
                for (confirm, position) in in_flight.confirms.into_iter().zip(response.positions) {
                    let _ = confirm.send(Ok(position.into()));
                }
            }
        }
        self.recovery.progress();
        self.last_progress = Instant::now();
        self.resolve_flushes();
    }

    /// Drops the stream; `run` re-opens it if requests are in flight.
    fn on_break(&mut self, cause: Option<&Status>) {
        if let Some(session) = self.session.take() {
            self.client.stream_ended(&session.address, cause);
        }
    }

    /// Opens a new stream through the leader and re-sends every unanswered
    /// request in order, or fails them all when the recovery budget is spent
    /// or the leader refuses the stream. An attempt that found no leader
    /// keeps them: `run` calls again.
    async fn reopen(&mut self) {
        let restart = match self.recovery.on_break(Instant::now()) {
            Ok(restart) => restart,
            Err(error) => return self.fail_in_flight(error),
        };
        tokio::time::sleep_until(restart.not_before).await;
        match self.open(restart.deadline).await {
            Ok(session) => {
                self.session = Some(session);
                self.last_progress = Instant::now();
            }
            Err(error @ ClientError::NoLeader { .. }) => {
                let outage = self.recovery.elapsed(Instant::now());
                tracing::warn!(topic = %self.topic, requests = self.in_flight.len(), ?outage, %error, "no leader yet; keeping unconfirmed messages");
            }
            Err(error) => self.fail_in_flight(error),
        }
    }

    async fn open(&self, deadline: Instant) -> Result<Session, ClientError> {
        let window = self.options.window;
        let in_flight = &self.in_flight;
        let attached = self
            .client
            .call(Route::Leader, deadline, |mut broker| {
                let (outbound, receiver) = mpsc::channel(window);
                for waiting in in_flight.values() {
                    // Cannot fail: the channel is new, and holds `window`.
                    let _ = outbound.try_send(waiting.request.clone());
                }
                async move {
                    let response = broker.publish_stream(ReceiverStream::new(receiver)).await?;
                    Ok((outbound, response.into_inner()))
                }
            })
            .await?;
        let (outbound, inbound) = attached.value;
        Ok(Session {
            address: attached.address,
            outbound,
            inbound,
        })
    }

    /// Settles every unanswered request with `error`, and starts a fresh
    /// recovery budget for whatever is sent next.
    fn fail_in_flight(&mut self, error: ClientError) {
        tracing::warn!(topic = %self.topic, %error, requests = self.in_flight.len(), "giving up on in-flight requests");
        for in_flight in std::mem::take(&mut self.in_flight).into_values() {
            for confirm in in_flight.confirms {
                let _ = confirm.send(Err(error.clone()));
            }
        }
        self.recovery.progress();
        self.resolve_flushes();
    }

    fn resolve_flushes(&mut self) {
        let oldest = self.in_flight.keys().next().copied();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|flush| oldest.is_none_or(|oldest| oldest > flush.upto));
        self.flushes = waiting;
        for flush in done {
            let _ = flush.done.send(());
        }
    }
}
