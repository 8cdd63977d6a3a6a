//! Deliberate departures from the rules, to prove that the simulation's
//! checkers can fail. The machine owns the switches, so it never depends on
//! the node's `planted` module: that module's `plant` flips them, and only
//! in a build with the `planted-bugs` feature. Without it `on` is a constant
//! `false` and every quirk compiles away.

#[cfg(feature = "planted-bugs")]
use std::sync::atomic::Ordering;

/// One departure, named for the rule it breaks (the planted `Bug` that
/// switches it on says which checker catches it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Quirk {
    /// An ack answers OK but leaves its last position unacked.
    AckDropsLast = 1,
    /// Dispatch hands out new offsets before returned ones.
    ReturnedLast = 2,
    /// A consumer may hold one more message than its prefetch.
    PrefetchPlusOne = 3,
    /// Keyless messages at offsets divisible by 8 are acked, not delivered.
    SkipMessage = 5,
    /// An idempotent producer's repeat is stored again.
    StoreRepeats = 7,
    /// A publish stores its messages last first (each still confirmed at
    /// its own place).
    BatchReversed = 8,
    /// A delayed message less than 300 ms from its time counts as due.
    DelayEndsEarly = 9,
    /// An exchange routes a message to its first matching topic only.
    RouteFirstOnly = 10,
}

#[cfg(feature = "planted-bugs")]
static SWITCHED_ON: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Switches `quirk` on for this process, and every other one off.
#[cfg(feature = "planted-bugs")]
pub fn switch_on(quirk: Option<Quirk>) {
    SWITCHED_ON.store(quirk.map_or(0, |q| q as u8), Ordering::Relaxed);
}

/// Whether `quirk` is switched on.
#[cfg(feature = "planted-bugs")]
pub fn on(quirk: Quirk) -> bool {
    SWITCHED_ON.load(Ordering::Relaxed) == quirk as u8
}

/// Whether `quirk` is switched on: never, in a build without the feature.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub const fn on(_quirk: Quirk) -> bool {
    false
}
