//! The sender: claims due alerts from the outbox, delivers each on its
//! channel with a timeout, and records the outcome.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use goflow_store::{AlertDelivery, AlertRow, Store};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use super::{AlertConfig, Channel, ChannelError};

pub(super) struct Sender {
    store: Store,
    config: Arc<AlertConfig>,
    channels: Arc<BTreeMap<String, Arc<dyn Channel>>>,
}

impl Sender {
    pub(super) fn new(
        store: Store,
        config: AlertConfig,
        channels: BTreeMap<String, Arc<dyn Channel>>,
    ) -> Self {
        Sender {
            store,
            config: Arc::new(config),
            channels: Arc::new(channels),
        }
    }

    /// Claims and delivers until `stop`; a delivery in flight then ends
    /// (it is bounded by the request timeout) before this returns.
    pub(super) async fn run(self, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut inflight = JoinSet::new();
        // A lease outlives any delivery, or a slow one would be sent twice.
        let lease = self
            .config
            .lease
            .max(self.config.request_timeout.saturating_mul(2));
        let mut failures = 0u32;
        loop {
            if *stop.borrow() {
                break;
            }
            let free = slots.available_permits() as u32;
            let mut claimed = 0;
            if free > 0 {
                match self
                    .store
                    .claim_alerts(&self.config.owner, free, lease, Utc::now())
                    .await
                {
                    Ok(rows) => {
                        failures = 0;
                        claimed = rows.len();
                        for row in rows {
                            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                                break;
                            };
                            let (store, config, channels) = (
                                self.store.clone(),
                                Arc::clone(&self.config),
                                Arc::clone(&self.channels),
                            );
                            inflight.spawn(async move {
                                deliver(&store, &config, &channels, row).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, "claiming alerts failed; retrying");
                    }
                }
            }
            // More may be due at once when the batch was full.
            if claimed > 0 && claimed as u32 == free && failures == 0 {
                tokio::task::yield_now().await;
                continue;
            }
            let pause = self
                .config
                .poll_interval
                .saturating_mul(failures.clamp(1, 10));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = wake.notified() => {}
                Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
                _ = stop.changed() => break,
            }
        }
        while inflight.join_next().await.is_some() {}
    }
}

/// Delivers one claimed alert and records what happened.
async fn deliver(
    store: &Store,
    config: &AlertConfig,
    channels: &BTreeMap<String, Arc<dyn Channel>>,
    row: AlertRow,
) {
    let attempt = row.attempts + 1;
    let result = match channels.get(&row.channel) {
        None => Err(ChannelError::permanent(format!(
            "channel {:?} is not configured in this process",
            row.channel
        ))),
        Some(channel) => {
            match tokio::time::timeout(config.request_timeout, channel.send(&row.alert)).await {
                Ok(result) => result,
                Err(_) => Err(ChannelError::retryable(format!(
                    "timed out after {}",
                    goflow_core::duration::format(config.request_timeout)
                ))),
            }
        }
    };
    let now = Utc::now();
    let delivery = match result {
        Ok(()) => {
            tracing::info!(id = row.id, channel = %row.channel, key = %row.dedupe_key, "alert sent");
            AlertDelivery::Sent
        }
        Err(e) if e.retryable && attempt < config.max_attempts => {
            let delay = config.backoff(attempt);
            tracing::warn!(id = row.id, channel = %row.channel, attempt, error = %e, ?delay, "alert not delivered; will retry");
            AlertDelivery::Retry {
                at: now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
                error: e.message,
            }
        }
        Err(e) => {
            let error = if e.retryable {
                format!("{} (gave up after {attempt} attempts)", e.message)
            } else {
                e.message
            };
            tracing::error!(id = row.id, channel = %row.channel, key = %row.dedupe_key, %error, "alert failed");
            AlertDelivery::Failed { error }
        }
    };
    match store
        .record_alert_delivery(row.id, &config.owner, delivery, now)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            id = row.id,
            "alert lease lost before its outcome was recorded"
        ),
        // The lease runs out and the alert is tried again.
        Err(e) => tracing::error!(id = row.id, error = %e, "recording an alert delivery failed"),
    }
}
