//! Deliberate bugs, to prove that the simulation's checkers can fail.
//!
//! Compiled in only with the `planted-bugs` feature, and even then off
//! until `plant` switches one on (the simulation does so in its own
//! process). Without the feature, `active` is a constant `false` and every
//! planted branch compiles away. Bugs inside the state machine are its own
//! quirks (`machine::quirks`), which `plant` switches: the machine never
//! looks here.

/// One deliberate bug, named for what it breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Bug {
    /// An ack command answers OK but leaves its last position unacked: that
    /// message is delivered again after a detach (checker: acked never
    /// redelivered).
    AckDropsLast = 1,
    /// Dispatch hands out new offsets before returned ones (checker: order
    /// per key).
    ReturnedLast = 2,
    /// Dispatch lets a consumer hold one more than its prefetch (checker:
    /// credit).
    PrefetchPlusOne = 3,
    /// Each replica applies entries stamped with its own clock instead of
    /// the leader's (checker: replicas agree). Planted in the Raft layer's
    /// state machine adapter: the state machine itself reads no clock.
    LocalClockInApply = 4,
    /// Dispatch silently acks keyless messages at offsets divisible by 8
    /// instead of delivering them (checker: no lost confirmed message).
    SkipMessage = 5,
    /// The node delivers keyless messages at offsets divisible by 16 with a
    /// corrupted payload (checker: no phantom). Planted where bodies are
    /// read from the log: the state machine holds none.
    CorruptPayload = 6,
    /// Idempotent producers' repeats are stored again (checker: stored
    /// once).
    StoreRepeats = 7,
    /// Every node draws its election timeout from one tick window and split
    /// votes are never broken: elections repeat in lockstep (checker: a
    /// leader soon after healing).
    ElectionLockstep = 8,
    /// Log reads return at most 4,096 entries, as they once did: a node
    /// restarted with more than that to re-apply stops its Raft core
    /// (checker: every restarted node serves again).
    ReadCap = 9,
    /// Every vote request a peer answers reads, on the candidate's side, as
    /// a grant of the vote it asked for (a wire bug): two candidates of one
    /// term both win (checker: one leader per term).
    VotesAlwaysGranted = 10,
    /// A follower sent a snapshot restores the older one on its own disk
    /// instead (checker: applied index never goes back).
    StaleSnapshotInstall = 11,
    /// A publish stores its messages last first, each confirmed at its own
    /// place (checker: a producer's messages of one key stored in the order
    /// sent).
    BatchReversed = 12,
    /// The log deletes segments behind the snapshot whether or not retained
    /// messages' bodies are in them (checker: every node catches up after
    /// healing: a follower sent the snapshot never gets the bodies it
    /// needs, those of the messages pinned at the start of the log).
    ReleaseReferenced = 13,
    /// The compactor copies each relocated body to its neighbour's place
    /// (checker: a message is delivered as it was confirmed).
    RelocateShifted = 14,
    /// A delayed message whose time is less than 300 ms off is handed out
    /// at once (checker: no delayed message before its time).
    DelayEndsEarly = 15,
    /// An exchange routes each message to its first matching topic only
    /// (checker: a fanout reaches every bound topic).
    RouteFirstOnly = 16,
}

impl Bug {
    pub const ALL: [Bug; 16] = [
        Bug::AckDropsLast,
        Bug::ReturnedLast,
        Bug::PrefetchPlusOne,
        Bug::LocalClockInApply,
        Bug::SkipMessage,
        Bug::CorruptPayload,
        Bug::StoreRepeats,
        Bug::ElectionLockstep,
        Bug::ReadCap,
        Bug::VotesAlwaysGranted,
        Bug::StaleSnapshotInstall,
        Bug::BatchReversed,
        Bug::ReleaseReferenced,
        Bug::RelocateShifted,
        Bug::DelayEndsEarly,
        Bug::RouteFirstOnly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::AckDropsLast => "ack-drops-last",
            Bug::ReturnedLast => "returned-last",
            Bug::PrefetchPlusOne => "prefetch-plus-one",
            Bug::LocalClockInApply => "local-clock-in-apply",
            Bug::SkipMessage => "skip-message",
            Bug::CorruptPayload => "corrupt-payload",
            Bug::StoreRepeats => "store-repeats",
            Bug::ElectionLockstep => "election-lockstep",
            Bug::ReadCap => "read-cap",
            Bug::VotesAlwaysGranted => "votes-always-granted",
            Bug::StaleSnapshotInstall => "stale-snapshot-install",
            Bug::BatchReversed => "batch-reversed",
            Bug::ReleaseReferenced => "release-referenced",
            Bug::RelocateShifted => "relocate-shifted",
            Bug::DelayEndsEarly => "delay-ends-early",
            Bug::RouteFirstOnly => "route-first-only",
        }
    }

    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}

#[cfg(feature = "planted-bugs")]
impl Bug {
    /// The state machine's quirk this bug is, if it lives there.
    fn quirk(self) -> Option<crate::machine::quirks::Quirk> {
        use crate::machine::quirks::Quirk;
        match self {
            Bug::AckDropsLast => Some(Quirk::AckDropsLast),
            Bug::ReturnedLast => Some(Quirk::ReturnedLast),
            Bug::PrefetchPlusOne => Some(Quirk::PrefetchPlusOne),
            Bug::SkipMessage => Some(Quirk::SkipMessage),
            Bug::StoreRepeats => Some(Quirk::StoreRepeats),
            Bug::BatchReversed => Some(Quirk::BatchReversed),
            Bug::DelayEndsEarly => Some(Quirk::DelayEndsEarly),
            Bug::RouteFirstOnly => Some(Quirk::RouteFirstOnly),
            Bug::LocalClockInApply
            | Bug::CorruptPayload
            | Bug::ElectionLockstep
            | Bug::ReadCap
            | Bug::VotesAlwaysGranted
            | Bug::StaleSnapshotInstall
            | Bug::ReleaseReferenced
            | Bug::RelocateShifted => None,
        }
    }
}

#[cfg(feature = "planted-bugs")]
static PLANTED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Switches `bug` on for this process.
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Bug) {
    PLANTED.store(bug as u8, std::sync::atomic::Ordering::Relaxed);
    crate::machine::quirks::switch_on(bug.quirk());
}

/// Whether `bug` is switched on.
#[cfg(feature = "planted-bugs")]
pub fn active(bug: Bug) -> bool {
    PLANTED.load(std::sync::atomic::Ordering::Relaxed) == bug as u8
}

/// Whether `bug` is switched on: never, in a build without the feature.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub const fn active(_bug: Bug) -> bool {
    false
}
