//! Target: the state machine. A log of every kind of command, a few of its
//! entries mutated (as encoded entries, decoded again), applied to a fresh
//! state: apply must not panic, and the state's invariants
//! (`State::check_invariants`, DESIGN.md's) must hold after every entry.

use std::collections::BTreeMap;

use bytes::Bytes;
use raftmq_node::machine::{
    Binding, BodyRef, Command, EntryId, ExchangeKind, Mode, NewMessage, Overflow, ProducerTag,
    Properties, Request, Retention, SessionAddr, Start, State, SubscriptionConfig, TopicLimits,
};
use raftmq_node::raft::{decode, encode};
use rand::rngs::StdRng;
use rand::Rng;

use crate::mutate::mutate;

/// The log every case starts from: each command kind, on a few topics.
pub fn corpus() -> Vec<Request> {
    let topic = |name: &str, partitions, max_priority, retention| Command::CreateTopic {
        name: name.to_string(),
        partitions,
        limits: TopicLimits {
            max_messages: 50,
            max_bytes: 0,
            overflow: Overflow::DropHead,
        },
        message_ttl_ms: 0,
        fail_if_exists: false,
        owner: None,
        expires_ms: 0,
        max_priority,
        retention,
    };
    let message = |key: Option<&str>, properties: Option<Properties>| NewMessage {
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        payload: Bytes::from_static(b"payload"),
        headers: BTreeMap::from([("h".to_string(), "v".to_string())]),
        properties: properties.map(Box::new),
    };
    let delayed = Properties {
        delay_ms: Some(500),
        ttl_ms: Some(2_000),
        priority: Some(3),
        ..Default::default()
    };
    let attach = |subscription: &str, session, mode, dead_letter: Option<&str>| Command::Attach {
        topic: "q".to_string(),
        subscription: subscription.to_string(),
        prefetch: 4,
        session: SessionAddr {
            node: 1,
            boot: 7,
            session,
        },
        config: Some(SubscriptionConfig {
            mode,
            ack_timeout_ms: 1_000,
            max_deliveries: 2,
            dead_letter_topic: dead_letter.map(str::to_string),
            dead_letter_exchange: None,
            dead_letter_routing_key: None,
            start: Start::Earliest,
        }),
        client: 9,
    };
    let commands = vec![
        vec![
            topic("q", 1, 0, Retention::UntilAcked),
            topic("p", 2, 3, Retention::UntilAcked),
            topic("dlq", 1, 0, Retention::UntilAcked),
            topic("s", 1, 0, Retention::Stream { max_age_ms: 10_000 }),
        ],
        vec![
            Command::DeclareExchange {
                name: "x".to_string(),
                kind: ExchangeKind::Topic,
                alternate: None,
                fail_if_exists: false,
            },
            Command::Bind {
                exchange: "x".to_string(),
                binding: Binding {
                    topic: "q".to_string(),
                    key: "a.*.#".to_string(),
                    arguments: BTreeMap::new(),
                },
            },
        ],
        vec![attach("work", 1, Mode::Shared, Some("dlq"))],
        vec![
            Command::Publish {
                topic: "q".to_string(),
                messages: vec![
                    message(Some("k1"), None),
                    message(Some("k2"), None),
                    message(None, None),
                ],
                producer: Some(ProducerTag { id: 5, sequence: 0 }),
            },
            Command::Publish {
                topic: "p".to_string(),
                messages: vec![message(Some("k2"), Some(delayed)), message(None, None)],
                producer: None,
            },
            Command::PublishTo {
                exchange: "x".to_string(),
                routing_key: "a.b.c".to_string(),
                messages: vec![message(Some("k1"), None)],
            },
        ],
        vec![attach("keys", 2, Mode::KeyShared, Some("dlq"))],
        vec![Command::Ack {
            topic: "q".to_string(),
            subscription: "work".to_string(),
            positions: vec![(0, 0), (0, 2)],
        }],
        vec![Command::Nack {
            topic: "q".to_string(),
            subscription: "work".to_string(),
            positions: vec![(0, 1)],
            requeue: false,
            delay_ms: 0,
        }],
        vec![Command::Tick],
        vec![Command::Relocate {
            from: vec![BodyRef {
                index: 4,
                term: 1,
                slot: 0,
            }],
            messages: vec![message(Some("k1"), None)],
        }],
        vec![Command::Detach { consumer: 1 }],
        vec![Command::LeaderStarted { node: 2 }],
        vec![Command::Unbind {
            exchange: "x".to_string(),
            binding: Binding {
                topic: "q".to_string(),
                key: "a.*.#".to_string(),
                arguments: BTreeMap::new(),
            },
        }],
        vec![
            Command::DeleteSubscription {
                topic: "q".to_string(),
                subscription: "keys".to_string(),
            },
            Command::DeleteExchange {
                name: "x".to_string(),
                if_unused: false,
            },
            Command::DeleteTopic {
                name: "s".to_string(),
                if_unused: true,
                if_empty: false,
            },
        ],
    ];
    commands
        .into_iter()
        .enumerate()
        .map(|(i, commands)| Request {
            stamp_ms: 1_000 + 700 * i as u64,
            commands,
        })
        .collect()
}

