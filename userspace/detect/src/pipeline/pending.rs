//! Connection attempts waiting for their answer.
//!
//! The programs report a tenant's first contact with an endpoint (an ATTEMPT event) and,
//! separately, its answer (an OUTCOME event); an attempt nobody answers sends nothing
//! more. This table pairs the two: an attempt waits until its outcome arrives or
//! [`TIMEOUT`] has passed since it was made, when it counts as [`Outcome::NoAnswer`].
//! Either way it becomes one [`Attempt`] fact timed at the attempt's start.
//!
//! The table holds at most [`CAPACITY`] attempts. When it is full, the oldest waiting
//! attempt is resolved early as unanswered (counted in [`PendingStats::evicted`]): a
//! failure that may not be one, which can only make the scan test more sensitive, never
//! blind. An outcome without a waiting attempt (its ATTEMPT was lost to the event budget,
//! or came after the timeout, or is still in the attempt log: the two travel apart) is
//! counted in [`PendingStats::orphans`]; the caller still uses it, as the programs only
//! report answers to first contacts. Its key is remembered for [`TIMEOUT`] (at most
//! [`EARLY_CAPACITY`] keys), so the attempt arriving after its answer is not made to
//! wait again ([`PendingStats::answered_first`]).
//!
//! The programs keep their own pending table, direct-mapped by the attempt's contact
//! key, and overwrite a slot without reading it. This table predicts the slots: an
//! attempt whose slot a newer one took can no longer be matched with its answer by the
//! programs, so it leaves unreported ([`PendingStats::overwritten`]) rather than time
//! out as a failure it may not be.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use warden_common::{
    facts::{contact_key, contact_tag, fold_addr, pending_slot},
    proto,
};

use crate::{Attempt, Outcome, Proto};
use warden_policy::tenant::TenantSlot;

/// Answers remembered at once whose attempt had not arrived.
pub const EARLY_CAPACITY: usize = 1 << 16;

/// How long an attempt waits for its answer. A SYN-ACK, RST or ICMP error comes back
/// within one round trip; 500 ms covers every terrestrial path and stays below TCP's
/// first SYN retransmission (1 s), so a scan of silent hosts is judged within about a
/// second.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// How late an answer may reach the pipeline after the programs wrote it: attempts and
/// their answers both come through the attempt log, which the daemon reads every 10 ms
/// (`warden_dataplane::events::LOG_POLL`) when nothing else wakes it. The pipeline
/// resolves an attempt as unanswered only once [`TIMEOUT`] and this much more have
/// passed ([`Pending::expire`] is given the time this much earlier), so an answer that
/// came in time is never read after its attempt was called unanswered.
pub const ANSWER_LATENESS: Duration = Duration::from_millis(20);

/// Attempts waiting at once, over all tenants. Far more than the programs' event budget
/// lets arrive within [`TIMEOUT`] (2,000 a second per tenant).
pub const CAPACITY: usize = 1 << 20;

/// What identifies an attempt: the tenant and the remote endpoint (the programs' contact
/// key has no local address either).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PendingKey {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// The protocol.
    pub proto: Proto,
    /// The remote address.
    pub remote: IpAddr,
    /// The remote port (0 for ICMP).
    pub port: u16,
}

impl PendingKey {
    /// The slot of this attempt in the programs' pending table.
    pub fn kernel_slot(&self) -> u32 {
        let (number, addr) = match self.remote {
            IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                (proto::ICMP, b)
            }
            IpAddr::V6(a) => (proto::ICMPV6, a.octets()),
        };
        let number = match self.proto {
            Proto::Tcp => proto::TCP,
            Proto::Udp => proto::UDP,
            Proto::Icmp => number,
        };
        pending_slot(contact_key(
            self.slot.0,
            contact_tag::OUT,
            number,
            self.port,
            fold_addr(&addr),
        ))
    }

    /// The attempt fact for this key, started at `at`, ended with `outcome`.
    pub fn attempt(&self, at: Duration, outcome: Outcome) -> Attempt {
        Attempt {
            slot: self.slot,
            remote: self.remote,
            port: self.port,
            proto: self.proto,
            outcome,
            at,
        }
    }
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingStats {
    /// Attempts answered in time.
    pub answered: u64,
    /// Attempts that timed out unanswered.
    pub timed_out: u64,
    /// Attempts resolved early as unanswered because the table was full.
    pub evicted: u64,
    /// Outcomes that found no waiting attempt.
    pub orphans: u64,
    /// Attempts reported again while the first was still waiting (ignored).
    pub duplicates: u64,
    /// Attempts whose slot in the programs' pending table a newer attempt took before
    /// the answer (dropped unreported: the programs can no longer match the answer).
    pub overwritten: u64,
    /// Attempts that arrived after their answer (already reported with it).
    pub answered_first: u64,
    /// Attempts Warden's own enforcement dropped (reported at once, never waiting).
    pub dropped: u64,
}

