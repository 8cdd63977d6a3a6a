//! The state machine's rules, checked by applying commands directly: no
//! Raft, no network, no clock.

use bytes::Bytes;

use super::deadlines::Due;
use super::*;

const SESSION: SessionAddr = SessionAddr {
    node: 1,
    boot: 7,
    session: 1,
};

struct Harness {
    state: State,
    effects: Vec<Effect>,
    stamp_ms: u64,
    /// Every request applied, by index: the log the bodies are in.
    log: std::collections::BTreeMap<u64, Request>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            state: State::default(),
            effects: Vec::new(),
            stamp_ms: 1_000,
            log: Default::default(),
        }
    }

    /// Applies `request` as log entry `index` (of term 1).
    fn apply_at(&mut self, index: u64, request: Request) -> Vec<Outcome> {
        let entry = EntryId { index, term: 1 };
        let outcomes = self.state.apply(entry, &request, &mut self.effects);
        self.log.insert(index, request);
        outcomes
    }

    /// A stored message with its body, read from the log as a node would.
    fn message(&self, stored: &Stored) -> Message {
        let at = stored.body();
        assert_eq!(at.term, 1);
        let body = self.log[&at.index]
            .message(at.slot)
            .expect("the body's slot is in its entry");
        stored.message(body)
    }

    fn apply(&mut self, command: Command) -> Outcome {
        self.stamp_ms += 1;
        let request = Request {
            stamp_ms: self.stamp_ms,
            commands: vec![command],
        };
        let index = self.stamp_ms;
        let mut outcomes = self.apply_at(index, request);
        assert_eq!(outcomes.len(), 1);
        if let Err(broken) = self.state.check_invariants() {
            panic!("invariant broken: {broken}");
        }
        outcomes.remove(0)
    }

    fn topic(&mut self, name: &str, partitions: u32) {
        let outcome = self.apply(Command::CreateTopic {
            retention: Retention::UntilAcked,
            max_priority: 0,
            owner: None,
            expires_ms: 0,
            limits: TopicLimits::default(),
            name: name.into(),
            partitions,
            message_ttl_ms: 0,
            fail_if_exists: true,
        });
        assert_eq!(
            outcome,
            Outcome::Declared {
                created: true,
                name: name.into()
            }
        );
    }

    fn publish(&mut self, topic: &str, keys: &[Option<&str>]) -> Vec<(u32, u64)> {
        let messages = keys
            .iter()
            .enumerate()
            .map(|(i, key)| NewMessage {
                key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                payload: Bytes::from(format!("m{i}")),
                headers: Default::default(),
                properties: None,
            })
            .collect();
        match self.apply(Command::Publish {
            producer: None,
            topic: topic.into(),
            messages,
        }) {
            Outcome::Published(positions) => positions,
            other => panic!("publish answered {other:?}"),
        }
    }

    fn attach(
        &mut self,
        topic: &str,
        subscription: &str,
        prefetch: u32,
        session: SessionAddr,
    ) -> ConsumerId {
        self.attach_with(topic, subscription, prefetch, session, None)
    }

    fn attach_with(
        &mut self,
        topic: &str,
        subscription: &str,
        prefetch: u32,
        session: SessionAddr,
        config: Option<SubscriptionConfig>,
    ) -> ConsumerId {
        match self.apply(Command::Attach {
            client: 0,
            topic: topic.into(),
            subscription: subscription.into(),
            prefetch,
            session,
            config,
        }) {
            Outcome::Attached(id) => id,
            other => panic!("attach answered {other:?}"),
        }
    }

    fn ack(&mut self, topic: &str, subscription: &str, positions: Vec<(u32, u64)>) -> Outcome {
        self.apply(Command::Ack {
            topic: topic.into(),
            subscription: subscription.into(),
            positions,
        })
    }

    /// Deliveries produced since the last call, as (consumer, partition,
    /// offset, attempts).
    fn deliveries(&mut self) -> Vec<(ConsumerId, u32, u64, u32)> {
        self.effects
            .drain(..)
            .filter_map(|effect| match effect {
                Effect::Deliver { delivery: d, .. } => {
                    Some((d.consumer, d.partition, d.offset, d.attempts))
                }
                Effect::Closed { .. } => None,
            })
            .collect()
    }
}

fn rejected(outcome: Outcome) -> Rejection {
    match outcome {
        Outcome::Rejected(rejection) => rejection,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn topic_creation_checks_names_and_partitions() {
    let mut h = Harness::new();
    let cases: &[(&str, u32, Option<&str>)] = &[
        ("orders", 4, None),
        ("orders", 4, Some("already exists")),
        ("", 1, None), // server-named
        ("bad name", 1, Some("invalid topic name")),
        (&"x".repeat(256), 1, Some("invalid topic name")),
        ("a.b_c-1", 1, None),
        ("zero", 0, Some("partitions must be between 1 and")),
        (
            "many",
            PARTITIONS_MAX + 1,
            Some("partitions must be between 1 and"),
        ),
    ];
    for (name, partitions, error) in cases {
        let outcome = h.apply(Command::CreateTopic {
            retention: Retention::UntilAcked,
            max_priority: 0,
            owner: None,
            expires_ms: 0,
            limits: TopicLimits::default(),
            name: name.to_string(),
            partitions: *partitions,
            message_ttl_ms: 0,
            fail_if_exists: true,
        });
        match (error, outcome) {
            (None, Outcome::Declared { created: true, .. }) => {}
            (Some(expected), Outcome::Rejected(r)) => {
                assert!(
                    r.to_string().contains(expected),
                    "{name:?}: {r} lacks {expected:?}"
                )
            }
            (expected, outcome) => {
                panic!("{name:?}/{partitions}: expected {expected:?}, got {outcome:?}")
            }
        }
    }
}

#[test]
fn keyed_messages_follow_the_key_hash_and_offsets_are_dense() {
    let mut h = Harness::new();
    h.topic("t", 4);
    let positions = h.publish(
        "t",
        &[Some("k1"), Some("k2"), Some("k1"), None, None, None, None],
    );
    let hash = |key: &str| raftmq_rules::partition_for_key(key.as_bytes(), 4);
    assert_eq!(positions[0].0, hash("k1"));
    assert_eq!(positions[1].0, hash("k2"));
    assert_eq!(positions[2], (hash("k1"), positions[0].1 + 1));
    // Keyless messages go round robin over every partition.
    let mut keyless: Vec<u32> = positions[3..].iter().map(|p| p.0).collect();
    keyless.sort();
    assert_eq!(keyless, vec![0, 1, 2, 3]);
    assert_eq!(
        rejected(h.apply(Command::Publish {
            producer: None,
            topic: "nope".into(),
            messages: vec![]
        })),
        Rejection::Empty("publish batch".into())
    );
    let unknown = h.apply(Command::Publish {
        producer: None,
        topic: "nope".into(),
        messages: vec![NewMessage {
            key: None,
            payload: Bytes::from_static(b"x"),
            headers: Default::default(),
            properties: None,
        }],
    });
    assert_eq!(rejected(unknown), Rejection::UnknownTopic("nope".into()));
}

#[test]
fn a_consumer_never_holds_more_than_its_prefetch() {
    let mut h = Harness::new();
    h.topic("t", 2);
    h.publish("t", &[None; 10]);
    let consumer = h.attach("t", "s", 3, SESSION);
    let first = h.deliveries();
    assert_eq!(first.len(), 3);
    assert_eq!(h.state.consumer_in_flight(consumer), Some(3));
    // One ack frees one unit of credit: exactly one more delivery.
    let (_, partition, offset, _) = first[0];
    assert_eq!(h.ack("t", "s", vec![(partition, offset)]), Outcome::Done);
    assert_eq!(h.deliveries().len(), 1);
    assert_eq!(h.state.consumer_in_flight(consumer), Some(3));
    // Publishing more does not exceed the prefetch either.
    h.publish("t", &[None; 5]);
    assert!(h.deliveries().is_empty());
}

#[test]
fn a_detached_consumers_messages_go_to_the_next_consumer_first_and_in_order() {
    let mut h = Harness::new();
    h.topic("t", 1);
    h.publish("t", &[Some("k"); 6]);
    let first = h.attach("t", "s", 4, SESSION);
    let standby = h.attach(
        "t",
        "s",
        10,
        SessionAddr {
            session: 2,
            ..SESSION
        },
    );
    let handed: Vec<u64> = h.deliveries().iter().map(|d| d.2).collect();
    assert_eq!(
        handed,
        vec![0, 1, 2, 3],
        "only the active consumer receives"
    );
    h.ack("t", "s", vec![(0, 0)]);
    h.deliveries();
    assert_eq!(h.apply(Command::Detach { consumer: first }), Outcome::Done);
    let redelivered = h.deliveries();
    let offsets: Vec<u64> = redelivered.iter().map(|d| d.2).collect();
    assert_eq!(
        offsets,
        vec![1, 2, 3, 4, 5],
        "returned messages first, in offset order"
    );
    assert!(redelivered.iter().all(|d| d.0 == standby));
    let attempts: Vec<u32> = redelivered.iter().map(|d| d.3).collect();
    assert_eq!(attempts, vec![2, 2, 2, 2, 1]);
    // Detaching twice is harmless.
    assert_eq!(h.apply(Command::Detach { consumer: first }), Outcome::Done);
}

#[test]
fn acks_are_idempotent_and_bad_acks_are_rejected() {
    let mut h = Harness::new();
    h.topic("t", 1);
    h.publish("t", &[None; 3]);
    h.attach("t", "s", 1, SESSION);
    h.deliveries();
    assert_eq!(h.ack("t", "s", vec![(0, 0)]), Outcome::Done);
    assert_eq!(
        h.ack("t", "s", vec![(0, 0)]),
        Outcome::Done,
        "acking twice is OK"
    );
    let cases = [
        (
            vec![(0, 2)],
            Rejection::NotDelivered {
                partition: 0,
                offset: 2,
            },
        ),
        (
            vec![(0, 9)],
            Rejection::NoSuchMessage {
                partition: 0,
                offset: 9,
            },
        ),
        (
            vec![(5, 0)],
            Rejection::UnknownPartition {
                partition: 5,
                partitions: 1,
            },
        ),
    ];
    for (positions, expected) in cases {
        assert_eq!(rejected(h.ack("t", "s", positions)), expected);
    }
    let unknown = h.ack("t", "nope", vec![(0, 0)]);
    assert!(matches!(
        rejected(unknown),
        Rejection::UnknownSubscription { .. }
    ));
    // A rejected command changes nothing: offset 1 is still in flight.
    assert_eq!(
        h.ack("t", "s", vec![(0, 1), (0, 9)]),
        Outcome::Rejected(Rejection::NoSuchMessage {
            partition: 0,
            offset: 9
        })
    );
    assert_eq!(h.ack("t", "s", vec![(0, 1)]), Outcome::Done);
}

#[test]
fn messages_are_kept_until_every_subscription_acked_them() {
    let mut h = Harness::new();
    h.topic("t", 1);
    h.publish("t", &[None; 4]);
    let retained = |h: &Harness| h.state.topics()[0].retained;
    assert_eq!(
        retained(&h),
        4,
        "no subscription yet: kept for the first one"
    );
    h.attach("t", "a", 10, SESSION);
    h.attach(
        "t",
        "b",
        10,
        SessionAddr {
            session: 2,
            ..SESSION
        },
    );
    h.ack("t", "a", vec![(0, 0), (0, 1)]);
    assert_eq!(retained(&h), 4, "b has not acked");
    h.ack("t", "b", vec![(0, 0)]);
    assert_eq!(retained(&h), 3);
    h.ack("t", "b", vec![(0, 1), (0, 2), (0, 3)]);
    h.ack("t", "a", vec![(0, 2), (0, 3)]);
    assert_eq!(retained(&h), 0);
}

#[test]
fn nack_returns_the_message_for_redelivery() {
    let mut h = Harness::new();
    h.topic("t", 1);
    h.publish("t", &[None; 2]);
    h.attach("t", "s", 1, SESSION);
    assert_eq!(h.deliveries(), vec![(1, 0, 0, 1)]);
    let nack = h.apply(Command::Nack {
        topic: "t".into(),
        subscription: "s".into(),
        positions: vec![(0, 0)],
        requeue: true,
        delay_ms: 0,
    });
    assert_eq!(nack, Outcome::Done);
    assert_eq!(
        h.deliveries(),
        vec![(1, 0, 0, 2)],
        "redelivered before offset 1"
    );
}

#[test]
fn leader_started_detaches_every_consumer_and_closes_its_stream() {
    let mut h = Harness::new();
    h.topic("t", 1);
    h.publish("t", &[None; 2]);
    let consumer = h.attach("t", "s", 10, SESSION);
    h.effects.clear();
    h.apply(Command::LeaderStarted { node: 2 });
    assert_eq!(
        h.effects,
        vec![Effect::Closed {
            to: SESSION,
            consumer
        }]
    );
    assert_eq!(h.state.consumer_in_flight(consumer), None);
    h.effects.clear();
    // The messages wait for the next consumer, marked as redelivered.
    let next = h.attach("t", "s", 10, SessionAddr { boot: 8, ..SESSION });
    assert_eq!(h.deliveries(), vec![(next, 0, 0, 2), (next, 0, 1, 2)]);
}

#[test]
fn time_never_runs_back() {
    let mut h = Harness::new();
    h.topic("t", 1);
    let message = NewMessage {
        key: None,
        payload: Bytes::from_static(b"x"),
        headers: Default::default(),
        properties: None,
    };
    for stamp_ms in [5_000, 3_000] {
        let request = Request {
            stamp_ms,
            commands: vec![Command::Publish {
                producer: None,
                topic: "t".into(),
                messages: vec![message.clone()],
            }],
        };
        h.apply_at(stamp_ms, request);
    }
    h.attach("t", "s", 10, SESSION);
    let times: Vec<u64> = h
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver { delivery, .. } => Some(delivery.message.publish_ms),
            Effect::Closed { .. } => None,
        })
        .collect();
    assert_eq!(times, vec![5_000, 5_000]);
}

