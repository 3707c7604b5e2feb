//! Reading the wall clock cheaply enough to stamp every record sent.
//!
//! `clock_gettime` costs 25–35 ns, as much as the rest of a producer's
//! `send`. Where the kernel keeps time by the CPU's time-stamp counter (its
//! clocksource is `tsc`, so the counter is invariant and synchronised
//! across cores), a thread reuses its last reading while the counter shows
//! less than [`REUSE_TICKS`] have passed: a few microseconds at any clock
//! rate, far below the millisecond resolution of the result. Elsewhere
//! every call reads the OS clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Counter ticks a reading is reused for: 33 µs at 1 GHz, 6.5 µs at
/// 5 GHz, a few hundredths of the result's resolution.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
const REUSE_TICKS: u64 = 1 << 15;

/// Milliseconds since the Unix epoch, never negative.
#[inline]
pub(crate) fn now_ms() -> i64 {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        if counter_is_clocksource() {
            return reused_or_read();
        }
    }
    read_os_clock()
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline]
fn reused_or_read() -> i64 {
    use std::cell::Cell;
    thread_local! {
        /// The counter and the time at this thread's last OS clock read.
        static LAST_READ: Cell<(u64, i64)> = const { Cell::new((0, 0)) };
    }
    // SAFETY: `rdtsc` exists on every x86-64 CPU and only reads the counter.
    let ticks = unsafe { std::arch::x86_64::_rdtsc() };
    LAST_READ.with(|last| {
        let (read_at, ms) = last.get();
        // A counter behind the last read (another core's, should they
        // differ) wraps to a large difference and reads the clock again.
        if ticks.wrapping_sub(read_at) < REUSE_TICKS && read_at != 0 {
            return ms;
        }
        let ms = read_os_clock();
        last.set((ticks, ms));
        ms
    })
}

/// Whether the kernel keeps time by the time-stamp counter, which it does
/// only when the counter is invariant and the same on every core. Checked
/// once.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[inline]
fn counter_is_clocksource() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    const UNKNOWN: u8 = 0;
    const YES: u8 = 1;
    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
    match STATE.load(Ordering::Relaxed) {
        UNKNOWN => {
            let tsc = std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .is_ok_and(|source| source.trim() == "tsc");
            STATE.store(if tsc { YES } else { YES + 1 }, Ordering::Relaxed);
            tsc
        }
        state => state == YES,
    }
}

/// One read of the OS clock.
fn read_os_clock() -> i64 {
    #[cfg(target_os = "linux")]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid place for the call to write to.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } == 0 {
            // Before 1970 is a misconfigured machine; time zero keeps
            // timestamps valid (they must not be negative).
            return now
                .tv_sec
                .saturating_mul(1000)
                .saturating_add(now.tv_nsec / 1_000_000)
                .max(0);
        }
    }
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since_epoch) => i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_system_time() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        let mut previous = 0;
        for _ in 0..10_000 {
            let now = now_ms();
            assert!(now >= previous, "went back from {previous} to {now}");
            previous = now;
        }
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        assert!(
            (before..=after).contains(&previous),
            "{previous} outside [{before}, {after}]"
        );
    }
}
