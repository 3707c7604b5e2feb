//! A wake-up signal for threads that wait for a condition or a deadline.
//!
//! Appends wake consumers waiting for data; `ManualClock::advance_ms` wakes
//! everything waiting on a deadline. Waiters never poll in a sleep loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::clock::{Clock, ClockListener};

/// A condition variable that also wakes when the clock is moved by hand.
pub(crate) struct Notify {
    lock: Mutex<()>,
    condvar: Condvar,
    /// Lets `notify` skip the mutex when nobody waits, which is the common
    /// case on the append path.
    waiters: AtomicUsize,
    /// A request for the waiter (a background thread) to do work.
    signalled: AtomicBool,
}

impl Notify {
    /// A signal already subscribed to `clock`'s manual advances.
    pub(crate) fn new(clock: &dyn Clock) -> Arc<Self> {
        let notify = Arc::new(Notify {
            lock: Mutex::new(()),
            condvar: Condvar::new(),
            waiters: AtomicUsize::new(0),
            signalled: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&notify);
        clock.subscribe(weak);
        notify
    }

    /// Wakes every waiter so it re-checks its condition.
    pub(crate) fn notify(&self) {
        // SeqCst pairs with the increment in `wait_until`: either the waiter
        // sees the state change its condition checks, or we see the waiter
        // and take the lock, which it holds from its check until it sleeps.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock();
            self.condvar.notify_all();
        }
    }

    /// Records a request for work and wakes the waiter.
    pub(crate) fn signal(&self) {
        self.signalled.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// Whether work was requested since the last [`Notify::take_signal`].
    pub(crate) fn is_signalled(&self) -> bool {
        self.signalled.load(Ordering::SeqCst)
    }

    /// Clears and returns the work request.
    pub(crate) fn take_signal(&self) -> bool {
        self.signalled.swap(false, Ordering::SeqCst)
    }

    /// Blocks until `done()` returns true (returns true) or the clock
    /// reaches `deadline_ms` (returns false). `done` must only read state
    /// whose writers call [`Notify::notify`] after changing it.
    pub(crate) fn wait_until(
        &self,
        clock: &dyn Clock,
        deadline_ms: i64,
        mut done: impl FnMut() -> bool,
    ) -> bool {
        if clock.is_real_time() && deadline_ms > clock.now_ms() && spin_until(&mut done) {
            return true;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.lock.lock();
        let satisfied = loop {
            if done() {
                break true;
            }
            let now_ms = clock.now_ms();
            if now_ms >= deadline_ms {
                break false;
            }
            if clock.is_real_time() {
                let wait_ms = u64::try_from(deadline_ms - now_ms).unwrap_or(0);
                self.condvar
                    .wait_for(&mut guard, Duration::from_millis(wait_ms));
            } else {
                self.condvar.wait(&mut guard);
            }
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        satisfied
    }
}

/// How long a wait watches its condition before it sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);

/// Watches `done` for [`SPIN_BEFORE_SLEEP`]; whether it came true. Hand-offs
/// between threads of one process take microseconds, while a thread woken
/// from sleep (a system call on one side, an interrupt to an idle core on
/// the other) can take tens of them, as long again on a virtual machine.
fn spin_until(done: &mut impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        for _ in 0..32 {
            std::hint::spin_loop();
        }
        if done() {
            return true;
        }
        if started.elapsed() >= SPIN_BEFORE_SLEEP {
            return false;
        }
    }
}

impl ClockListener for Notify {
    fn clock_advanced(&self) {
        let _guard = self.lock.lock();
        self.condvar.notify_all();
    }
}