#[test]
fn replicas_applying_the_same_log_agree() {
    let log = [
        Command::CreateTopic {
            retention: Retention::UntilAcked,
            max_priority: 0,
            owner: None,
            expires_ms: 0,
            limits: TopicLimits::default(),
            name: "t".into(),
            partitions: 3,
            message_ttl_ms: 0,
            fail_if_exists: false,
        },
        Command::Attach {
            client: 0,
            topic: "t".into(),
            subscription: "s".into(),
            prefetch: 4,
            session: SESSION,
            config: None,
        },
        Command::Publish {
            producer: None,
            topic: "t".into(),
            messages: (0..20)
                .map(|i| NewMessage {
                    key: (i % 3 != 0).then(|| Bytes::from(format!("k{}", i % 5))),
                    payload: Bytes::from(format!("p{i}")),
                    headers: Default::default(),
                    properties: None,
                })
                .collect(),
        },
        Command::Ack {
            topic: "t".into(),
            subscription: "s".into(),
            positions: vec![(0, 0)],
        },
        Command::LeaderStarted { node: 3 },
    ];
    let run = || {
        let mut h = Harness::new();
        for command in log.clone() {
            h.apply(command);
        }
        h
    };
    let (a, b) = (run(), run());
    assert_eq!(a.state, b.state);
    assert_eq!(a.effects, b.effects);
    // A snapshot round trip restores the same state.
    let bytes = postcard::to_stdvec(&a.state).expect("encode");
    let restored: State = postcard::from_bytes(&bytes).expect("decode");
    assert_eq!(restored, a.state);
}

fn config(mode: Mode) -> Option<SubscriptionConfig> {
    Some(SubscriptionConfig {
        mode,
        ..SubscriptionConfig::default()
    })
}

fn session(n: u64) -> SessionAddr {
    SessionAddr {
        session: n,
        ..SESSION
    }
}

#[test]
fn an_exclusive_subscription_refuses_a_second_consumer_and_modes_must_match() {
    let mut h = Harness::new();
    h.topic("t", 1);
    h.attach_with("t", "solo", 10, session(1), config(Mode::Exclusive));
    let second = h.apply(Command::Attach {
        client: 0,
        topic: "t".into(),
        subscription: "solo".into(),
        prefetch: 10,
        session: session(2),
        config: None,
    });
    assert_eq!(rejected(second), Rejection::ConsumerBusy("solo".into()));
    let other_mode = h.apply(Command::Attach {
        client: 0,
        topic: "t".into(),
        subscription: "solo".into(),
        prefetch: 10,
        session: session(3),
        config: config(Mode::Shared),
    });
    assert!(matches!(
        rejected(other_mode),
        Rejection::ModeMismatch { .. }
    ));
}

#[test]
fn shared_spreads_messages_round_robin_within_each_prefetch() {
    let mut h = Harness::new();
    h.topic("t", 2);
    let ids: Vec<ConsumerId> = (1..=3)
        .map(|n| h.attach_with("t", "work", 2, session(n), config(Mode::Shared)))
        .collect();
    h.publish("t", &[None; 9]);
    let handed = h.deliveries();
    assert_eq!(handed.len(), 6, "three consumers, prefetch 2 each");
    for id in &ids {
        assert_eq!(
            handed.iter().filter(|d| d.0 == *id).count(),
            2,
            "consumer {id}"
        );
        assert_eq!(h.state.consumer_in_flight(*id), Some(2));
    }
}

#[test]
fn key_shared_keeps_each_key_with_one_consumer_in_order_across_a_departure() {
    let mut h = Harness::new();
    h.topic("t", 1);
    let a = h.attach_with("t", "ks", 100, session(1), config(Mode::KeyShared));
    let b = h.attach_with("t", "ks", 100, session(2), config(Mode::KeyShared));
    let keys: Vec<Option<&str>> = (0..40)
        .map(|i| Some(["k0", "k1", "k2", "k3", "k4"][i % 5]))
        .collect();
    let positions = h.publish("t", &keys);
    let first = h.deliveries();
    assert_eq!(first.len(), 40);
    // One partition: offset i holds message i.
    assert!(positions.iter().enumerate().all(|(i, p)| p.1 == i as u64));
    let key_of = |offset: u64| keys[offset as usize];
    // Every key went to exactly one consumer.
    let mut holders: std::collections::BTreeMap<Option<&str>, ConsumerId> = Default::default();
    for (consumer, _, offset, _) in &first {
        let holder = *holders.entry(key_of(*offset)).or_insert(*consumer);
        assert_eq!(holder, *consumer, "offset {offset}");
    }
    assert!(holders.values().any(|c| *c == a) && holders.values().any(|c| *c == b));
    // Consumer a leaves: its keys move to b, returned messages first and in
    // offset order per key.
    h.apply(Command::Detach { consumer: a });
    let moved = h.deliveries();
    assert!(moved.iter().all(|d| d.0 == b));
    let mut last: std::collections::BTreeMap<Option<&str>, u64> = Default::default();
    for (_, _, offset, attempts) in &moved {
        assert_eq!(*attempts, 2);
        let key = key_of(*offset);
        assert!(
            last.get(&key).is_none_or(|l| l < offset),
            "key {key:?} out of order"
        );
        last.insert(key, *offset);
    }
}

#[test]
fn an_unacked_message_returns_after_the_ack_timeout() {
    let mut h = Harness::new();
    h.topic("t", 1);
    let timed = Some(SubscriptionConfig {
        ack_timeout_ms: 1_000,
        ..SubscriptionConfig::default()
    });
    h.attach_with("t", "s", 10, SESSION, timed);
    h.publish("t", &[None]);
    assert_eq!(h.deliveries(), vec![(1, 0, 0, 1)]);
    let due = h.state.next_deadline().expect("an ack deadline");
    assert!(due > h.stamp_ms && due <= h.stamp_ms + 1_000);
    h.stamp_ms = due;
    h.apply(Command::Tick);
    assert_eq!(
        h.deliveries(),
        vec![(1, 0, 0, 2)],
        "redelivered after the timeout"
    );
}

fn dead_letter_setup(h: &mut Harness, max_deliveries: u32) {
    h.topic("t", 1);
    h.topic("dlq", 1);
    let dead_lettered = Some(SubscriptionConfig {
        max_deliveries,
        dead_letter_topic: Some("dlq".into()),
        ..SubscriptionConfig::default()
    });
    h.attach_with("t", "s", 10, SESSION, dead_lettered);
    h.publish("t", &[Some("poison")]);
    h.deliveries();
}

fn nack(h: &mut Harness, requeue: bool, delay_ms: u64) -> Outcome {
    h.apply(Command::Nack {
        topic: "t".into(),
        subscription: "s".into(),
        positions: vec![(0, 0)],
        requeue,
        delay_ms,
    })
}

fn dead_letter_reason(h: &Harness) -> Option<String> {
    let partition = h.state.partition("dlq", 0)?;
    let message = h.message(partition.get(partition.base)?);
    assert_eq!(
        message
            .headers
            .get("x-raftmq-source-topic")
            .map(String::as_str),
        Some("t")
    );
    assert_eq!(
        message
            .headers
            .get("x-raftmq-source-offset")
            .map(String::as_str),
        Some("0")
    );
    message.headers.get("x-raftmq-dead-letter-reason").cloned()
}

