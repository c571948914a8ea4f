//! Hibernation of an idle shard group: its replicas stop openraft's ticker, so the group
//! sends no heartbeats and runs no election timers until the next write.
//!
//! Most shards of a large cluster are idle most of the time, and each awake group costs
//! its node a tick every ~50 ms and a heartbeat per follower every 250 ms. A leader whose
//! group has taken no append for `IDLE` and whose followers have everything asks them to
//! sleep, then sleeps itself (`node/hibernate.rs`). Any append wakes a replica (the
//! leader's own proposal, or a follower receiving entries), as do election frames. A
//! follower whose leader's node stops answering is woken by the node's liveness check, so
//! an election replaces a dead leader as it would without hibernation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a group goes without appends before its leader puts it to sleep.
pub const IDLE: Duration = Duration::from_secs(2);

type Ticker = Box<dyn Fn(bool) + Send + Sync>;

#[derive(Default)]
pub struct Hibernation {
    /// Appends to this replica's log so far: a sleep decided before one is void.
    appends: AtomicU64,
    /// When the last append happened (ms since the process' first hibernation clock read).
    last_append_ms: AtomicU64,
    asleep: AtomicBool,
    /// Switches openraft's ticker; None before the group's Raft exists and after it stops
    /// (it holds the Raft handle, which holds this: cleared to break the cycle).
    ticker: Mutex<Option<Ticker>>,
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Hibernation {
    pub fn new() -> Hibernation {
        let h = Hibernation::default();
        h.last_append_ms.store(now_ms(), SeqCst);
        h
    }

    pub fn set_ticker(&self, ticker: impl Fn(bool) + Send + Sync + 'static) {
        *self.ticker.lock().expect("hibernation lock") = Some(Box::new(ticker));
    }

    /// The group is stopping: forget its Raft handle.
    pub fn clear(&self) {
        self.ticker.lock().expect("hibernation lock").take();
    }

    /// The log store appended entries: the group is busy.
    pub fn note_append(&self) {
        self.appends.fetch_add(1, SeqCst);
        self.last_append_ms.store(now_ms(), SeqCst);
        self.wake();
    }

    pub fn appends(&self) -> u64 {
        self.appends.load(SeqCst)
    }

    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last_append_ms.load(SeqCst)))
    }

    pub fn is_asleep(&self) -> bool {
        self.asleep.load(SeqCst)
    }

    /// Restarts the ticker of a sleeping replica. Whether it was asleep.
    pub fn wake(&self) -> bool {
        if !self.asleep.load(SeqCst) {
            return false;
        }
        let ticker = self.ticker.lock().expect("hibernation lock");
        let was = self.asleep.swap(false, SeqCst);
        if was {
            if let Some(tick) = ticker.as_ref() {
                tick(true);
            }
        }
        was
    }

    /// Stops the ticker unless an append came after the caller read `appends() == seen`
    /// (then it stays awake). Returns whether it sleeps.
    ///
    /// An append racing with this either bumps the counter before the check below (and
    /// this undoes the sleep) or reads `asleep == true` afterwards (and wakes it).
    pub fn sleep_unless_appended(&self, seen: u64) -> bool {
        let ticker = self.ticker.lock().expect("hibernation lock");
        let Some(tick) = ticker.as_ref() else { return false };
        self.asleep.store(true, SeqCst);
        tick(false);
        if self.appends.load(SeqCst) != seen {
            self.asleep.store(false, SeqCst);
            tick(true);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn with_ticker() -> (Hibernation, Arc<Mutex<Vec<bool>>>) {
        let h = Hibernation::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        h.set_ticker(move |on| s.lock().unwrap().push(on));
        (h, seen)
    }

    #[test]
    fn sleeps_and_any_append_wakes_it() {
        let (h, ticks) = with_ticker();
        assert!(h.sleep_unless_appended(h.appends()));
        assert!(h.is_asleep());
        assert!(h.wake());
        assert!(!h.wake(), "already awake");
        assert!(!h.is_asleep());
        assert!(h.sleep_unless_appended(h.appends()));
        h.note_append();
        assert!(!h.is_asleep());
        assert_eq!(*ticks.lock().unwrap(), vec![false, true, false, true], "one switch per change");
    }

    #[test]
    fn an_append_after_the_decision_voids_the_sleep() {
        let (h, ticks) = with_ticker();
        let seen = h.appends();
        h.note_append();
        assert!(!h.sleep_unless_appended(seen));
        assert!(!h.is_asleep());
        assert_eq!(*ticks.lock().unwrap(), vec![false, true], "the ticker runs again");
    }

    #[test]
    fn a_stopped_group_never_sleeps() {
        let (h, _) = with_ticker();
        h.clear();
        assert!(!h.sleep_unless_appended(h.appends()));
        assert!(!h.is_asleep());
    }
}
