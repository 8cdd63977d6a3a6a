//! Limits the state machine enforces. They are part of the replicated rules:
//! changing one changes what every replica accepts, so it needs a machine
//! version bump.

/// Longest topic or subscription name, in bytes.
pub const NAME_BYTES_MAX: usize = 255;
/// Most partitions one topic may have.
pub const PARTITIONS_MAX: u32 = 1024;
/// Highest priority a topic may declare (RabbitMQ advises at most 10
/// levels of `x-max-priority` too): each level is a lane of partitions.
pub const PRIORITY_MAX: u8 = 10;
/// Most topics in a cluster.
pub const TOPICS_MAX: usize = 10_000;
/// Most exchanges in a cluster.
pub const EXCHANGES_MAX: usize = 10_000;
/// Most bindings on one exchange: a publish to it compares each.
pub const BINDINGS_PER_EXCHANGE_MAX: usize = 10_000;
/// Longest routing key or binding key, in bytes (AMQP's short string).
pub const ROUTING_KEY_BYTES_MAX: usize = 255;
/// Most arguments on one headers binding.
pub const BINDING_ARGUMENTS_MAX: usize = 32;
/// Most subscriptions on one topic.
pub const SUBSCRIPTIONS_PER_TOPIC_MAX: usize = 1_000;
/// Most consumers attached at once, cluster wide.
pub const CONSUMERS_MAX: usize = 100_000;
/// Largest prefetch a consumer may ask for.
pub const PREFETCH_MAX: u32 = 10_000;
/// How far past its ack floor a subscription's dispatch may run in one
/// partition: bounds the acked-offsets set kept above the floor.
pub const DISPATCH_WINDOW_MAX: u64 = 100_000;
/// How many candidates dispatch looks at per partition when the next ones
/// must wait (key-shared: their key's consumer has no credit).
pub const DISPATCH_LOOKAHEAD_MAX: u64 = 256;
/// Idempotent producers remembered per topic; past it the longest idle one
/// is forgotten.
pub const PRODUCERS_PER_TOPIC_MAX: usize = 1_000;
/// Positions remembered per producer for answering retries: at least what a
/// producer may have unconfirmed (the client's window x batch).
pub const PRODUCER_POSITIONS_MAX: usize = 16_384;
/// Most positions in one ack or nack command.
pub const POSITIONS_PER_COMMAND_MAX: usize = 10_000;

/// The rules version this build applies; snapshots carry it. 2: a topic's
/// retained bytes count headers too (`raftmq_rules::message_bytes`). 3:
/// messages are records pointing at their bodies in the log. 4: the
/// leader relocates old bodies (`Command::Relocate`). 5: exchanges and
/// bindings. 6: temporary topics, delays, priorities, overflow, streams
/// and dead-letter exchanges.
pub const MACHINE_VERSION: u32 = 6;