#[test]
fn a_rejected_message_moves_to_the_dead_letter_topic() {
    let mut h = Harness::new();
    dead_letter_setup(&mut h, 0);
    assert_eq!(nack(&mut h, false, 0), Outcome::Done);
    assert_eq!(dead_letter_reason(&h).as_deref(), Some(REASON_REJECTED));
    assert_eq!(
        h.state
            .topics()
            .iter()
            .find(|t| t.name == "t")
            .map(|t| t.retained),
        Some(0)
    );
    assert!(h.deliveries().is_empty(), "not redelivered");
}

#[test]
fn a_poison_message_moves_after_exactly_max_deliveries_failures() {
    let mut h = Harness::new();
    dead_letter_setup(&mut h, 3);
    for attempt in 2..=3 {
        nack(&mut h, true, 0);
        assert_eq!(h.deliveries(), vec![(1, 0, 0, attempt)]);
        assert_eq!(dead_letter_reason(&h), None);
    }
    nack(&mut h, true, 0);
    assert!(h.deliveries().is_empty());
    assert_eq!(
        dead_letter_reason(&h).as_deref(),
        Some(REASON_MAX_DELIVERIES)
    );
}

#[test]
fn a_delayed_nack_waits_for_its_time() {
    let mut h = Harness::new();
    dead_letter_setup(&mut h, 0);
    nack(&mut h, true, 5_000);
    assert!(h.deliveries().is_empty(), "not before the delay");
    let due = h.state.next_deadline().expect("the delay is a deadline");
    h.stamp_ms = due - 10;
    h.apply(Command::Tick);
    assert!(h.deliveries().is_empty(), "still early");
    h.stamp_ms = due;
    h.apply(Command::Tick);
    assert_eq!(h.deliveries(), vec![(1, 0, 0, 2)]);
}

/// Found by the simulation once its consumers nacked: a returned message
/// waiting out its delay was no candidate at all, so later messages of its
/// key went out first.
#[test]
fn a_delayed_nack_holds_back_the_later_messages_of_its_key() {
    let mut h = Harness::new();
    h.topic("t", 1);
    h.attach_with("t", "s", 1, SESSION, config(Mode::Failover));
    h.publish("t", &[Some("k"), Some("k"), Some("other")]);
    assert_eq!(h.deliveries(), vec![(1, 0, 0, 1)]);
    nack(&mut h, true, 5_000);
    assert_eq!(
        h.deliveries(),
        vec![(1, 0, 2, 1)],
        "meanwhile only another key's message goes out"
    );
    assert_eq!(h.ack("t", "s", vec![(0, 2)]), Outcome::Done);
    assert!(h.deliveries().is_empty(), "offset 1 waits for offset 0");
    h.stamp_ms = h.state.next_deadline().expect("the delay is a deadline");
    h.apply(Command::Tick);
    assert_eq!(h.deliveries(), vec![(1, 0, 0, 2)]);
    assert_eq!(h.ack("t", "s", vec![(0, 0)]), Outcome::Done);
    assert_eq!(h.deliveries(), vec![(1, 0, 1, 1)]);
}

#[test]
fn a_subscription_needs_an_existing_dead_letter_topic_for_a_delivery_limit() {
    let mut h = Harness::new();
    h.topic("t", 1);
    let cases = [
        (Some("missing".to_string()), 0, "does not exist"),
        (None, 3, "needs a dead_letter_topic"),
        (Some("t".to_string()), 0, "own topic"),
    ];
    for (dead_letter_topic, max_deliveries, expected) in cases {
        let outcome = h.apply(Command::Attach {
            client: 0,
            topic: "t".into(),
            subscription: "s".into(),
            prefetch: 1,
            session: SESSION,
            config: Some(SubscriptionConfig {
                max_deliveries,
                dead_letter_topic,
                ..SubscriptionConfig::default()
            }),
        });
        let rejection = rejected(outcome).to_string();
        assert!(
            rejection.contains(expected),
            "{rejection} lacks {expected:?}"
        );
    }
}

fn tagged_publish(h: &mut Harness, id: u64, sequence: u64, count: usize) -> Outcome {
    h.apply(Command::Publish {
        topic: "t".into(),
        producer: Some(ProducerTag { id, sequence }),
        messages: (0..count)
            .map(|i| NewMessage {
                key: None,
                payload: Bytes::from(format!("m{}", sequence + i as u64)),
                headers: Default::default(),
                properties: None,
            })
            .collect(),
    })
}

#[test]
fn an_idempotent_retry_is_confirmed_again_and_stored_once() {
    let mut h = Harness::new();
    h.topic("t", 2);
    let first = tagged_publish(&mut h, 7, 0, 3);
    let again = tagged_publish(&mut h, 7, 0, 3);
    assert_eq!(first, again, "same positions, keyless routing included");
    assert_eq!(h.state.topics()[0].retained, 3, "stored once");
    // The next batch continues the sequence.
    assert!(matches!(
        tagged_publish(&mut h, 7, 3, 2),
        Outcome::Published(_)
    ));
    assert_eq!(h.state.topics()[0].retained, 5);
}

#[test]
fn a_batch_that_skips_a_lost_one_is_refused_until_the_gap_is_filled() {
    let mut h = Harness::new();
    h.topic("t", 1);
    tagged_publish(&mut h, 9, 0, 2);
    let skipped = tagged_publish(&mut h, 9, 4, 1);
    assert_eq!(
        rejected(skipped),
        Rejection::OutOfOrder {
            producer: 9,
            expected: 2,
            got: 4
        }
    );
    assert!(matches!(
        tagged_publish(&mut h, 9, 2, 2),
        Outcome::Published(_)
    ));
    assert!(matches!(
        tagged_publish(&mut h, 9, 4, 1),
        Outcome::Published(_)
    ));
    // Order in the partition is the producer's order.
    let stored: Vec<Bytes> = (0..5)
        .filter_map(|o| {
            h.state
                .partition("t", 0)
                .and_then(|p| p.get(o))
                .map(|m| h.message(m).payload)
        })
        .collect();
    let expected: Vec<Bytes> = (0..5).map(|i| Bytes::from(format!("m{i}"))).collect();
    assert_eq!(stored, expected);
    // A producer the topic does not know may start at any sequence.
    assert!(matches!(
        tagged_publish(&mut h, 10, 500, 1),
        Outcome::Published(_)
    ));
}

#[test]
fn a_full_topic_refuses_publishes_until_consumers_ack() {
    let mut h = Harness::new();
    let limits = TopicLimits {
        max_messages: 3,
        max_bytes: 0,
        overflow: Overflow::RejectPublish,
    };
    h.apply(Command::CreateTopic {
        retention: Retention::UntilAcked,
        max_priority: 0,
        owner: None,
        expires_ms: 0,
        name: "t".into(),
        partitions: 1,
        limits,
        message_ttl_ms: 0,
        fail_if_exists: false,
    });
    h.publish("t", &[None; 3]);
    let full = h.apply(Command::Publish {
        topic: "t".into(),
        producer: None,
        messages: vec![NewMessage {
            key: None,
            payload: Bytes::from_static(b"x"),
            headers: Default::default(),
            properties: None,
        }],
    });
    assert!(matches!(rejected(full), Rejection::TopicFull { .. }));
    assert_eq!(h.state.topics()[0].retained, 3, "nothing dropped");
    h.attach("t", "s", 10, SESSION);
    h.ack("t", "s", vec![(0, 0), (0, 1)]);
    assert_eq!(h.publish("t", &[None; 2]).len(), 2, "room again after acks");
}

/// A topic's byte limit counts a message as every limit on a message does:
/// payload, key and headers (it once left the headers out).
#[test]
fn a_topic_byte_limit_counts_headers() {
    let mut h = Harness::new();
    let limits = TopicLimits {
        max_messages: 0,
        max_bytes: 10,
        overflow: Overflow::RejectPublish,
    };
    h.apply(Command::CreateTopic {
        retention: Retention::UntilAcked,
        max_priority: 0,
        owner: None,
        expires_ms: 0,
        name: "t".into(),
        partitions: 1,
        limits,
        message_ttl_ms: 0,
        fail_if_exists: false,
    });
    let publish = |h: &mut Harness, payload: &'static [u8], header: (&str, &str)| {
        h.apply(Command::Publish {
            topic: "t".into(),
            producer: None,
            messages: vec![NewMessage {
                key: None,
                payload: Bytes::from_static(payload),
                headers: [(header.0.into(), header.1.into())].into(),
                properties: None,
            }],
        })
    };
    let bytes = |h: &Harness| h.state.partition("t", 0).map(|p| p.bytes);
    // 4 payload bytes and 4 header bytes.
    assert!(matches!(
        publish(&mut h, b"abcd", ("ab", "cd")),
        Outcome::Published(_)
    ));
    assert_eq!(bytes(&h), Some(8));
    // Its payload alone would fit; with its header it does not.
    let full = publish(&mut h, b"ab", ("h", "v"));
    assert!(matches!(rejected(full), Rejection::TopicFull { .. }));
    // Trimmed once acked, a message gives back what it counted.
    h.attach("t", "s", 10, SESSION);
    h.ack("t", "s", vec![(0, 0)]);
    assert_eq!(bytes(&h), Some(0));
    assert!(matches!(
        publish(&mut h, b"ab", ("h", "v")),
        Outcome::Published(_)
    ));
}

#[test]
fn a_subscription_from_latest_sees_only_what_comes_next() {
    let mut h = Harness::new();
    h.topic("t", 2);
    h.publish("t", &[None; 4]);
    let latest = Some(SubscriptionConfig {
        start: Start::Latest,
        ..SubscriptionConfig::default()
    });
    h.attach_with("t", "new", 10, SESSION, latest);
    assert!(h.deliveries().is_empty(), "nothing from before");
    let positions = h.publish("t", &[None; 2]);
    let handed: Vec<(u32, u64)> = h.deliveries().iter().map(|d| (d.1, d.2)).collect();
    assert_eq!(handed.len(), 2);
    assert!(positions.iter().all(|p| handed.contains(p)));
}

/// A subscription with both kinds of deadline: offset 1 in flight under an
/// ack timeout, offset 0 returned by a delayed nack.
fn both_deadlines(h: &mut Harness) {
    h.topic("t", 1);
    let timed = Some(SubscriptionConfig {
        ack_timeout_ms: 1_000,
        ..SubscriptionConfig::default()
    });
    h.attach_with("t", "s", 10, SESSION, timed);
    h.publish("t", &[None; 2]);
    h.apply(Command::Nack {
        topic: "t".into(),
        subscription: "s".into(),
        positions: vec![(0, 0)],
        requeue: true,
        delay_ms: 5_000,
    });
    assert_eq!(h.deliveries(), vec![(1, 0, 0, 1), (1, 0, 1, 1)]);
}

