//! The async runtime every Raft group runs on: tokio, with long timer deadlines rounded up
//! to a node-wide 10 ms grid.
//!
//! Each group has a tick timer (heartbeats, election timeouts) with its own random phase.
//! A node holding a hundred replicas would wake a worker thread about 2,000 times a second
//! for them, most of the cost of an idle node. On the grid the ticks of many groups fall due
//! together and one wake-up serves them all. Waits shorter than `COARSE_FROM` (openraft's
//! microsecond IO batching, for example) keep their exact deadline.

use openraft::impls::TokioRuntime;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant};
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

/// The grid the deadlines are rounded up to: far below any Raft timeout.
const GRID: Duration = Duration::from_millis(10);
/// Deadlines nearer than this are kept exact.
const COARSE_FROM: Duration = Duration::from_millis(20);

/// How long to sleep for a wait of `wait` that starts `since_epoch` after the grid's
/// origin: until the first grid line at or after the deadline.
pub fn coarse_wait(since_epoch: Duration, wait: Duration) -> Duration {
    if wait < COARSE_FROM {
        return wait;
    }
    let due = (since_epoch + wait).as_nanos();
    let grid = GRID.as_nanos();
    let on_grid = due.div_ceil(grid) * grid;
    wait + Duration::from_nanos((on_grid - due) as u64)
}

fn since_epoch() -> Duration {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed()
}

#[derive(Debug)]
pub struct CoarseTimers(TokioRuntime);

impl AsyncRuntime for CoarseTimers {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = <TokioRuntime as AsyncRuntime>::ThreadLocalRng;
    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = <TokioRuntime as AsyncRuntime>::Watch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        let wait = deadline - <TokioInstant as openraft::Instant>::now();
        TokioRuntime::sleep(coarse_wait(since_epoch(), wait))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        TokioRuntime::thread_rng()
    }

    fn new(threads: usize) -> Self {
        CoarseTimers(TokioRuntime::new(threads))
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.0.block_on(future)
    }

    /// tokio's blocking pool rather than a new thread per call.
    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, std::io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let task = tokio::task::spawn_blocking(f);
        async move { task.await.map_err(std::io::Error::other) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn short_waits_are_exact() {
        assert_eq!(coarse_wait(3 * MS, Duration::from_micros(1)), Duration::from_micros(1));
        assert_eq!(coarse_wait(3 * MS, 19 * MS), 19 * MS);
    }

    #[test]
    fn long_waits_end_on_the_next_grid_line_never_early() {
        // Due at 3 + 47 = 50 ms: already on the grid.
        assert_eq!(coarse_wait(3 * MS, 47 * MS), 47 * MS);
        // Due at 54 ms: to 60 ms.
        assert_eq!(coarse_wait(4 * MS, 50 * MS), 56 * MS);
        // Two groups whose ticks are due 3 ms apart wake together.
        let a = 1_000 * MS + coarse_wait(1_000 * MS, 51 * MS);
        let b = 1_003 * MS + coarse_wait(1_003 * MS, 51 * MS);
        assert_eq!(a, b);
        for since in [0, 1, 7, 9_999] {
            let wait = coarse_wait(since * MS, 250 * MS);
            assert!(wait >= 250 * MS && wait < 260 * MS, "{wait:?}");
        }
    }
}