/// One case: the corpus log with a few entries mutated. Returns the number
/// of mutated entries that decoded (and so were applied), or what broke.
pub fn run(rng: &mut StdRng, log: &[Request], encoded: &[Vec<u8>]) -> Result<usize, String> {
    let mut entries: Vec<Request> = log.to_vec();
    let mut decoded = 0;
    for _ in 0..rng.gen_range(1..=3) {
        let at = rng.gen_range(0..entries.len());
        let other = &encoded[rng.gen_range(0..encoded.len())];
        let bytes = mutate(rng, &encoded[at], other);
        if let Ok(request) = decode::<Request>(&bytes) {
            entries[at] = request;
            decoded += 1;
        }
    }
    let mut state = State::default();
    let mut effects = Vec::new();
    for (i, request) in entries.iter().enumerate() {
        let entry = EntryId {
            term: 1,
            index: i as u64 + 1,
        };
        effects.clear();
        state.apply(entry, request, &mut effects);
        state
            .check_invariants()
            .map_err(|broken| format!("after entry {}: {broken}", i + 1))?;
    }
    // A snapshot of it decodes to the same state.
    let snapshot = encode(&state).map_err(|e| e.to_string())?;
    let restored: State = decode(&snapshot).map_err(|e| format!("snapshot: {e}"))?;
    if restored != state {
        return Err("the state decoded from its snapshot differs".to_string());
    }
    Ok(decoded)
}

pub fn encoded(log: &[Request]) -> Vec<Vec<u8>> {
    log.iter()
        .map(|request| encode(request).expect("a corpus entry encodes"))
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_corpus_applies_cleanly_and_cases_run() {
        let log = corpus();
        let encoded = encoded(&log);
        let mut rng = StdRng::seed_from_u64(1);
        let mut decoded = 0;
        for _ in 0..200 {
            decoded += run(&mut rng, &log, &encoded).expect("no invariant broken");
        }
        assert!(decoded > 20, "too few mutated entries decode: {decoded}");
        // Unmutated, the log's commands are accepted: the cases start from
        // a state with topics, an exchange, messages and consumers in it.
        let mut state = State::default();
        let mut rejected = Vec::new();
        for (i, request) in log.iter().enumerate() {
            let entry = EntryId {
                term: 1,
                index: i as u64 + 1,
            };
            for outcome in state.apply(entry, request, &mut Vec::new()) {
                if let raftmq_node::machine::Outcome::Rejected(why) = outcome {
                    rejected.push(why);
                }
            }
        }
        assert!(rejected.len() <= 1, "the corpus is refused: {rejected:?}");
    }
}