#[test]
fn a_deadline_index_out_of_step_with_the_cursors_is_caught() {
    let mut h = Harness::new();
    both_deadlines(&mut h);
    assert_eq!(h.state.check_invariants(), Ok(()));
    // An entry lost: the ack deadline would never be ticked.
    let mut lost = h.state.clone();
    let first = lost.next_deadline().expect("a deadline");
    assert_eq!(lost.deadlines.pop_due(first).len(), 1);
    let broken = lost.check_invariants().expect_err("a lost deadline");
    assert!(broken.contains("lacks"), "{broken}");
    // A stray entry: a tick would settle a message not due.
    let mut stray = h.state.clone();
    stray.deadlines.of("t", "s", 0).set(1, Due::AckTimeout, 7);
    let broken = stray.check_invariants().expect_err("a stray deadline");
    assert!(broken.contains("no cursor implies"), "{broken}");
}

#[test]
fn decoding_a_snapshot_rebuilds_the_deadline_index() {
    let mut h = Harness::new();
    both_deadlines(&mut h);
    let bytes = postcard::to_stdvec(&h.state).expect("encode");
    let restored: State = postcard::from_bytes(&bytes).expect("decode");
    assert_eq!(restored, h.state, "the index included");
    assert_eq!(restored.check_invariants(), Ok(()));
}

#[test]
fn a_delay_that_ends_between_ticks_still_gets_its_tick() {
    // Before the index, a delay whose time another command's stamp passed
    // no longer counted as a deadline: no tick came for it, and the message
    // waited for the next command on its subscription.
    let mut h = Harness::new();
    dead_letter_setup(&mut h, 0);
    nack(&mut h, true, 5_000);
    let due = h.state.next_deadline().expect("the delay is a deadline");
    h.stamp_ms = due + 100;
    h.topic("elsewhere", 1);
    assert!(h.deliveries().is_empty(), "nothing dispatched it");
    assert_eq!(h.state.next_deadline(), Some(due), "still a deadline");
    h.apply(Command::Tick);
    assert_eq!(h.deliveries(), vec![(1, 0, 0, 2)]);
    assert_eq!(h.state.next_deadline(), None);
}

#[test]
fn a_tick_settles_in_topic_order_whatever_the_deadlines_order() {
    // As when a tick walked every topic: dead letters reach their topic in
    // (topic, subscription, partition, offset) order, not deadline order.
    let mut h = Harness::new();
    h.topic("t", 1);
    h.topic("dlq", 1);
    for (n, (name, ack_timeout_ms)) in [("a", 2_000), ("b", 1_000)].into_iter().enumerate() {
        let config = Some(SubscriptionConfig {
            ack_timeout_ms,
            max_deliveries: 1,
            dead_letter_topic: Some("dlq".into()),
            ..SubscriptionConfig::default()
        });
        h.attach_with("t", name, 1, session(n as u64), config);
    }
    h.publish("t", &[None]);
    h.stamp_ms += 5_000;
    h.apply(Command::Tick);
    let dlq = h.state.partition("dlq", 0).expect("dlq");
    let sources: Vec<String> = dlq
        .messages
        .iter()
        .map(|m| h.message(m).headers["x-raftmq-source-subscription"].clone())
        .collect();
    assert_eq!(sources, ["a", "b"]);
    assert_eq!(h.state.next_deadline(), None);
}

/// A retained message costs the state a fixed-size record, and a snapshot
/// (the encoded state) at most 64 bytes, however large its body: bodies
/// stay in the log (ARCHITECTURE.md, "Bodies").
#[test]
fn a_retained_message_costs_a_small_record_not_its_body() {
    assert_eq!(std::mem::size_of::<Stored>(), 56);
    let mut h = Harness::new();
    h.topic("t", 4);
    let body = Bytes::from(vec![b'x'; 1024]);
    const MESSAGES: usize = 10_000;
    for batch in 0..MESSAGES / 250 {
        let messages = (0..250)
            .map(|i| NewMessage {
                key: Some(Bytes::from(format!("key-{}", (batch * 250 + i) % 97))),
                payload: body.clone(),
                headers: [("h".to_string(), "v".to_string())].into(),
                properties: None,
            })
            .collect();
        h.apply(Command::Publish {
            producer: None,
            topic: "t".into(),
            messages,
        });
    }
    assert_eq!(h.state.retained(), MESSAGES as u64);
    let encoded = postcard::to_stdvec(&h.state).expect("encode");
    assert!(
        encoded.len() <= 64 * MESSAGES + 4096,
        "{} bytes for {MESSAGES} messages",
        encoded.len()
    );
    // Every record still reads back its own body.
    let partition = h.state.partition("t", 0).expect("partition");
    let first = h.message(partition.get(partition.base).expect("first"));
    assert_eq!(first.payload, body);
    assert_eq!(first.headers["h"], "v");
}

/// The bodies of every record `h` retains in `topic`'s partition 0, read
/// from the log as a node would.
fn payloads(h: &Harness, topic: &str) -> Vec<Bytes> {
    let partition = h.state.partition(topic, 0).expect("partition");
    partition
        .messages
        .iter()
        .map(|stored| h.message(stored).payload)
        .collect()
}

#[test]
fn a_relocation_moves_every_record_of_a_body_and_frees_the_old_entries() {
    let mut h = Harness::new();
    dead_letter_setup(&mut h, 0);
    // The poison message is dead-lettered: two records, one body.
    assert_eq!(nack(&mut h, false, 0), Outcome::Done);
    h.topic("u", 1);
    h.publish("u", &[None, None]);
    let old = h
        .state
        .partition("dlq", 0)
        .expect("dlq")
        .messages
        .get(0)
        .expect("record")
        .body();
    let first_u = h
        .state
        .partition("u", 0)
        .expect("u")
        .messages
        .get(0)
        .expect("record")
        .body();
    assert_eq!(h.state.oldest_body(), Some(old.index));
    let before = (payloads(&h, "dlq"), payloads(&h, "u"));

    // A publish shares the relocation's entry: the copies' slots come
    // after its message.
    let moved = |at: BodyRef, h: &Harness| h.log[&at.index].message(at.slot).cloned().unwrap();
    let request = Request {
        stamp_ms: h.stamp_ms + 1,
        commands: vec![
            Command::Publish {
                producer: None,
                topic: "u".into(),
                messages: vec![NewMessage {
                    key: None,
                    payload: Bytes::from_static(b"beside"),
                    headers: Default::default(),
                    properties: None,
                }],
            },
            Command::Relocate {
                from: vec![old, first_u],
                messages: vec![moved(old, &h), moved(first_u, &h)],
            },
        ],
    };
    let index = h.stamp_ms + 1;
    let outcomes = h.apply_at(index, request);
    assert_eq!(outcomes[1], Outcome::Done);
    h.state.check_invariants().expect("invariants");

    let dlq = h
        .state
        .partition("dlq", 0)
        .expect("dlq")
        .messages
        .get(0)
        .expect("record");
    assert_eq!(
        dlq.body(),
        BodyRef {
            index,
            term: 1,
            slot: 1
        }
    );
    let u = &h.state.partition("u", 0).expect("u").messages;
    assert_eq!(
        u.get(0).expect("record").body(),
        BodyRef {
            index,
            term: 1,
            slot: 2
        }
    );
    let second_u = BodyRef {
        slot: first_u.slot + 1,
        ..first_u
    };
    assert_eq!(
        u.get(1).expect("record").body(),
        second_u,
        "not relocated: stays"
    );
    // Delivered the same, wherever the body is now.
    let mut after_u = payloads(&h, "u");
    assert_eq!(after_u.pop(), Some(Bytes::from_static(b"beside")));
    assert_eq!((payloads(&h, "dlq"), after_u), before);
    // The old entries hold nothing now.
    assert_eq!(h.state.oldest_body(), Some(first_u.index));
    assert!(h.state.bodies_below(old.index + 1).is_empty());

    // A relocation whose bodies are gone changes nothing; a malformed one
    // is refused.
    let state = h.state.clone();
    assert_eq!(
        h.apply(Command::Relocate {
            from: vec![old],
            messages: vec![moved(old, &h)],
        }),
        Outcome::Done
    );
    assert_eq!(h.state.partition("dlq", 0), state.partition("dlq", 0));
    assert!(matches!(
        rejected(h.apply(Command::Relocate {
            from: vec![old, first_u],
            messages: vec![],
        })),
        Rejection::Invalid(_)
    ));
    assert!(matches!(
        rejected(h.apply(Command::Relocate {
            from: vec![],
            messages: vec![],
        })),
        Rejection::Empty(_)
    ));
}

/// Declaring is idempotent: the same settings again change nothing and
/// say so; other settings are refused, naming the first that differs.
#[test]
fn declaring_a_topic_again_is_idempotent_and_a_mismatch_names_the_setting() {
    let mut h = Harness::new();
    let declare = |h: &mut Harness, partitions, max_messages, message_ttl_ms, fail_if_exists| {
        h.apply(Command::CreateTopic {
            retention: Retention::UntilAcked,
            max_priority: 0,
            owner: None,
            expires_ms: 0,
            name: "t".into(),
            partitions,
            limits: TopicLimits {
                max_messages,
                max_bytes: 0,
                overflow: Overflow::RejectPublish,
            },
            message_ttl_ms,
            fail_if_exists,
        })
    };
    assert_eq!(
        declare(&mut h, 2, 0, 0, false),
        Outcome::Declared {
            created: true,
            name: "t".into()
        }
    );
    h.publish("t", &[None]);
    assert_eq!(
        declare(&mut h, 2, 0, 0, false),
        Outcome::Declared {
            created: false,
            name: "t".into()
        }
    );
    assert_eq!(h.state.topics()[0].retained, 1, "declaring again kept it");
    let mismatch = |outcome| match rejected(outcome) {
        Rejection::SettingMismatch {
            setting,
            existing,
            asked,
            ..
        } => (setting, existing, asked),
        other => panic!("expected a mismatch, got {other:?}"),
    };
    assert_eq!(
        mismatch(declare(&mut h, 3, 0, 0, false)),
        ("partitions".into(), "2".into(), "3".into())
    );
    assert_eq!(
        mismatch(declare(&mut h, 2, 5, 0, false)),
        ("max_messages".into(), "0".into(), "5".into())
    );
    assert_eq!(
        mismatch(declare(&mut h, 2, 0, 60_000, false)),
        ("message_ttl_ms".into(), "0".into(), "60000".into())
    );
    assert!(matches!(
        rejected(declare(&mut h, 2, 0, 0, true)),
        Rejection::TopicExists(_)
    ));
}

