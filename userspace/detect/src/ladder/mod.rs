//! The enforcement ladder: turns detections into decisions to apply and lift actions.
//!
//! Pure logic over detections and a caller-supplied clock, with no kernel and no database:
//! the daemon feeds it what `detect` found and carries out the [`Decision`]s it returns
//! (kernel maps for throttle and block, the store for flags and suspensions).
//!
//! Time is a [`Duration`](std::time::Duration) since an epoch the caller picks (unix time or
//! daemon start); only differences matter, so the ladder is deterministic under test.

mod decision;
mod state;

#[cfg(test)]
mod tests;

pub use decision::{Decision, DetectionKey, Target};
pub use state::{ActiveEntry, Ladder, LadderStats, DEFAULT_MAX_ACTIVE, DEFAULT_MAX_TRACKED};