/// Attempts waiting for their answer, oldest first.
#[derive(Debug)]
pub struct Pending {
    /// Waiting attempts: the sequence number of their queue entry and their start.
    waiting: HashMap<PendingKey, (u64, Duration)>,
    /// Arrival order. Entries whose attempt was answered stay until they reach the front
    /// (they no longer match `waiting`), so answering costs no search.
    order: VecDeque<(u64, PendingKey, Duration)>,
    next: u64,
    capacity: usize,
    /// The programs' pending slot of each waiting attempt.
    slots: HashMap<u32, PendingKey>,
    /// Keys of orphan answers, with when they came, oldest first in `early_order`.
    early: HashMap<PendingKey, Duration>,
    early_order: VecDeque<(PendingKey, Duration)>,
    stats: PendingStats,
}

impl Default for Pending {
    fn default() -> Self {
        Pending::new(CAPACITY)
    }
}

impl Pending {
    /// A table holding at most `capacity` attempts.
    pub fn new(capacity: usize) -> Pending {
        Pending {
            waiting: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
            capacity: capacity.max(1),
            slots: HashMap::new(),
            early: HashMap::new(),
            early_order: VecDeque::new(),
            stats: PendingStats::default(),
        }
    }

    /// An attempt at `key` started at `at`. Returns the attempt resolved early to make
    /// room, if the table was full.
    pub fn insert(&mut self, key: PendingKey, at: Duration) -> Option<Attempt> {
        if self.waiting.contains_key(&key) {
            self.stats.duplicates += 1;
            return None;
        }
        if self.early.remove(&key).is_some() {
            self.stats.answered_first += 1;
            return None;
        }
        let slot = key.kernel_slot();
        if let Some(older) = self.slots.insert(slot, key) {
            if self.waiting.remove(&older).is_some() {
                self.stats.overwritten += 1;
            }
        }
        let evicted = if self.waiting.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        if evicted.is_some() {
            self.stats.evicted += 1;
        }
        let seq = self.next;
        self.next += 1;
        self.waiting.insert(key, (seq, at));
        self.order.push_back((seq, key, at));
        self.compact();
        evicted
    }

    /// The answer to the attempt at `key`, come at `at`: the attempt with its outcome, or
    /// `None` when no attempt waits (counted as an orphan, and remembered so the attempt
    /// arriving later does not wait again).
    pub fn resolve(&mut self, key: PendingKey, outcome: Outcome, at: Duration) -> Option<Attempt> {
        match self.waiting.remove(&key) {
            Some((_, at)) => {
                self.release_slot(&key);
                self.stats.answered += 1;
                Some(key.attempt(at, outcome))
            }
            None => {
                self.stats.orphans += 1;
                self.remember_early(key, at);
                None
            }
        }
    }

    /// Counts an attempt Warden's enforcement dropped: it never waits here.
    pub fn note_dropped(&mut self) {
        self.stats.dropped += 1;
    }

    /// Remembers an orphan answer's key until [`TIMEOUT`] after `at`.
    fn remember_early(&mut self, key: PendingKey, at: Duration) {
        if self.early.len() >= EARLY_CAPACITY {
            while let Some((k, t)) = self.early_order.pop_front() {
                if self.early.get(&k) == Some(&t) {
                    self.early.remove(&k);
                    break;
                }
            }
        }
        self.early.insert(key, at);
        self.early_order.push_back((key, at));
        if self.early_order.len() > 2 * EARLY_CAPACITY {
            let early = &self.early;
            self.early_order.retain(|(k, t)| early.get(k) == Some(t));
        }
    }

    /// Frees the programs' slot of `key` in the prediction, if `key` still holds it.
    fn release_slot(&mut self, key: &PendingKey) {
        let slot = key.kernel_slot();
        if self.slots.get(&slot) == Some(key) {
            self.slots.remove(&slot);
        }
    }

