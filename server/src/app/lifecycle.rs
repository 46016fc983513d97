//! Shutdown for what outlives a request: sync connections and the dashboard's event
//! streams. hyper's graceful shutdown waits for requests in flight, so an event stream
//! would hold the server up until its lifetime ran out, and upgraded WebSockets are not
//! its business at all: left alone, their tasks would die with the process, before they
//! persisted their sync states. Each long-lived task holds a `Running` and watches
//! `stopping`; the server asks them to end and waits, bounded, until they have.

use std::time::Duration;

use tokio::sync::watch;

/// How long a stopping server waits for its sync connections to write what they hold.
pub const DRAIN: Duration = Duration::from_secs(10);

pub struct Lifecycle {
    stop: watch::Sender<bool>,
    running: watch::Sender<()>,
}

/// Held by a long-lived task until it has ended.
pub struct Running {
    _held: watch::Receiver<()>,
    stopping: watch::Receiver<bool>,
}

impl Running {
    /// Resolves once the server is stopping (at once if it already is).
    pub async fn stopping(&mut self) {
        // An error: the lifecycle is gone, which only happens when the server is.
        let _ = self.stopping.wait_for(|stop| *stop).await;
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            stop: watch::Sender::new(false),
            running: watch::Sender::new(()),
        }
    }
}

impl Lifecycle {
    pub fn enter(&self) -> Running {
        Running {
            _held: self.running.subscribe(),
            stopping: self.stop.subscribe(),
        }
    }

    pub fn begin_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Waits until every `Running` is dropped, at most `within`; `false` if some were
    /// still running then (they are left to the runtime's end).
    pub async fn drained(&self, within: Duration) -> bool {
        tokio::time::timeout(within, self.running.closed())
            .await
            .is_ok()
    }

    pub fn still_running(&self) -> usize {
        self.running.receiver_count()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_wakes_the_tasks_and_drained_waits_for_them() {
        let life = std::sync::Arc::new(Lifecycle::default());
        assert!(life.drained(Duration::from_millis(1)).await, "nothing runs");
        let (tx, mut ended) = tokio::sync::mpsc::channel::<()>(1);
        let mut running = life.enter();
        let task = tokio::spawn(async move {
            running.stopping().await;
            tx.send(()).await.unwrap();
            // Still held: the server must wait for this.
            tokio::task::yield_now().await;
            drop(running);
        });
        assert_eq!(life.still_running(), 1);
        assert!(!life.drained(Duration::from_millis(20)).await);
        life.begin_stop();
        ended.recv().await.unwrap();
        assert!(life.drained(Duration::from_secs(5)).await);
        task.await.unwrap();
        // One that enters after the stop sees it at once.
        let mut late = life.enter();
        tokio::time::timeout(Duration::from_secs(1), late.stopping())
            .await
            .unwrap();
    }
}
