//! The checks several commands share: names and counts.

use super::limits::NAME_BYTES_MAX;
use super::rejection::Rejection;

/// A topic's, subscription's or exchange's name: 1 to `NAME_BYTES_MAX`
/// characters of A-Z a-z 0-9 . _ -.
pub fn check_name(what: &str, name: &str) -> Result<(), Rejection> {
    let valid = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Rejection::InvalidName {
            what: what.into(),
            name: name.into(),
        })
    }
}

/// Refuses one more of `what` when there are `count` of at most `max`.
pub fn check_limit(what: &str, count: usize, max: usize) -> Result<(), Rejection> {
    if count >= max {
        Err(Rejection::LimitReached {
            what: what.into(),
            max,
        })
    } else {
        Ok(())
    }
}
