//! Bounded, time-windowed memory: the only containers detector state grows in.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

/// Keys seen recently, each with a value, at most `cap` of them.
///
/// When full, a new key evicts the key that was inserted first (not the least recently
/// used one: that keeps every operation O(1)); [`Recent::evicted`] counts evictions. Each
/// remembered key has exactly one entry in `order`, so memory is O(cap).
#[derive(Debug)]
pub(crate) struct Recent<K, V> {
    /// Key -> (last seen, value).
    map: HashMap<K, (Duration, V)>,
    /// Keys with the time they were queued, roughly oldest first.
    order: VecDeque<(K, Duration)>,
    cap: usize,
    evicted: u64,
}

impl<K: Copy + Eq + Hash, V: Default> Recent<K, V> {
    /// An empty memory for at most `cap` keys (at least one).
    pub(crate) fn new(cap: usize) -> Self {
        Recent {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
            evicted: 0,
        }
    }

    /// Records `key` as seen at `at` and lets `update` change its value; returns whether
    /// the key was new.
    pub(crate) fn touch(&mut self, key: K, at: Duration, update: impl FnOnce(&mut V)) -> bool {
        let new = match self.map.entry(key) {
            Entry::Occupied(e) => {
                let (seen, value) = e.into_mut();
                *seen = (*seen).max(at);
                update(value);
                false
            }
            Entry::Vacant(e) => {
                update(&mut e.insert((at, V::default())).1);
                true
            }
        };
        if new {
            self.order.push_back((key, at));
            // The new key is at the back and the cap is at least one, so it stays.
            if self.map.len() > self.cap {
                self.evict_oldest();
            }
        }
        new
    }

    /// Forgets keys last seen before `cutoff`.
    pub(crate) fn expire(&mut self, cutoff: Duration) {
        while let Some(&(key, queued)) = self.order.front() {
            if queued >= cutoff {
                break;
            }
            self.order.pop_front();
            let last = self.map.get(&key).map(|(seen, _)| *seen);
            match last {
                // Seen again since it was queued: queue it anew rather than forget it.
                Some(seen) if seen >= cutoff => self.order.push_back((key, seen)),
                _ => {
                    self.map.remove(&key);
                }
            }
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((key, _)) = self.order.pop_front() {
            self.map.remove(&key);
            self.evicted += 1;
        }
    }

    /// Keys remembered.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Keys evicted because the memory was full.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Every remembered key with its value.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (_, v))| (k, v))
    }
}

/// Slots per window in [`Counts`]: the window slides in steps of 1/16 of its length.
const SLOTS: u32 = 16;

/// Sums of `N` counters over a sliding window, in a fixed number of slots.
#[derive(Debug)]
pub(crate) struct Counts<const N: usize> {
    window: Duration,
    slot: Duration,
    /// (slot index, counters), oldest first; at most `SLOTS + 1` entries.
    slots: VecDeque<(u64, [u64; N])>,
}

impl<const N: usize> Counts<N> {
    /// Empty counters over `window`.
    pub(crate) fn new(window: Duration) -> Self {
        let slot = (window / SLOTS).max(Duration::from_millis(1));
        Counts {
            window,
            slot,
            slots: VecDeque::new(),
        }
    }

    fn index(&self, at: Duration) -> u64 {
        u64::try_from(at.as_nanos() / self.slot.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Adds `values` at `at`, re-slicing if the window changed, and returns the sums over
    /// the window ending at `at`.
    pub(crate) fn add(&mut self, window: Duration, at: Duration, values: [u64; N]) -> [u64; N] {
        if window != self.window {
            *self = Counts::new(window);
        }
        let index = self.index(at);
        match self.slots.back_mut() {
            Some((last, counts)) if *last >= index => {
                for (c, v) in counts.iter_mut().zip(values) {
                    *c = c.saturating_add(v);
                }
            }
            _ => self.slots.push_back((index, values)),
        }
        self.sums(at)
    }

    /// Sums over the window ending at `now`, dropping older slots.
    pub(crate) fn sums(&mut self, now: Duration) -> [u64; N] {
        let oldest = self.index(now.saturating_sub(self.window));
        while self.slots.front().is_some_and(|(i, _)| *i < oldest) {
            self.slots.pop_front();
        }
        let mut sums = [0u64; N];
        for (_, counts) in &self.slots {
            for (s, c) in sums.iter_mut().zip(counts) {
                *s = s.saturating_add(*c);
            }
        }
        sums
    }

    /// Whether nothing is counted.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn recent_evicts_the_first_inserted_key_when_full() {
        let mut recent: Recent<u32, ()> = Recent::new(3);
        for k in 0..3 {
            assert!(recent.touch(k, secs(k.into()), |_| ()));
        }
        assert!(
            !recent.touch(0, secs(9), |_| ()),
            "a remembered key is not new"
        );
        assert!(recent.touch(7, secs(10), |_| ()));
        assert_eq!(recent.len(), 3);
        assert_eq!(recent.evicted(), 1);
        assert!(
            recent.touch(0, secs(11), |_| ()),
            "key 0 was inserted first, so it went"
        );
    }

    #[test]
    fn recent_expires_keys_not_seen_since_the_cutoff_and_keeps_refreshed_ones() {
        let mut recent: Recent<u32, ()> = Recent::new(10);
        recent.touch(1, secs(0), |_| ());
        recent.touch(2, secs(1), |_| ());
        recent.touch(1, secs(50), |_| ());
        recent.expire(secs(10));
        assert_eq!(recent.len(), 1);
        assert!(!recent.touch(1, secs(51), |_| ()));
        recent.expire(secs(100));
        assert_eq!(recent.len(), 0);
        assert_eq!(recent.evicted(), 0, "expiry is not eviction");
    }

    #[test]
    fn counts_sum_only_the_last_window() {
        let mut counts: Counts<2> = Counts::new(secs(16));
        assert_eq!(counts.add(secs(16), secs(0), [1, 0]), [1, 0]);
        assert_eq!(counts.add(secs(16), secs(8), [1, 1]), [2, 1]);
        assert_eq!(counts.add(secs(16), secs(20), [1, 0]), [2, 1]);
        assert_eq!(counts.sums(secs(100)), [0, 0]);
        assert!(counts.is_empty());
    }

    #[test]
    fn counts_keep_a_bounded_number_of_slots() {
        let mut counts: Counts<1> = Counts::new(secs(16));
        for ms in 0..100_000u64 {
            counts.add(secs(16), Duration::from_millis(ms * 7), [1]);
        }
        assert!(counts.slots.len() <= SLOTS as usize + 1);
    }
}