/// Deleting a topic takes its subscriptions, consumers, deadlines and
/// retained messages with it (the invariants, checked after every
/// command, hold the deadline index and the live bodies to that), closes
/// the consumers' streams, and frees the log its bodies held; `if_unused`
/// and `if_empty` refuse while there is a consumer or a message.
#[test]
fn deleting_a_topic_closes_its_consumers_and_frees_its_bodies() {
    let mut h = Harness::new();
    h.topic("keep", 1);
    h.topic("t", 2);
    h.publish("t", &[None; 4]);
    let consumer = h.attach("t", "s", 2, SESSION);
    assert_eq!(h.deliveries().len(), 2);
    // One delivered message waits out a delayed redelivery: a deadline.
    assert_eq!(nack(&mut h, true, 60_000), Outcome::Done);
    h.deliveries();
    assert!(h.state.next_deadline().is_some());
    let oldest_before = h.state.oldest_body();
    h.publish("keep", &[None]);

    let delete = |h: &mut Harness, if_unused, if_empty| {
        h.apply(Command::DeleteTopic {
            name: "t".into(),
            if_unused,
            if_empty,
        })
    };
    assert!(matches!(
        rejected(delete(&mut h, true, false)),
        Rejection::InUse { consumers: 1, .. }
    ));
    assert!(matches!(
        rejected(delete(&mut h, false, true)),
        Rejection::NotEmpty { messages: 4, .. }
    ));
    assert_eq!(
        delete(&mut h, false, false),
        Outcome::Deleted { messages: 4 }
    );
    assert!(h
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Closed { consumer: closed, .. } if *closed == consumer)));
    assert_eq!(h.state.next_deadline(), None);
    assert!(
        h.state.oldest_body() > oldest_before,
        "its bodies still held"
    );
    let names: Vec<String> = h.state.topics().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["keep"]);
    assert!(matches!(
        rejected(delete(&mut h, false, false)),
        Rejection::UnknownTopic(_)
    ));
    // Declared again, it starts empty.
    h.topic("t", 2);
    assert_eq!(h.state.topics()[1].retained, 0);
}

/// Deleting a subscription closes its consumers and trims what only it
/// held back; with no subscription left, the topic keeps the rest for
/// the next one.
#[test]
fn deleting_a_subscription_trims_what_only_it_held_back() {
    let mut h = Harness::new();
    h.topic("t", 1);
    h.publish("t", &[None; 3]);
    h.attach("t", "fast", 10, SESSION);
    let slow = h.attach("t", "slow", 10, SESSION);
    h.ack("t", "fast", vec![(0, 0), (0, 1), (0, 2)]);
    h.effects.clear();
    assert_eq!(h.state.topics()[0].retained, 3, "slow holds them");
    let delete = |h: &mut Harness, subscription: &str| {
        h.apply(Command::DeleteSubscription {
            topic: "t".into(),
            subscription: subscription.into(),
        })
    };
    assert_eq!(delete(&mut h, "slow"), Outcome::Done);
    assert!(h
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Closed { consumer, .. } if *consumer == slow)));
    assert_eq!(h.state.topics()[0].retained, 0);
    assert_eq!(h.state.topics()[0].subscriptions, ["fast"]);
    assert!(matches!(
        rejected(delete(&mut h, "slow")),
        Rejection::UnknownSubscription { .. }
    ));
    h.publish("t", &[None; 2]);
    assert_eq!(delete(&mut h, "fast"), Outcome::Done);
    assert_eq!(h.state.topics()[0].retained, 2, "kept for the next one");
}

/// Publishes one message to `topic` with its own TTL (`None`: none).
fn publish_with_ttl(h: &mut Harness, topic: &str, ttl_ms: Option<u32>) -> (u32, u64) {
    let outcome = h.apply(Command::Publish {
        topic: topic.into(),
        producer: None,
        messages: vec![NewMessage {
            key: None,
            payload: Bytes::from(format!("ttl {ttl_ms:?}")),
            headers: Default::default(),
            properties: Some(Box::new(Properties {
                ttl_ms,
                ..Properties::default()
            })),
        }],
    });
    match outcome {
        Outcome::Published(positions) => positions[0],
        other => panic!("publish answered {other:?}"),
    }
}

/// An expired message is never delivered: dispatch passes over it and
/// it goes to the dead-letter topic with reason `expired` and its origin,
/// while the messages beside it are delivered.
#[test]
fn an_expired_message_is_never_delivered_and_is_dead_lettered() {
    let mut h = Harness::new();
    h.topic("t", 1);
    h.topic("dlq", 1);
    publish_with_ttl(&mut h, "t", Some(100));
    publish_with_ttl(&mut h, "t", None);
    publish_with_ttl(&mut h, "t", Some(10_000));
    h.stamp_ms += 100;
    let config = SubscriptionConfig {
        dead_letter_topic: Some("dlq".into()),
        ..SubscriptionConfig::default()
    };
    h.attach_with("t", "s", 10, SESSION, Some(config));
    let delivered: Vec<u64> = h.deliveries().iter().map(|d| d.2).collect();
    assert_eq!(delivered, [1, 2], "offset 0 expired");
    assert_eq!(dead_letter_reason(&h).as_deref(), Some(REASON_EXPIRED));
    // The dead letter itself does not expire.
    h.stamp_ms += 1_000_000;
    h.attach("dlq", "inspect", 10, SESSION);
    assert_eq!(h.deliveries().len(), 1);
}

/// A topic's TTL applies to every message, a message's own shorter one
/// wins; without a dead-letter topic an expired message is dropped; a
/// message in flight does not expire, but once returned it does.
#[test]
fn the_shorter_ttl_wins_and_an_expired_message_without_a_dead_letter_topic_is_dropped() {
    let mut h = Harness::new();
    h.apply(Command::CreateTopic {
        retention: Retention::UntilAcked,
        max_priority: 0,
        owner: None,
        expires_ms: 0,
        name: "t".into(),
        partitions: 1,
        limits: TopicLimits::default(),
        message_ttl_ms: 1_000,
        fail_if_exists: true,
    });
    publish_with_ttl(&mut h, "t", None); // the topic's 1,000
    publish_with_ttl(&mut h, "t", Some(100));
    publish_with_ttl(&mut h, "t", Some(5_000)); // the topic's 1,000 wins
    h.stamp_ms += 150;
    h.attach("t", "s", 10, SESSION);
    let delivered: Vec<u64> = h.deliveries().iter().map(|d| d.2).collect();
    assert_eq!(delivered, [0, 2]);
    assert_eq!(h.state.topics()[0].retained, 3, "0 and 2 are in flight");
    h.stamp_ms += 2_000;
    // Still in flight after their time (a nack of anything else is
    // refused), then returned: dropped, not delivered again.
    let nacked = h.apply(Command::Nack {
        topic: "t".into(),
        subscription: "s".into(),
        positions: vec![(0, 0), (0, 2)],
        requeue: true,
        delay_ms: 0,
    });
    assert_eq!(nacked, Outcome::Done);
    assert!(
        h.deliveries().is_empty(),
        "returned after their time: dropped"
    );
    assert_eq!(h.state.topics()[0].retained, 0);
}

fn declare_exchange(
    h: &mut Harness,
    name: &str,
    kind: ExchangeKind,
    alternate: Option<&str>,
) -> Outcome {
    h.apply(Command::DeclareExchange {
        name: name.into(),
        kind,
        alternate: alternate.map(str::to_string),
        fail_if_exists: false,
    })
}

fn bind(h: &mut Harness, exchange: &str, topic: &str, key: &str) -> Outcome {
    h.apply(Command::Bind {
        exchange: exchange.into(),
        binding: Binding {
            topic: topic.into(),
            key: key.into(),
            arguments: Default::default(),
        },
    })
}

/// Publishes one message per payload through `exchange`.
fn publish_to(h: &mut Harness, exchange: &str, routing_key: &str, payloads: &[&str]) -> Outcome {
    let messages = payloads
        .iter()
        .map(|payload| NewMessage {
            key: None,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            headers: Default::default(),
            properties: None,
        })
        .collect();
    h.apply(Command::PublishTo {
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        messages,
    })
}

fn routed(outcome: Outcome) -> Vec<Vec<(String, u32, u64)>> {
    match outcome {
        Outcome::Routed(placements) => placements,
        other => panic!("a publish through an exchange answered {other:?}"),
    }
}

/// A message routed to several topics is one body in the log and one
/// record in each topic, each pointing at it (the invariants hold the
/// live-body index to both); each topic's consumer gets it; deleting a
/// topic takes its bindings with it.
#[test]
fn an_exchange_stores_a_message_once_for_every_topic_it_reaches() {
    let mut h = Harness::new();
    h.topic("a", 1);
    h.topic("b", 2);
    assert_eq!(
        declare_exchange(&mut h, "fan", ExchangeKind::Fanout, None),
        Outcome::Declared {
            created: true,
            name: "fan".into()
        }
    );
    assert_eq!(bind(&mut h, "fan", "a", ""), Outcome::Done);
    assert_eq!(bind(&mut h, "fan", "b", "ignored"), Outcome::Done);
    // The same binding twice is one binding.
    assert_eq!(bind(&mut h, "fan", "b", "ignored"), Outcome::Done);
    assert_eq!(h.state.exchanges()[0].bindings.len(), 2);

    let placements = routed(publish_to(&mut h, "fan", "any", &["one", "two"]));
    assert_eq!(
        placements,
        vec![
            vec![("a".into(), 0, 0), ("b".into(), 0, 0)],
            vec![("a".into(), 0, 1), ("b".into(), 1, 0)],
        ]
    );
    let in_a = h
        .state
        .partition("a", 0)
        .expect("a")
        .get(1)
        .expect("two in a")
        .clone();
    let in_b = h
        .state
        .partition("b", 1)
        .expect("b")
        .get(0)
        .expect("two in b")
        .clone();
    assert_eq!(in_a.body(), in_b.body(), "one body, two records");
    assert_eq!(h.message(&in_b).payload, Bytes::from_static(b"two"));

    h.attach("a", "s", 10, SESSION);
    h.attach("b", "s", 10, SESSION);
    assert_eq!(h.deliveries().len(), 4, "both topics' consumers get both");

    assert!(matches!(
        h.apply(Command::DeleteTopic {
            name: "a".into(),
            if_unused: false,
            if_empty: false,
        }),
        Outcome::Deleted { messages: 2 }
    ));
    let bindings = &h.state.exchanges()[0].bindings;
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].topic, "b");
    assert_eq!(
        routed(publish_to(&mut h, "fan", "", &["three"])),
        vec![vec![("b".into(), 0, 1)]]
    );
}

