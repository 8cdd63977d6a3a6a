//! The state machine's rules, checked by applying commands directly: no
//! Raft, no network, no clock.

use bytes::Bytes;

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
}

impl Harness {
    fn new() -> Self {
        Harness {
            state: State::default(),
            effects: Vec::new(),
            stamp_ms: 1_000,
        }
    }

    fn apply(&mut self, command: Command) -> Outcome {
        self.stamp_ms += 1;
        let request = Request {
            stamp_ms: self.stamp_ms,
            commands: vec![command],
        };
        let mut outcomes = self.state.apply(request, &mut self.effects);
        assert_eq!(outcomes.len(), 1);
        if let Err(broken) = self.state.check_invariants() {
            panic!("invariant broken: {broken}");
        }
        outcomes.remove(0)
    }

    fn topic(&mut self, name: &str, partitions: u32) {
        let outcome = self.apply(Command::CreateTopic {
            name: name.into(),
            partitions,
        });
        assert_eq!(outcome, Outcome::Done);
    }

    fn publish(&mut self, topic: &str, keys: &[Option<&str>]) -> Vec<(u32, u64)> {
        let messages = keys
            .iter()
            .enumerate()
            .map(|(i, key)| NewMessage {
                key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                payload: Bytes::from(format!("m{i}")),
                headers: Default::default(),
            })
            .collect();
        match self.apply(Command::Publish {
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
        match self.apply(Command::Attach {
            topic: topic.into(),
            subscription: subscription.into(),
            prefetch,
            session,
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
        ("", 1, Some("invalid topic name")),
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
            name: name.to_string(),
            partitions: *partitions,
        });
        match (error, outcome) {
            (None, Outcome::Done) => {}
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
    let hash = |key: &str| raftmq_proto::partition_for_key(key.as_bytes(), 4);
    assert_eq!(positions[0].0, hash("k1"));
    assert_eq!(positions[1].0, hash("k2"));
    assert_eq!(positions[2], (hash("k1"), positions[0].1 + 1));
    // Keyless messages go round robin over every partition.
    let mut keyless: Vec<u32> = positions[3..].iter().map(|p| p.0).collect();
    keyless.sort();
    assert_eq!(keyless, vec![0, 1, 2, 3]);
    assert_eq!(
        rejected(h.apply(Command::Publish {
            topic: "nope".into(),
            messages: vec![]
        })),
        Rejection::Empty("publish batch".into())
    );
    let unknown = h.apply(Command::Publish {
        topic: "nope".into(),
        messages: vec![NewMessage {
            key: None,
            payload: Bytes::from_static(b"x"),
            headers: Default::default(),
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
    };
    for stamp_ms in [5_000, 3_000] {
        let request = Request {
            stamp_ms,
            commands: vec![Command::Publish {
                topic: "t".into(),
                messages: vec![message.clone()],
            }],
        };
        h.state.apply(request, &mut h.effects);
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
            name: "t".into(),
            partitions: 3,
        },
        Command::Attach {
            topic: "t".into(),
            subscription: "s".into(),
            prefetch: 4,
            session: SESSION,
        },
        Command::Publish {
            topic: "t".into(),
            messages: (0..20)
                .map(|i| NewMessage {
                    key: (i % 3 != 0).then(|| Bytes::from(format!("k{}", i % 5))),
                    payload: Bytes::from(format!("p{i}")),
                    headers: Default::default(),
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
