//! Slows down guessing: after a few failures a key (an account, an address) must wait,
//! and each further failure doubles the wait. Kept in memory: a restart forgives, which
//! is acceptable for throttling (the secrets themselves are strong).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed before waits begin.
    pub free_failures: u32,
    pub first_wait: Duration,
    pub max_wait: Duration,
    /// Failures older than this are forgotten.
    pub window: Duration,
}

impl Policy {
    /// `free_failures`, then waits from `first_wait` doubling up to `max_wait`; failures
    /// are forgotten after `max_wait`.
    pub fn escalating(free_failures: u32, first_wait: Duration, max_wait: Duration) -> Self {
        Self {
            free_failures,
            first_wait,
            max_wait,
            window: max_wait,
        }
    }
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Debug)]
pub struct Limiter {
    policy: Policy,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Limiter {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while the key is blocked; a look that counts nothing, for the tests
    /// (the server counts with [`Limiter::attempt`]).
    #[cfg(test)]
    fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key).and_then(|e| e.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Checks and counts one attempt as a failure in one step, so that attempts made at
    /// the same moment cannot all pass the check before any of them is counted. An
    /// attempt that then succeeds takes its count back with [`Limiter::refund`] (or
    /// clears the key with [`Limiter::success`]).
    pub fn attempt(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = entries.get(key).and_then(|e| e.blocked_until)
            && until > now
        {
            return Err(until - now);
        }
        self.record(&mut entries, key, now);
        Ok(())
    }

    /// Takes back the count of one attempt that succeeded.
    pub fn refund(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(key) {
            entry.failures = entry.failures.saturating_sub(1);
            if entry.failures <= self.policy.free_failures {
                entry.blocked_until = None;
            }
        }
    }

    #[cfg(test)]
    fn failure(&self, key: &str, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.record(&mut entries, key, now);
    }

    fn record(&self, entries: &mut HashMap<String, Entry>, key: &str, now: Instant) {
        // Bound memory under a flood of distinct keys: drop what the window forgot.
        if entries.len() > 10_000 {
            let window = self.policy.window;
            entries.retain(|_, e| now.duration_since(e.last_failure) < window);
        }
        let entry = entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: None,
        });
        if now.duration_since(entry.last_failure) >= self.policy.window {
            entry.failures = 0;
        }
        entry.failures += 1;
        entry.last_failure = now;
        if entry.failures > self.policy.free_failures {
            let doublings = (entry.failures - self.policy.free_failures - 1).min(16);
            let wait = self
                .policy
                .first_wait
                .saturating_mul(1 << doublings)
                .min(self.policy.max_wait);
            entry.blocked_until = Some(now + wait);
        }
    }

    pub fn success(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn attempts_at_the_same_moment_are_counted_before_they_are_checked() {
        let l = Limiter::new(policy());
        let t = Instant::now();
        // Ten attempts before any verdict: the free three pass, then the key waits.
        let passed = (0..10).filter(|_| l.attempt("a", t).is_ok()).count();
        assert_eq!(passed, 4, "three free, the fourth sets the first wait");
        // Successful ones give their count back.
        let l = Limiter::new(policy());
        for _ in 0..10 {
            assert!(l.attempt("b", t).is_ok());
            l.refund("b");
        }
    }

    fn policy() -> Policy {
        Policy {
            free_failures: 3,
            first_wait: Duration::from_secs(2),
            max_wait: Duration::from_secs(60),
            window: Duration::from_secs(900),
        }
    }

    #[test]
    fn waits_begin_after_free_failures_and_double() {
        let l = Limiter::new(policy());
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check("a", t).is_ok());
            l.failure("a", t);
        }
        assert!(l.check("a", t).is_ok());
        l.failure("a", t);
        assert_eq!(l.check("a", t), Err(Duration::from_secs(2)));
        assert!(l.check("b", t).is_ok(), "other keys are not affected");
        let later = t + Duration::from_secs(3);
        assert!(l.check("a", later).is_ok());
        l.failure("a", later);
        assert_eq!(l.check("a", later), Err(Duration::from_secs(4)));
        l.success("a");
        assert!(l.check("a", later).is_ok());
    }

    #[test]
    fn waits_are_capped_and_forgotten() {
        let l = Limiter::new(policy());
        let t = Instant::now();
        for _ in 0..40 {
            l.failure("a", t);
        }
        assert_eq!(l.check("a", t), Err(Duration::from_secs(60)));
        let much_later = t + Duration::from_secs(1000);
        assert!(l.check("a", much_later).is_ok());
        l.failure("a", much_later);
        assert!(
            l.check("a", much_later).is_ok(),
            "old failures fell out of the window"
        );
    }
}