/// A message routed nowhere is counted on its exchange and stored
/// nowhere, unless the alternate exchange takes it; a publish that would
/// take one of its topics past a limit stores nothing at all.
#[test]
fn unroutable_messages_are_counted_or_go_to_the_alternate_and_a_full_topic_refuses_all() {
    let mut h = Harness::new();
    h.topic("errors", 1);
    h.apply(Command::CreateTopic {
        retention: Retention::UntilAcked,
        max_priority: 0,
        owner: None,
        expires_ms: 0,
        name: "small".into(),
        partitions: 1,
        limits: TopicLimits {
            max_messages: 1,
            max_bytes: 0,
            overflow: Overflow::RejectPublish,
        },
        message_ttl_ms: 0,
        fail_if_exists: true,
    });
    h.topic("unrouted", 1);
    declare_exchange(&mut h, "logs", ExchangeKind::Direct, None);
    bind(&mut h, "logs", "errors", "error");
    bind(&mut h, "logs", "small", "error");

    assert_eq!(
        routed(publish_to(&mut h, "logs", "info", &["x"])),
        vec![vec![]]
    );
    assert_eq!(h.state.exchanges()[0].unroutable, 1);
    assert_eq!(h.state.retained(), 0);

    // Two for `small`, which holds one: neither is stored, in either topic.
    assert!(matches!(
        rejected(publish_to(&mut h, "logs", "error", &["e1", "e2"])),
        Rejection::TopicFull { topic, .. } if topic == "small"
    ));
    assert_eq!(h.state.retained(), 0);
    assert_eq!(
        routed(publish_to(&mut h, "logs", "error", &["e1"])).len(),
        1
    );
    assert_eq!(h.state.retained(), 2);

    // With an alternate, what `logs` cannot route goes there instead.
    declare_exchange(&mut h, "spare", ExchangeKind::Fanout, None);
    bind(&mut h, "spare", "unrouted", "");
    h.apply(Command::DeleteExchange {
        name: "logs".into(),
        if_unused: false,
    });
    declare_exchange(&mut h, "logs", ExchangeKind::Direct, Some("spare"));
    assert_eq!(
        routed(publish_to(&mut h, "logs", "info", &["i"])),
        vec![vec![("unrouted".into(), 0, 0)]]
    );
    // The default exchange: the topic the routing key names.
    assert_eq!(
        routed(publish_to(&mut h, "", "errors", &["d"])),
        vec![vec![("errors".into(), 0, 1)]]
    );
    assert_eq!(
        routed(publish_to(&mut h, "", "nothing", &["d"])),
        vec![vec![]]
    );
}

/// Declaring is idempotent and a difference names the setting; deleting
/// `if_unused` refuses while bindings remain; bad names, bindings and
/// targets are refused as data.
#[test]
fn exchanges_are_declared_bound_and_deleted_with_clear_refusals() {
    let mut h = Harness::new();
    h.topic("t", 1);
    assert_eq!(
        declare_exchange(&mut h, "x", ExchangeKind::Topic, None),
        Outcome::Declared {
            created: true,
            name: "x".into()
        }
    );
    assert_eq!(
        declare_exchange(&mut h, "x", ExchangeKind::Topic, None),
        Outcome::Declared {
            created: false,
            name: "x".into()
        }
    );
    let mismatch = |outcome| match rejected(outcome) {
        Rejection::SettingMismatch {
            what,
            setting,
            existing,
            asked,
            ..
        } => (what, setting, existing, asked),
        other => panic!("expected a mismatch, got {other:?}"),
    };
    assert_eq!(
        mismatch(declare_exchange(&mut h, "x", ExchangeKind::Direct, None)),
        (
            "exchange".into(),
            "kind".into(),
            "topic".into(),
            "direct".into()
        )
    );
    assert_eq!(
        mismatch(declare_exchange(
            &mut h,
            "x",
            ExchangeKind::Topic,
            Some("alt")
        )),
        (
            "exchange".into(),
            "alternate_exchange".into(),
            "none".into(),
            "alt".into()
        )
    );
    assert!(matches!(
        rejected(h.apply(Command::DeclareExchange {
            name: "x".into(),
            kind: ExchangeKind::Topic,
            alternate: None,
            fail_if_exists: true,
        })),
        Rejection::ExchangeExists(_)
    ));
    assert!(matches!(
        rejected(declare_exchange(&mut h, "", ExchangeKind::Direct, None)),
        Rejection::Invalid(_)
    ));
    assert!(matches!(
        rejected(bind(&mut h, "x", "missing", "#")),
        Rejection::UnknownTopic(_)
    ));
    assert!(matches!(
        rejected(bind(&mut h, "nope", "t", "#")),
        Rejection::UnknownExchange(_)
    ));
    assert!(matches!(
        rejected(bind(
            &mut h,
            "x",
            "t",
            &"k".repeat(ROUTING_KEY_BYTES_MAX + 1)
        )),
        Rejection::Invalid(_)
    ));
    declare_exchange(&mut h, "h", ExchangeKind::Headers, None);
    assert!(matches!(
        rejected(h.apply(Command::Bind {
            exchange: "h".into(),
            binding: Binding {
                topic: "t".into(),
                key: String::new(),
                arguments: [(X_MATCH.to_string(), "most".to_string())].into(),
            },
        })),
        Rejection::Invalid(_)
    ));
    assert!(matches!(
        rejected(publish_to(&mut h, "nope", "k", &["m"])),
        Rejection::UnknownExchange(_)
    ));

    assert_eq!(bind(&mut h, "x", "t", "a.#"), Outcome::Done);
    assert_eq!(routed(publish_to(&mut h, "x", "a.b.c", &["m"])).len(), 1);
    let delete = |h: &mut Harness, if_unused| {
        h.apply(Command::DeleteExchange {
            name: "x".into(),
            if_unused,
        })
    };
    assert!(matches!(
        rejected(delete(&mut h, true)),
        Rejection::ExchangeInUse { bindings: 1, .. }
    ));
    let unbind = Command::Unbind {
        exchange: "x".into(),
        binding: Binding {
            topic: "t".into(),
            key: "a.#".into(),
            arguments: Default::default(),
        },
    };
    assert_eq!(h.apply(unbind.clone()), Outcome::Done);
    assert_eq!(h.apply(unbind), Outcome::Done, "unbinding twice is fine");
    assert_eq!(delete(&mut h, true), Outcome::Done);
    assert!(matches!(
        rejected(delete(&mut h, false)),
        Rejection::UnknownExchange(_)
    ));
    assert_eq!(
        h.state.retained(),
        1,
        "the routed message stays in its topic"
    );
}

fn declare_temporary(h: &mut Harness, name: &str, owner: Option<u64>, expires_ms: u32) -> Outcome {
    h.apply(Command::CreateTopic {
        retention: Retention::UntilAcked,
        max_priority: 0,
        name: name.into(),
        partitions: 1,
        limits: TopicLimits::default(),
        message_ttl_ms: 0,
        fail_if_exists: false,
        owner,
        expires_ms,
    })
}

fn topic_names(h: &Harness) -> Vec<String> {
    h.state.topics().into_iter().map(|t| t.name).collect()
}

/// A topic declared without a name gets one of the server's; an exclusive
/// topic admits only its owner's consumers; an expiring topic is deleted,
/// by a `Tick`, once it has had no consumer for its `expires_ms`, and a
/// consumer stops its clock (the invariants hold the expiry index to the
/// topics after every command).
#[test]
fn temporary_topics_are_server_named_owned_and_deleted_once_unused() {
    let mut h = Harness::new();
    let name = |outcome| match outcome {
        Outcome::Declared {
            created: true,
            name,
        } => name,
        other => panic!("expected a new topic, got {other:?}"),
    };
    let owned = name(declare_temporary(&mut h, "", Some(7), 1_000));
    // Refused: it changes nothing, the server's counter included.
    let refused = h.apply(Command::CreateTopic {
        name: String::new(),
        partitions: 0,
        limits: TopicLimits::default(),
        message_ttl_ms: 0,
        fail_if_exists: false,
        owner: None,
        expires_ms: 0,
        max_priority: 0,
        retention: Retention::UntilAcked,
    });
    assert!(matches!(
        rejected(refused),
        Rejection::InvalidPartitions { .. }
    ));
    let idle = name(declare_temporary(&mut h, "", Some(7), 1_000));
    assert_eq!((owned.as_str(), idle.as_str()), ("tmp.1", "tmp.2"));
    assert!(matches!(
        rejected(declare_temporary(&mut h, "tmp.9", None, 0)),
        Rejection::Invalid(_)
    ));
    assert!(matches!(
        rejected(declare_temporary(&mut h, &owned, Some(8), 1_000)),
        Rejection::Exclusive(_)
    ));
    assert!(matches!(
        rejected(declare_temporary(&mut h, &owned, Some(7), 2_000)),
        Rejection::SettingMismatch { setting, .. } if setting == "expires_ms"
    ));

    let attach = |h: &mut Harness, client| {
        h.apply(Command::Attach {
            topic: "tmp.1".into(),
            subscription: "s".into(),
            prefetch: 10,
            session: SESSION,
            config: None,
            client,
        })
    };
    assert!(matches!(
        rejected(attach(&mut h, 8)),
        Rejection::Exclusive(_)
    ));
    let consumer = match attach(&mut h, 7) {
        Outcome::Attached(id) => id,
        other => panic!("the owner's attach answered {other:?}"),
    };
    h.publish("tmp.1", &[None, None]);
    let idle_until = h.state.next_deadline().expect("tmp.2 expires");

    // Past tmp.2's time: it goes; tmp.1 has a consumer and stays.
    h.stamp_ms = idle_until;
    h.apply(Command::Tick);
    assert_eq!(topic_names(&h), vec!["tmp.1".to_string()]);
    assert_eq!(h.state.next_deadline(), None);

    // Its consumer goes: the clock starts, and runs out 1,000 ms on.
    h.apply(Command::Detach { consumer });
    let deadline = h.state.next_deadline().expect("tmp.1 now expires");
    assert_eq!(deadline, h.stamp_ms + 1_000);
    h.stamp_ms = deadline - 2;
    h.apply(Command::Tick);
    assert_eq!(topic_names(&h), vec!["tmp.1".to_string()], "not yet");
    h.stamp_ms = deadline;
    h.apply(Command::Tick);
    assert!(topic_names(&h).is_empty());
    assert_eq!(h.state.oldest_body(), None, "its messages went with it");
}

