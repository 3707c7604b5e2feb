//! Where brooklet gets the time.
//!
//! Timestamps, segment roll by age, interval flushes and every blocking wait
//! with a time-out read the [`Clock`] that the [`LogConfig`](crate::LogConfig)
//! carries. Production code uses [`SystemClock`]; tests use [`ManualClock`]
//! and move time by hand, so time-based behaviour is deterministic:
//!
//! ```
//! use std::sync::Arc;
//! use brooklet::{ManualClock, Clock};
//!
//! let clock = Arc::new(ManualClock::new(1_000));
//! assert_eq!(clock.now_ms(), 1_000);
//! clock.advance_ms(500);
//! assert_eq!(clock.now_ms(), 1_500);
//! ```

use std::fmt;
use std::sync::Weak;
use std::sync::atomic::{AtomicI64, Ordering};

use parking_lot::Mutex;

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Whether time moves by itself. When it does not (a manual clock),
    /// a wait for a deadline blocks until the clock is advanced rather than
    /// for a span of real time.
    fn is_real_time(&self) -> bool {
        true
    }

    /// Registers a listener to be told whenever the time is moved by other
    /// means than real time passing. Clocks that only follow real time
    /// ignore it.
    fn subscribe(&self, listener: Weak<dyn ClockListener>) {
        let _ = listener;
    }
}

/// Told when a [`Clock`] is moved by hand, so that waits on deadlines
/// re-check the time.
pub trait ClockListener: Send + Sync {
    /// The clock's time changed.
    fn clock_advanced(&self);
}

/// The operating system's wall clock.
///
/// A thread reads the operating system's clock at most once every few
/// microseconds (timed by the CPU's time-stamp counter, where the kernel
/// itself keeps time by it), so a reading may be that much behind: a
/// producer stamps every record it sends, and the clock read would
/// otherwise cost as much as the rest of a send.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now_ms(&self) -> i64 {
        crate::wall_clock::now_ms()
    }
}

/// A clock that only moves when told to: for deterministic tests of
/// retention, segment roll by age, interval flushes and time-outs.
///
/// Every wait in brooklet that has a deadline wakes up when this clock is
/// advanced and re-checks the deadline.
pub struct ManualClock {
    now_ms: AtomicI64,
    listeners: Mutex<Vec<Weak<dyn ClockListener>>>,
}

impl ManualClock {
    /// A clock standing at `start_ms` milliseconds since the Unix epoch.
    pub fn new(start_ms: i64) -> Self {
        ManualClock {
            now_ms: AtomicI64::new(start_ms),
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// Moves the clock forward by `delta_ms` and wakes every waiter.
    pub fn advance_ms(&self, delta_ms: i64) {
        self.now_ms.fetch_add(delta_ms, Ordering::SeqCst);
        self.wake_listeners();
    }

    /// Sets the clock to `now_ms` (forward or back) and wakes every waiter.
    pub fn set_ms(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
        self.wake_listeners();
    }

    fn wake_listeners(&self) {
        // Collect first so listeners run without this clock's lock held.
        let live: Vec<_> = {
            let mut listeners = self.listeners.lock();
            listeners.retain(|listener| listener.strong_count() > 0);
            listeners.iter().filter_map(Weak::upgrade).collect()
        };
        for listener in live {
            listener.clock_advanced();
        }
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now_ms", &self.now_ms.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn is_real_time(&self) -> bool {
        false
    }

    fn subscribe(&self, listener: Weak<dyn ClockListener>) {
        self.listeners.lock().push(listener);
    }
}
