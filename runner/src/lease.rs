//! A runner's hold on one deployment: heartbeats that renew the lease, and the
//! fence that stops swarm writes once the lease may have lapsed.
//!
//! The API grants a lease with every claim and heartbeat (the answers carry
//! `lastHeartbeatAt` and `leaseExpiresAt`, so its length needs no clock of
//! ours to agree with the API's). The runner counts the lease from when it
//! *sent* the request that renewed it — never later than the API counts it —
//! and stops writing to the swarm a margin before that runs out: past that
//! point another runner may hold the environment, and anything this one
//! applied, rolled back or pruned could overwrite that runner's release.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_client::operations::{heartbeat_deployment, HeartbeatDeployment};
use slipway_client::{Client, Code};
use tokio::time::Instant;

use crate::swarm::{EngineError, Fence};

/// The lease the API grants unless it says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Shortest wait between heartbeats, whatever the lease.
const MIN_BEAT: Duration = Duration::from_millis(200);
/// Longest wait before a failed heartbeat is sent again.
const RETRY_BEAT: Duration = Duration::from_secs(1);

/// The length of the lease an answer grants: `leaseExpiresAt - lastHeartbeatAt`,
/// both the API's own times.
pub fn granted(
    last_heartbeat_at: Option<chrono::DateTime<chrono::Utc>>,
    lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<Duration> {
    let length = lease_expires_at? - last_heartbeat_at?;
    length.to_std().ok().filter(|length| !length.is_zero())
}

/// A third of the lease: two heartbeats may be lost before the claim lapses.
pub fn beat_for(lease: Duration) -> Duration {
    (lease / 3).max(MIN_BEAT)
}

/// The part of the lease the runner does not write in: a fifth of it, so a
/// swarm call started just before the end lands before the API lets go.
fn margin_for(lease: Duration) -> Duration {
    lease / 5
}

/// What the heartbeat task and the deployment's work share.
struct Shared {
    cancel: AtomicBool,
    /// Why this runner no longer holds the deployment, once it knows.
    lost: Mutex<Option<String>>,
    /// Until when the runner may write to the swarm.
    until: Mutex<Instant>,
}

/// The hold on one deployment while the runner works on it. Dropping it
/// stops the heartbeats.
pub struct Lease {
    shared: Arc<Shared>,
    beat: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.beat.abort();
    }
}

impl Lease {
    /// Holds deployment `id`, granted `lease` by a request sent at `sent`
    /// (`None` for one this runner held before it restarted: it may write
    /// only after its first heartbeat), and renews it from now on.
    pub fn hold(
        client: Client,
        id: String,
        instance: String,
        lease: Duration,
        sent: Option<Instant>,
    ) -> Self {
        let until = match sent {
            Some(sent) => sent + lease - margin_for(lease),
            None => Instant::now(),
        };
        let shared = Arc::new(Shared {
            cancel: AtomicBool::new(false),
            lost: Mutex::new(None),
            until: Mutex::new(until),
        });
        let beat = tokio::spawn(beat(client, id, instance, lease, shared.clone()));
        Self { shared, beat }
    }

    /// Whether someone asked to cancel the deployment (or it was lost).
    pub fn cancel_requested(&self) -> bool {
        self.shared.cancel.load(Ordering::SeqCst)
    }

    /// Why the runner no longer holds the deployment, if it does not: the API
    /// said so, or the lease ran out without a renewal.
    pub fn lapsed(&self) -> Option<String> {
        if let Some(why) = lock(&self.shared.lost).clone() {
            return Some(why);
        }
        let until = *lock(&self.shared.until);
        let now = Instant::now();
        (now >= until).then(|| {
            format!(
                "no heartbeat reached the API in time: the lease may have lapsed {:.1}s ago",
                (now - until).as_secs_f64()
            )
        })
    }

    /// Waits until the first renewal of a resumed deployment's lease, or
    /// until `within` passes; answers whether the runner may write.
    pub async fn renewed(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if lock(&self.shared.lost).is_some() {
                return false;
            }
            if Instant::now() < *lock(&self.shared.until) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Fence for Lease {
    fn check(&self) -> Result<(), EngineError> {
        match self.lapsed() {
            None => Ok(()),
            Some(why) => Err(EngineError::Fenced(why)),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Renews the lease every third of it, at once after a failure, and keeps
/// `until` to the last renewal that the API answered.
async fn beat(
    client: Client,
    id: String,
    instance: String,
    mut lease: Duration,
    shared: Arc<Shared>,
) {
    let mut wait = Duration::ZERO;
    loop {
        tokio::time::sleep(wait).await;
        let sent = Instant::now();
        let answer = client
            .run::<HeartbeatDeployment>(heartbeat_deployment::Variables {
                id: id.clone(),
                instance: Some(instance.clone()),
            })
            .await;
        match answer {
            Ok(data) => {
                let d = data.heartbeat_deployment;
                if let Some(length) = granted(d.last_heartbeat_at, d.lease_expires_at) {
                    lease = length;
                }
                *lock(&shared.until) = sent + lease - margin_for(lease);
                if d.cancel_requested {
                    shared.cancel.store(true, Ordering::SeqCst);
                }
                wait = beat_for(lease);
            }
            Err(err) if err.code() == Some(Code::Conflict) => {
                tracing::warn!(deployment = %id, %err, "no longer holding the deployment");
                *lock(&shared.lost) = Some(format!("the API says: {err}"));
                shared.cancel.store(true, Ordering::SeqCst);
                return;
            }
            Err(err) => {
                tracing::warn!(deployment = %id, %err, "heartbeat failed; retrying");
                wait = RETRY_BEAT.min(beat_for(lease));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_length_comes_from_the_api_s_own_times() {
        let at = chrono::Utc::now();
        assert_eq!(
            granted(Some(at), Some(at + chrono::Duration::seconds(8))),
            Some(Duration::from_secs(8))
        );
        assert_eq!(granted(Some(at), None), None);
        assert_eq!(granted(Some(at), Some(at)), None);
        assert_eq!(beat_for(Duration::from_secs(9)), Duration::from_secs(3));
        assert_eq!(beat_for(Duration::from_millis(300)), MIN_BEAT);
    }
}
