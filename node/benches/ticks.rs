//! What the leader's ticker costs per tick as subscriptions grow: every
//! 20 ms it asks the state machine for its next deadline, and when one is
//! due it appends a `Tick`. Both should cost what is due, not what exists.
//!
//! `cargo bench -p raftmq-node --bench ticks` prints, for 10 and 10,000
//! subscriptions (each with one message in flight under an ack timeout),
//! the median time of `next_deadline` and of applying a `Tick` that
//! returns one message, at either size. A topic holds at most 1,000
//! subscriptions (`SUBSCRIPTIONS_PER_TOPIC_MAX`), so 10,000 are spread over
//! 10 topics.

use std::time::{Duration, Instant};

use bytes::Bytes;
use raftmq_node::machine::{
    Command, EntryId, Mode, NewMessage, Request, Retention, SessionAddr, Start, State,
    SubscriptionConfig, TopicLimits, SUBSCRIPTIONS_PER_TOPIC_MAX,
};

/// Rounds per measurement; the median is printed.
const ROUNDS: usize = 9;
/// Calls per round.
const CALLS: usize = 1_000;

/// Applies one entry; answers how many effects it had.
fn apply(state: &mut State, index: &mut u64, now_ms: u64, commands: Vec<Command>) -> usize {
    *index += 1;
    let request = Request {
        stamp_ms: now_ms,
        commands,
    };
    let mut effects = Vec::new();
    let entry = EntryId {
        index: *index,
        term: 1,
    };
    state.apply(entry, &request, &mut effects);
    effects.len()
}

/// `subscriptions` subscriptions, each with one consumer holding its one
/// message. Subscription s is attached at s ms and every ack timeout is
/// `subscriptions` ms, so the deadlines are 1 ms apart, the first at
/// `subscriptions` ms, and a message returned at t is due again at
/// t + `subscriptions`: a tick every ms returns exactly one message.
fn state_with(subscriptions: usize) -> (State, u64) {
    let mut state = State::default();
    let mut index = 0;
    let topics = subscriptions.div_ceil(SUBSCRIPTIONS_PER_TOPIC_MAX);
    for t in 0..topics {
        let topic = format!("t{t}");
        let create = Command::CreateTopic {
            retention: Retention::UntilAcked,
            max_priority: 0,
            owner: None,
            expires_ms: 0,
            name: topic.clone(),
            partitions: 1,
            limits: TopicLimits::default(),
            message_ttl_ms: 0,
            fail_if_exists: true,
        };
        let publish = Command::Publish {
            topic,
            messages: vec![NewMessage {
                key: None,
                payload: Bytes::from_static(b"job"),
                headers: Default::default(),
                properties: None,
            }],
            producer: None,
        };
        apply(&mut state, &mut index, 0, vec![create, publish]);
    }
    for s in 0..subscriptions {
        let attach = Command::Attach {
            client: 0,
            topic: format!("t{}", s / SUBSCRIPTIONS_PER_TOPIC_MAX),
            subscription: format!("s{s}"),
            prefetch: 1,
            session: SessionAddr {
                node: 1,
                boot: 1,
                session: s as u64,
            },
            config: Some(SubscriptionConfig {
                mode: Mode::Failover,
                ack_timeout_ms: subscriptions as u64,
                start: Start::Earliest,
                ..SubscriptionConfig::default()
            }),
        };
        apply(&mut state, &mut index, s as u64, vec![attach]);
    }
    (state, index)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median time per `next_deadline` call.
fn time_next_deadline(state: &State) -> Duration {
    let rounds = (0..ROUNDS).map(|_| {
        let started = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(state.next_deadline());
        }
        started.elapsed() / CALLS as u32
    });
    median(rounds.collect())
}

/// Median time per applied `Tick`, each 1 ms after the last, from the
/// first deadline on: each returns one message (which goes straight back
/// out).
fn time_ticks(state: &mut State, index: &mut u64, subscriptions: usize) -> Duration {
    let mut now = subscriptions as u64 - 1;
    let rounds = (0..ROUNDS).map(|_| {
        let started = Instant::now();
        for _ in 0..CALLS {
            now += 1;
            let handed = apply(state, index, now, vec![Command::Tick]);
            assert_eq!(handed, 1, "each tick hands one message back out");
        }
        started.elapsed() / CALLS as u32
    });
    median(rounds.collect())
}

fn main() {
    println!(
        "{:>13}  {:>18}  {:>12}",
        "subscriptions", "next_deadline (us)", "tick (us)"
    );
    for subscriptions in [10, 10_000] {
        let (mut state, mut index) = state_with(subscriptions);
        let next = time_next_deadline(&state);
        let tick = time_ticks(&mut state, &mut index, subscriptions);
        println!(
            "{subscriptions:>13}  {:>18.2}  {:>12.2}",
            next.as_secs_f64() * 1e6,
            tick.as_secs_f64() * 1e6
        );
    }
}