    /// Resolves as unanswered every attempt made [`TIMEOUT`] or longer before `now`, oldest
    /// first.
    pub fn expire(&mut self, now: Duration) -> Vec<Attempt> {
        let mut out = Vec::new();
        while let Some(&(seq, key, at)) = self.order.front() {
            if now.saturating_sub(at) < TIMEOUT {
                break;
            }
            self.order.pop_front();
            if self.waiting.get(&key).is_some_and(|(s, _)| *s == seq) {
                self.waiting.remove(&key);
                self.release_slot(&key);
                self.stats.timed_out += 1;
                out.push(key.attempt(at, Outcome::NoAnswer));
            }
        }
        while let Some(&(key, at)) = self.early_order.front() {
            if now.saturating_sub(at) < TIMEOUT {
                break;
            }
            self.early_order.pop_front();
            if self.early.get(&key) == Some(&at) {
                self.early.remove(&key);
            }
        }
        out
    }

    /// Drops the attempts of a tenant that left the policy, unreported.
    pub fn forget(&mut self, slot: TenantSlot) {
        self.waiting.retain(|k, _| k.slot != slot);
        self.slots.retain(|_, k| k.slot != slot);
        self.early.retain(|k, _| k.slot != slot);
    }

    /// Attempts waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether no attempt waits.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Counters.
    pub fn stats(&self) -> PendingStats {
        self.stats
    }

    /// Removes the oldest waiting attempt, resolved as unanswered.
    fn pop_oldest(&mut self) -> Option<Attempt> {
        while let Some((seq, key, at)) = self.order.pop_front() {
            if self.waiting.get(&key).is_some_and(|(s, _)| *s == seq) {
                self.waiting.remove(&key);
                self.release_slot(&key);
                return Some(key.attempt(at, Outcome::NoAnswer));
            }
        }
        None
    }