/// Publishes to `topic` one message per (key, delay in ms; 0: none).
fn publish_delayed(h: &mut Harness, topic: &str, messages: &[(Option<&str>, u32)]) {
    let messages = messages
        .iter()
        .map(|(key, delay_ms)| NewMessage {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            payload: Bytes::from_static(b"m"),
            headers: Default::default(),
            properties: (*delay_ms > 0).then(|| {
                Box::new(Properties {
                    delay_ms: Some(*delay_ms),
                    ..Properties::default()
                })
            }),
        })
        .collect();
    h.apply(Command::Publish {
        producer: None,
        topic: topic.into(),
        messages,
    });
}

fn offsets(deliveries: Vec<(ConsumerId, u32, u64, u32)>) -> Vec<u64> {
    deliveries
        .into_iter()
        .map(|(_, _, offset, _)| offset)
        .collect()
}

/// A delayed message is never handed out before its time, by the state
/// machine's clock: the messages after it pass it, except, in the modes
/// that keep order per key, the later ones of its own key, which wait for
/// it; at its time a `Tick` hands it out first, as a first attempt.
#[test]
fn a_delayed_message_waits_for_its_time_and_holds_back_only_its_key() {
    for (mode, later_a_waits) in [
        (Mode::Failover, true),
        (Mode::KeyShared, true),
        (Mode::Shared, false),
    ] {
        let mut h = Harness::new();
        h.topic("t", 1);
        // Offsets: 0 "a" delayed 1 s, 1 "a", 2 "b", 3 keyless.
        publish_delayed(
            &mut h,
            "t",
            &[
                (Some("a"), 1_000),
                (Some("a"), 0),
                (Some("b"), 0),
                (None, 0),
            ],
        );
        let published_ms = h.stamp_ms;
        let config = SubscriptionConfig {
            mode,
            ..SubscriptionConfig::default()
        };
        h.attach_with("t", "s", 10, SESSION, Some(config));
        let first = offsets(h.deliveries());
        let expected: &[u64] = if later_a_waits { &[2, 3] } else { &[1, 2, 3] };
        assert_eq!(first, expected, "{mode:?}: before the delay ends");
        let due = h
            .state
            .next_deadline()
            .expect("a deadline for the delayed message");
        assert_eq!(due, published_ms + 1_000, "{mode:?}");
        let ack = h.ack("t", "s", vec![(0, 0)]);
        assert!(
            matches!(rejected(ack), Rejection::NotDelivered { .. }),
            "{mode:?}: acking a delayed message never delivered"
        );

        h.stamp_ms = due - 2;
        h.apply(Command::Tick);
        assert!(h.deliveries().is_empty(), "{mode:?}: delivered early");
        h.stamp_ms = due - 1;
        h.apply(Command::Tick);
        let at_due = h.deliveries();
        let expected: &[u64] = if later_a_waits { &[0, 1] } else { &[0] };
        assert_eq!(offsets(at_due.clone()), expected, "{mode:?}: at its time");
        assert_eq!(at_due[0].3, 1, "{mode:?}: a delay is not a failed attempt");
    }
}

/// A delayed message's TTL counts from when it becomes due, and a
/// subscription created after the delay was deferred elsewhere still
/// waits for it: the time is the partition's, not one cursor's.
#[test]
fn a_delay_holds_for_every_subscription_and_its_ttl_starts_when_due() {
    let mut h = Harness::new();
    h.topic("t", 1);
    h.apply(Command::Publish {
        producer: None,
        topic: "t".into(),
        messages: vec![NewMessage {
            key: None,
            payload: Bytes::from_static(b"later"),
            headers: Default::default(),
            properties: Some(Box::new(Properties {
                delay_ms: Some(5_000),
                ttl_ms: Some(1_000),
                ..Properties::default()
            })),
        }],
    });
    h.attach("t", "first", 1, SESSION);
    assert!(h.deliveries().is_empty());
    h.stamp_ms += 3_000;
    h.attach("t", "second", 1, SESSION);
    assert!(
        h.deliveries().is_empty(),
        "a new subscription hands it out early"
    );
    // Due at 5 s, expiring at 6 s: between the two it goes out.
    h.stamp_ms += 2_500;
    h.apply(Command::Tick);
    assert_eq!(
        offsets(h.deliveries()),
        vec![0, 0],
        "both subscriptions, once due"
    );
}

/// A new subscription starts where asked in each partition: at an offset
/// (the nearest retained one if that is gone or not written yet), or at
/// the first message published at or after a time.
#[test]
fn a_subscription_replays_from_an_offset_or_a_time() {
    let mut h = Harness::new();
    h.topic("t", 1);
    let mut times = Vec::new();
    for _ in 0..5 {
        h.stamp_ms += 100;
        h.publish("t", &[None]);
        times.push(h.stamp_ms);
    }
    let first = |h: &mut Harness, subscription: &str, start: Start| {
        let config = SubscriptionConfig {
            start,
            ..SubscriptionConfig::default()
        };
        h.attach_with("t", subscription, 10, SESSION, Some(config));
        offsets(h.deliveries()).first().copied()
    };
    assert_eq!(first(&mut h, "from-2", Start::Offset(2)), Some(2));
    assert_eq!(first(&mut h, "from-time", Start::Time(times[3])), Some(3));
    assert_eq!(first(&mut h, "between", Start::Time(times[1] + 1)), Some(2));
    assert_eq!(first(&mut h, "before-all", Start::Time(0)), Some(0));
    assert_eq!(first(&mut h, "past-end", Start::Offset(99)), None);
    assert_eq!(first(&mut h, "future", Start::Time(u64::MAX)), None);
    h.publish("t", &[None]);
    let next: Vec<u64> = offsets(h.deliveries());
    assert!(
        next.contains(&5),
        "a subscription past the end gets what comes next"
    );
}

/// A drop-head topic takes every publish and drops its oldest messages
/// until it is within its limits again: each goes to the dead-letter topic
/// of every subscription that had not acked it (reason `maxlen`), leaves
/// every cursor, and gives its consumer the credit back (the invariants
/// check the credit after every command); a reject-publish topic refuses.
#[test]
fn a_drop_head_topic_drops_its_oldest_to_the_dead_letter_topic() {
    let mut h = Harness::new();
    h.topic("dlq", 1);
    h.apply(Command::CreateTopic {
        retention: Retention::UntilAcked,
        max_priority: 0,
        name: "t".into(),
        partitions: 2,
        limits: TopicLimits {
            max_messages: 3,
            max_bytes: 0,
            overflow: Overflow::DropHead,
        },
        message_ttl_ms: 0,
        fail_if_exists: true,
        owner: None,
        expires_ms: 0,
    });
    let config = SubscriptionConfig {
        dead_letter_topic: Some("dlq".into()),
        ..SubscriptionConfig::default()
    };
    // One consumer holding one message: the first, soon dropped.
    let consumer = h.attach_with("t", "s", 1, SESSION, Some(config));
    let first = h.publish("t", &[Some("a")]);
    assert_eq!(h.deliveries().len(), 1);
    h.stamp_ms += 10;
    h.publish("t", &[Some("b"), Some("c"), Some("a")]);
    assert_eq!(h.state.topics()[1].retained, 3, "within its limit again");
    assert!(h
        .state
        .partition("t", first[0].0)
        .expect("p")
        .get(first[0].1)
        .is_none());
    // Its consumer got the credit back and the next oldest.
    assert_eq!(h.deliveries().len(), 1);
    assert_eq!(h.state.consumer_in_flight(consumer), Some(1));
    let dlq = h.state.partition("dlq", 0).expect("dlq");
    assert_eq!(dlq.messages.len(), 1);
    let letter = h.message(dlq.get(0).expect("the dropped message"));
    assert_eq!(
        letter
            .headers
            .get("x-raftmq-dead-letter-reason")
            .map(String::as_str),
        Some(REASON_MAXLEN)
    );
    // Acking the dropped message is fine: it is gone as if acked.
    assert_eq!(h.ack("t", "s", vec![first[0]]), Outcome::Done);

    // Five more, in one publish: the five oldest go.
    h.stamp_ms += 10;
    h.publish("t", &[None; 5]);
    assert_eq!(h.state.topics()[1].retained, 3);
    assert_eq!(h.state.partition("dlq", 0).expect("dlq").messages.len(), 6);
}

/// Publishes one message per (key, priority) to `topic`: its position.
fn publish_prioritized(h: &mut Harness, topic: &str, messages: &[(&str, u32)]) -> Vec<(u32, u64)> {
    let messages = messages
        .iter()
        .map(|(key, priority)| NewMessage {
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            payload: Bytes::from(format!("{key}@{priority}")),
            headers: Default::default(),
            properties: Some(Box::new(Properties {
                priority: Some(*priority),
                ..Properties::default()
            })),
        })
        .collect();
    match h.apply(Command::Publish {
        producer: None,
        topic: topic.into(),
        messages,
    }) {
        Outcome::Published(positions) => positions,
        other => panic!("publish answered {other:?}"),
    }
}

/// Among deliverable messages the highest priority goes first (above the
/// topic's highest counts as it); within a priority, a key keeps its
/// order. Each level is a lane of the declared partitions.
#[test]
fn the_highest_priority_goes_first_and_a_key_keeps_its_order_within_one() {
    let mut h = Harness::new();
    h.apply(Command::CreateTopic {
        retention: Retention::UntilAcked,
        name: "p".into(),
        partitions: 2,
        limits: TopicLimits::default(),
        message_ttl_ms: 0,
        fail_if_exists: true,
        owner: None,
        expires_ms: 0,
        max_priority: 2,
    });
    assert_eq!(h.state.topics()[0].partitions, 2, "the declared count");
    let positions = publish_prioritized(
        &mut h,
        "p",
        &[("a", 0), ("a", 0), ("b", 1), ("a", 2), ("c", 9)],
    );
    let lane = |(partition, _): (u32, u64)| partition / 2;
    let lanes: Vec<u32> = positions.iter().copied().map(lane).collect();
    assert_eq!(
        lanes,
        [0, 0, 1, 2, 2],
        "each in its priority's lane, 9 capped at 2"
    );

    // One at a time: the highest waiting goes first, every time.
    h.attach("p", "s", 1, SESSION);
    let mut order = Vec::new();
    for _ in 0..positions.len() {
        let delivered = h.deliveries();
        assert_eq!(delivered.len(), 1);
        let (_, partition, offset, _) = delivered[0];
        let stored = h
            .state
            .partition("p", partition)
            .and_then(|p| p.get(offset));
        order.push(
            h.message(stored.expect("delivered from the partition"))
                .payload,
        );
        if order.len() == 2 {
            // A high one published now jumps the low ones still waiting.
            publish_prioritized(&mut h, "p", &[("d", 2)]);
        }
        h.ack("p", "s", vec![(partition, offset)]);
    }
    let order: Vec<String> = order
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let mut highest = order[..2].to_vec();
    highest.sort();
    assert_eq!(highest, ["a@2", "c@9"]);
    assert_eq!(order[2..], ["d@2", "b@1", "a@0"]);
    let last = h.deliveries();
    assert_eq!(last.len(), 1, "the second a@0 comes last");
}

