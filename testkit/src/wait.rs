//! Waiting for a condition with a deadline instead of sleeping and hoping.

use std::future::Future;
use std::time::Duration;

/// What a check given to `eventually` answers: `true`, or `Some(value)`, once the
/// condition holds.
pub trait Holds {
    type Value;
    fn holds(self) -> Option<Self::Value>;
}

impl Holds for bool {
    type Value = ();
    fn holds(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Holds for Option<T> {
    type Value = T;
    fn holds(self) -> Option<T> {
        self
    }
}

/// Polls `check` until it holds and returns what it found, or fails the test after
/// `limit`.
pub async fn eventually<R, F, Fut>(what: &str, limit: Duration, mut check: F) -> R::Value
where
    R: Holds,
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await.holds() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `f`, failing the test after `limit`.
pub async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("not done within {limit:?}"))
}

/// Milliseconds since the Unix epoch, the server's unit of time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