    /// Keeps the arrival queue within twice the table's capacity: answered attempts leave
    /// their queue entries behind until they time out, and a burst of quick answers must
    /// not grow the queue without bound.
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.capacity {
            return;
        }
        let waiting = &self.waiting;
        self.order
            .retain(|(seq, key, _)| waiting.get(key).is_some_and(|(s, _)| s == seq));
    }

    /// Queue entries, answered ones included (for tests of the bound).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn key(host: u8, port: u16) -> PendingKey {
        PendingKey {
            slot: TenantSlot(3),
            proto: Proto::Tcp,
            remote: IpAddr::from([198, 19, 0, host]),
            port,
        }
    }

    #[test]
    fn an_answered_attempt_keeps_its_start_and_takes_the_outcome() {
        let mut p = Pending::default();
        assert_eq!(p.insert(key(1, 22), ms(1_000)), None);
        let a = p
            .resolve(key(1, 22), Outcome::Refused, ms(0))
            .expect("waiting");
        assert_eq!((a.at, a.outcome, a.port), (ms(1_000), Outcome::Refused, 22));
        assert!(p.expire(ms(10_000)).is_empty(), "answered: no timeout");
        assert_eq!(p.stats().answered, 1);
    }

    #[test]
    fn an_unanswered_attempt_times_out_as_no_answer_after_500_ms() {
        let mut p = Pending::default();
        p.insert(key(1, 22), ms(1_000));
        p.insert(key(2, 22), ms(1_200));
        assert!(p.expire(ms(1_499)).is_empty());
        let out = p.expire(ms(1_500));
        assert_eq!(out, [key(1, 22).attempt(ms(1_000), Outcome::NoAnswer)]);
        let out = p.expire(ms(1_700));
        assert_eq!(out, [key(2, 22).attempt(ms(1_200), Outcome::NoAnswer)]);
        assert!(p.is_empty());
        assert_eq!(p.stats().timed_out, 2);
        // A late answer finds nothing and is counted.
        assert_eq!(p.resolve(key(1, 22), Outcome::Success, ms(0)), None);
        assert_eq!(p.stats().orphans, 1);
    }

    #[test]
    fn a_full_table_resolves_its_oldest_attempt_early_and_counts_it() {
        let mut p = Pending::new(3);
        for i in 0..3 {
            assert_eq!(p.insert(key(i, 80), ms(u64::from(i))), None);
        }
        // The oldest was answered meanwhile: the next oldest still waiting goes.
        p.resolve(key(0, 80), Outcome::Success, ms(0));
        assert_eq!(p.insert(key(3, 80), ms(3)), None, "room after the answer");
        let evicted = p.insert(key(4, 80), ms(4));
        assert_eq!(evicted, Some(key(1, 80).attempt(ms(1), Outcome::NoAnswer)));
        assert_eq!(p.len(), 3);
        assert_eq!(p.stats().evicted, 1);
        let rest: Vec<u8> = p
            .expire(ms(10_000))
            .iter()
            .map(|a| match a.remote {
                IpAddr::V4(v4) => v4.octets()[3],
                IpAddr::V6(_) => unreachable!("v4 keys"),
            })
            .collect();
        assert_eq!(rest, [2, 3, 4], "oldest first");
    }

    #[test]
    fn an_attempt_arriving_after_its_answer_does_not_wait_again() {
        let mut p = Pending::default();
        // The answer came through the ring before the attempt left the log.
        assert_eq!(p.resolve(key(1, 443), Outcome::Success, ms(1_000)), None);
        assert_eq!(p.stats().orphans, 1);
        assert_eq!(p.insert(key(1, 443), ms(999)), None);
        assert_eq!(p.len(), 0, "already reported with its answer");
        assert!(p.expire(ms(5_000)).is_empty(), "no false timeout");
        assert_eq!(p.stats().answered_first, 1);
        // Remembered for TIMEOUT only: a first contact much later waits as usual.
        assert_eq!(p.resolve(key(2, 443), Outcome::Success, ms(6_000)), None);
        p.expire(ms(6_500));
        assert_eq!(p.insert(key(2, 443), ms(6_600)), None);
        assert_eq!(p.len(), 1);
    }

    /// Two keys the programs put in the same pending slot.
    fn colliding_keys() -> (PendingKey, PendingKey) {
        let first = key(1, 1);
        for host in 2..=255 {
            for port in 1..=u16::MAX {
                let other = key(host, port);
                if other.kernel_slot() == first.kernel_slot() {
                    return (first, other);
                }
            }
        }
        unreachable!("16 million keys over 65,536 slots share the first one's slot")
    }

    #[test]
    fn an_attempt_whose_kernel_slot_was_taken_leaves_unreported() {
        let (older, newer) = colliding_keys();
        let mut p = Pending::default();
        p.insert(older, ms(0));
        p.insert(key(9, 9), ms(0));
        p.insert(newer, ms(10));
        assert_eq!(p.stats().overwritten, 1);
        assert_eq!(p.len(), 2, "the older attempt left");
        let out = p.expire(ms(1_000));
        assert!(
            !out.iter().any(|a| a.port == older.port),
            "the overwritten attempt is not a timeout: {out:?}"
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn an_answered_attempt_frees_its_kernel_slot() {
        let (older, newer) = colliding_keys();
        let mut p = Pending::default();
        p.insert(older, ms(0));
        p.resolve(older, Outcome::Success, ms(1));
        p.insert(newer, ms(10));
        assert_eq!(p.stats().overwritten, 0);
    }

    #[test]
    fn a_repeated_attempt_while_waiting_is_one_attempt() {
        let mut p = Pending::default();
        p.insert(key(1, 53), ms(0));
        p.insert(key(1, 53), ms(100));
        assert_eq!(p.len(), 1);
        assert_eq!(p.stats().duplicates, 1);
        let a = p
            .resolve(key(1, 53), Outcome::Success, ms(0))
            .expect("waiting");
        assert_eq!(a.at, ms(0), "the first start counts");
    }

    #[test]
    fn quick_answers_do_not_grow_the_queue_past_its_bound() {
        let mut p = Pending::new(4);
        for i in 0..1_000u16 {
            p.insert(key(1, i), ms(0));
            p.resolve(key(1, i), Outcome::Success, ms(0));
            assert!(p.queued() <= 9, "queue {} at {i}", p.queued());
        }
        assert!(p.is_empty());
    }

    #[test]
    fn forgetting_a_tenant_drops_its_attempts_unreported() {
        let mut p = Pending::default();
        p.insert(key(1, 22), ms(0));
        let other = PendingKey {
            slot: TenantSlot(4),
            ..key(1, 22)
        };
        p.insert(other, ms(0));
        p.forget(TenantSlot(3));
        assert_eq!(
            p.expire(ms(1_000)),
            [other.attempt(ms(0), Outcome::NoAnswer)]
        );
    }
}