/// A delayed message that comes due while an earlier message of its key
/// still waits for credit does not pass it: deferred messages take their
/// place among the new ones by offset, not with the redeliveries before
/// them (the simulation found this).
#[test]
fn a_delayed_message_due_later_does_not_pass_its_keys_earlier_one() {
    let mut h = Harness::new();
    h.topic("t", 1);
    h.attach("t", "s", 1, SESSION);
    publish_delayed(&mut h, "t", &[(Some("x"), 0)]);
    assert_eq!(offsets(h.deliveries()), [0], "the consumer's one credit");
    // 1: a, not delayed; 2: a, delayed 100 ms; both wait for credit.
    publish_delayed(&mut h, "t", &[(Some("a"), 0), (Some("a"), 100)]);
    h.stamp_ms += 200;
    h.apply(Command::Tick);
    assert!(h.deliveries().is_empty(), "no credit yet");
    h.ack("t", "s", vec![(0, 0)]);
    assert_eq!(
        offsets(h.deliveries()),
        [1],
        "the earlier one of the key first"
    );
    h.ack("t", "s", vec![(0, 1)]);
    assert_eq!(offsets(h.deliveries()), [2]);
}

/// A subscription may dead-letter through an exchange: a rejected message
/// goes to every topic the exchange routes it to, by the configured
/// routing key or else by the name of the topic it left; one the exchange
/// routes nowhere is dropped, as a rejected one without a dead-letter topic
/// is.
#[test]
fn dead_letters_go_through_a_dead_letter_exchange() {
    let mut h = Harness::new();
    for topic in ["t", "u", "by-topic", "by-key"] {
        h.topic(topic, 1);
    }
    declare_exchange(&mut h, "dlx", ExchangeKind::Direct, None);
    bind(&mut h, "dlx", "by-topic", "t");
    bind(&mut h, "dlx", "by-key", "failed");
    let through = |key: Option<&str>| SubscriptionConfig {
        dead_letter_exchange: Some("dlx".into()),
        dead_letter_routing_key: key.map(str::to_string),
        ..SubscriptionConfig::default()
    };
    let both = SubscriptionConfig {
        dead_letter_topic: Some("by-topic".into()),
        ..through(None)
    };
    let attach = |h: &mut Harness, topic: &str, config| {
        h.apply(Command::Attach {
            topic: topic.into(),
            subscription: "s".into(),
            prefetch: 10,
            session: SESSION,
            config: Some(config),
            client: 0,
        })
    };
    assert!(matches!(
        rejected(attach(&mut h, "t", both)),
        Rejection::Invalid(_)
    ));
    let missing = SubscriptionConfig {
        dead_letter_exchange: Some("nope".into()),
        ..SubscriptionConfig::default()
    };
    assert!(matches!(
        rejected(attach(&mut h, "t", missing)),
        Rejection::UnknownExchange(_)
    ));

    let reject = |h: &mut Harness, topic: &str| {
        h.apply(Command::Nack {
            topic: topic.into(),
            subscription: "s".into(),
            positions: vec![(0, 0)],
            requeue: false,
            delay_ms: 0,
        })
    };
    attach(&mut h, "t", through(None));
    h.publish("t", &[None]);
    h.deliveries();
    assert_eq!(reject(&mut h, "t"), Outcome::Done);
    let letter = h
        .state
        .partition("by-topic", 0)
        .and_then(|p| p.get(0))
        .cloned();
    let letter = h.message(&letter.expect("routed by the topic's name"));
    assert_eq!(
        letter
            .headers
            .get("x-raftmq-dead-letter-reason")
            .map(String::as_str),
        Some(REASON_REJECTED)
    );

    attach(&mut h, "u", through(Some("failed")));
    h.publish("u", &[None, None]);
    h.deliveries();
    assert_eq!(reject(&mut h, "u"), Outcome::Done);
    assert_eq!(
        h.state.partition("by-key", 0).map(|p| p.messages.len()),
        Some(1)
    );
    // Unbound: the exchange routes it nowhere, so it goes.
    h.apply(Command::Unbind {
        exchange: "dlx".into(),
        binding: Binding {
            topic: "by-key".into(),
            key: "failed".into(),
            arguments: Default::default(),
        },
    });
    h.apply(Command::Nack {
        topic: "u".into(),
        subscription: "s".into(),
        positions: vec![(0, 1)],
        requeue: false,
        delay_ms: 0,
    });
    assert_eq!(
        h.state.partition("by-key", 0).map(|p| p.messages.len()),
        Some(1)
    );
    assert_eq!(
        h.state.partition("u", 0).map(|p| p.messages.len()),
        Some(0),
        "dropped"
    );
}

/// A stream keeps what every subscription acked, so a new subscription
/// replays it; its oldest go once older than `max_age_ms` (at a tick) or
/// once it is past its limits, dead-lettered by no one.
#[test]
fn a_stream_keeps_acked_messages_until_they_age_or_overflow() {
    let mut h = Harness::new();
    h.apply(Command::CreateTopic {
        name: "s".into(),
        partitions: 1,
        limits: TopicLimits {
            max_messages: 4,
            max_bytes: 0,
            overflow: Overflow::RejectPublish,
        },
        message_ttl_ms: 0,
        fail_if_exists: true,
        owner: None,
        expires_ms: 0,
        max_priority: 0,
        retention: Retention::Stream { max_age_ms: 1_000 },
    });
    h.attach("s", "first", 10, SESSION);
    h.publish("s", &[None, None]);
    h.ack("s", "first", vec![(0, 0), (0, 1)]);
    h.deliveries();
    assert_eq!(h.state.topics()[0].retained, 2, "acked, and kept");
    h.attach("s", "replay", 10, SESSION);
    assert_eq!(offsets(h.deliveries()), [0, 1], "replayed from the start");

    // Past its limit of 4, publishes are taken and the oldest go.
    h.stamp_ms += 500;
    h.publish("s", &[None, None, None]);
    assert_eq!(h.state.partition("s", 0).map(|p| p.base), Some(1));
    assert_eq!(h.state.topics()[0].retained, 4);
    // Older than a second: at the tick its time brings, they go.
    let aging = h.state.next_deadline().expect("the oldest's age limit");
    h.stamp_ms = aging - 1;
    h.apply(Command::Tick);
    assert_eq!(h.state.partition("s", 0).map(|p| p.base), Some(2));
    h.stamp_ms += 1_000;
    h.apply(Command::Tick);
    assert_eq!(h.state.topics()[0].retained, 0, "all of them aged");
}

/// The priority cap and the lane cap are crossed: `PRIORITY_MAX` is
/// accepted and one more refused, and so are partitions whose lanes pass
/// `PARTITIONS_MAX`.
#[test]
fn priorities_and_their_lanes_are_capped() {
    let mut h = Harness::new();
    let create = |h: &mut Harness, name: &str, partitions, max_priority| {
        h.apply(Command::CreateTopic {
            name: name.into(),
            partitions,
            limits: TopicLimits::default(),
            message_ttl_ms: 0,
            fail_if_exists: true,
            owner: None,
            expires_ms: 0,
            max_priority,
            retention: Retention::UntilAcked,
        })
    };
    assert!(matches!(
        create(&mut h, "ten", 1, PRIORITY_MAX),
        Outcome::Declared { .. }
    ));
    let over = create(&mut h, "eleven", 1, PRIORITY_MAX + 1);
    assert!(matches!(rejected(over), Rejection::Invalid(_)));
    let lanes = PARTITIONS_MAX / (u32::from(PRIORITY_MAX) + 1);
    let fits = create(&mut h, "fits", lanes, PRIORITY_MAX);
    assert!(matches!(fits, Outcome::Declared { .. }));
    let too_wide = create(&mut h, "wide", lanes + 1, PRIORITY_MAX);
    assert!(matches!(rejected(too_wide), Rejection::Invalid(_)));
}

fn tally(h: &Harness, topic: &str, subscription: &str) -> Tally {
    h.state
        .topic_stats()
        .into_iter()
        .find(|t| t.name == topic)
        .and_then(|t| t.subscriptions.into_iter().find(|s| s.name == subscription))
        .map(|s| s.tally)
        .expect("the subscription")
}

/// The counts behind the metrics' rates: deliveries (redeliveries
/// included), acks counted once however often repeated, nacks, dead
/// letters and expiries, and the messages appended to each topic.
#[test]
fn a_subscription_tallies_deliveries_settlements_dead_letters_and_expiries() {
    let mut h = Harness::new();
    dead_letter_setup(&mut h, 0);
    assert_eq!(nack(&mut h, true, 0), Outcome::Done);
    assert_eq!(h.deliveries().len(), 1, "redelivered");
    assert_eq!(nack(&mut h, false, 0), Outcome::Done);
    let seen = tally(&h, "t", "s");
    assert_eq!((seen.delivered, seen.nacked, seen.dead_lettered), (2, 2, 1));

    let positions = h.publish("t", &[None, None]);
    assert_eq!(h.deliveries().len(), 2);
    assert_eq!(h.ack("t", "s", positions.clone()), Outcome::Done);
    assert_eq!(h.ack("t", "s", positions), Outcome::Done, "idempotent");
    assert_eq!(tally(&h, "t", "s").acked, 2, "an ack repeated counts once");

    let seen = tally(&h, "t", "s");
    assert_eq!((seen.delivered, seen.nacked, seen.dead_lettered), (4, 2, 1));

    h.topic("e", 1);
    publish_with_ttl(&mut h, "e", Some(100));
    h.stamp_ms += 100;
    h.attach("e", "late", 10, SESSION);
    assert!(h.deliveries().is_empty(), "expired before anyone took it");
    let seen = tally(&h, "e", "late");
    assert_eq!(
        (seen.expired, seen.dead_lettered, seen.delivered),
        (1, 0, 0)
    );
    let stats = h.state.topic_stats();
    let published = |name: &str| stats.iter().find(|t| t.name == name).map(|t| t.published);
    assert_eq!(published("t"), Some(3));
    assert_eq!(published("dlq"), Some(1), "the dead letter");
    assert_eq!(published("e"), Some(1));
}
