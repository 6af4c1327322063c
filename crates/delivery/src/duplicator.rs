//! The second sending of notifications whose injected fault is `duplicate`: once one is
//! delivered, it is sent again, with the same bytes and `webhook-id`, by the first node
//! to take it (the choice is stored, so a restart still sends it). The extra attempt is
//! recorded like any other and never changes the notification's status.

use crate::dispatcher::Dispatcher;
use ledgerhook_background::{Status, Step, WorkError, Worker};
use ledgerhook_domain::Timestamp;
use ledgerhook_store::queue::Decision;
use ledgerhook_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Duplicates taken per round.
const ROUND: u32 = 100;
/// How often to look for delivered notifications to duplicate.
const EVERY: Duration = Duration::from_millis(500);

/// Sends the injected duplicates.
pub struct Duplicator {
    /// The database.
    pub store: Store,
    /// Sends and records the attempts.
    pub dispatcher: Arc<Dispatcher>,
}

impl Duplicator {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>, status: Status) {
        ledgerhook_background::run(self, None, shutdown, status).await;
    }
}

impl Worker for Duplicator {
    fn name(&self) -> &'static str {
        "duplicator"
    }

    async fn work(&mut self) -> Result<Step, WorkError> {
        let taken = self.store.take_duplicates(Timestamp::now(), ROUND).await?;
        for notification in &taken {
            let Some(config) = self
                .store
                .config(&notification.app_id, notification.environment)
                .await?
            else {
                continue; // removed since: nothing to send to
            };
            match self.dispatcher.send(notification, &config.url).await {
                Ok(attempt) => {
                    self.dispatcher
                        .record(notification, &attempt, &Decision::Unchanged)
                        .await?;
                }
                Err(err) => tracing::warn!(
                    notification = %notification.id,
                    error = %ledgerhook_domain::error_chain(&err),
                    "the injected duplicate could not be sent"
                ),
            }
        }
        Ok(if taken.len() as u32 >= ROUND {
            Step::Busy
        } else {
            Step::Idle(EVERY)
        })
    }
}
