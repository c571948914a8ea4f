//! The write rate a shard leader measures, reported in cluster status so that scaling
//! decisions (the operator's merges) never put more load on a shard than it can take.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rates are averaged over windows this long; the last complete window is reported.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub bytes_per_second: u64,
    pub records_per_second: u64,
}

pub struct Load {
    window: Mutex<Window>,
}

struct Window {
    start: Instant,
    bytes: u64,
    records: u64,
    last: Rate,
}

impl Window {
    /// Closes the current window if it is over; a window with a gap after it counts as
    /// idle, so an old burst is not reported forever.
    fn roll(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.start);
        if age < WINDOW {
            return;
        }
        let secs = WINDOW.as_secs().max(1);
        self.last = if age < WINDOW * 2 {
            Rate { bytes_per_second: self.bytes / secs, records_per_second: self.records / secs }
        } else {
            Rate::default()
        };
        self.start = now;
        self.bytes = 0;
        self.records = 0;
    }
}

impl Load {
    pub fn new(now: Instant) -> Load {
        Load { window: Mutex::new(Window { start: now, bytes: 0, records: 0, last: Rate::default() }) }
    }

    /// Records written to the shard (acknowledged).
    pub fn record(&self, bytes: u64, records: u64, now: Instant) {
        let mut w = self.window.lock().expect("load lock");
        w.roll(now);
        w.bytes += bytes;
        w.records += records;
    }

    /// The rate over the last complete window.
    pub fn rate(&self, now: Instant) -> Rate {
        let mut w = self.window.lock().expect("load lock");
        w.roll(now);
        w.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_last_complete_window_and_forgets_old_bursts() {
        let t0 = Instant::now();
        let load = Load::new(t0);
        for i in 0..100 {
            load.record(10_240, 100, t0 + Duration::from_millis(i * 90));
        }
        assert_eq!(load.rate(t0 + Duration::from_secs(5)), Rate::default(), "no complete window yet");
        let r = load.rate(t0 + Duration::from_secs(11));
        assert_eq!(r, Rate { bytes_per_second: 102_400, records_per_second: 1_000 });
        // The next window was idle.
        assert_eq!(load.rate(t0 + Duration::from_secs(22)), Rate::default());
        // A burst followed by a long gap is not reported forever.
        load.record(1_000_000, 1_000, t0 + Duration::from_secs(23));
        assert_eq!(load.rate(t0 + Duration::from_secs(60)), Rate::default());
    }
}
