//! Whether the grants behind running sessions still hold. While any session runs, the gateway
//! asks the control server every [`CHECK_EVERY`] (at once when the embedded server signals a
//! revocation); a grant that ended ends its sessions with reason `revoked`.
//!
//! If the control server cannot be reached, running sessions go on until their grant expires
//! (expiry is enforced locally); new connections are refused anyway, since they need the
//! server's authorisation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_proto::GrantStandingRequest;
use tokio::sync::{Notify, watch};

use crate::control::{ControlError, ControlPlane};

/// How often running sessions' grants are checked: a revocation ends them within this (plus
/// one round trip), well inside the five seconds promised.
pub const CHECK_EVERY: Duration = Duration::from_millis(1500);

/// Why a grant ended (`None` while it holds).
pub type Verdict = watch::Receiver<Option<String>>;

#[derive(Default)]
pub struct Standing {
    grants: Mutex<HashMap<String, watch::Sender<Option<String>>>>,
}

impl Standing {
    /// Follows a grant; the receiver changes to `Some(reason)` when it ends.
    pub fn follow(&self, grant_id: &str) -> Verdict {
        let Ok(mut grants) = self.grants.lock() else {
            // A poisoned map: treat the grant as ended rather than unwatched.
            return watch::channel(Some("the gateway cannot follow this grant".to_string())).1;
        };
        grants.entry(grant_id.to_string()).or_insert_with(|| watch::channel(None).0).subscribe()
    }

    /// Grants some session still follows (forgetting the others).
    fn followed(&self) -> Vec<String> {
        let Ok(mut grants) = self.grants.lock() else { return Vec::new() };
        grants.retain(|_, sender| sender.receiver_count() > 0 && sender.borrow().is_none());
        grants.keys().cloned().collect()
    }

    fn end(&self, grant_id: &str, reason: &str) {
        if let Ok(grants) = self.grants.lock()
            && let Some(sender) = grants.get(grant_id)
        {
            tracing::info!(grant = grant_id, reason, "grant ended: closing its sessions");
            sender.send_replace(Some(reason.to_string()));
        }
    }
}

/// Checks the followed grants forever; `wake` (the embedded server's revocation signal)
/// triggers a check at once.
pub async fn check_forever(standing: Arc<Standing>, control: Arc<dyn ControlPlane>, wake: Option<Arc<Notify>>) {
    loop {
        crate::control::pause(CHECK_EVERY, wake.as_deref()).await;
        let grants = standing.followed();
        if grants.is_empty() {
            continue;
        }
        match control.grant_standing(&GrantStandingRequest { grants }).await {
            Ok(answer) => {
                for ended in answer.ended {
                    standing.end(&ended.grant_id, &ended.reason);
                }
            }
            // Revoked: nothing it brokers may go on (the server has voided the grants too).
            Err(e @ ControlError::NotTrusted(_)) => {
                tracing::error!(error = %e, "ending every running session");
                for grant in standing.followed() {
                    standing.end(&grant, &e.to_string());
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot check whether running sessions' grants still hold"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_is_followed_while_a_session_holds_its_verdict() {
        let standing = Standing::default();
        let first = standing.follow("g1");
        let second = standing.follow("g1");
        let other = standing.follow("g2");
        assert_eq!(standing.followed().len(), 2);
        standing.end("g1", "revoked by bob: done");
        assert_eq!(first.borrow().as_deref(), Some("revoked by bob: done"));
        assert_eq!(second.borrow().as_deref(), Some("revoked by bob: done"));
        assert!(other.borrow().is_none());
        // Ended grants and grants nobody follows any more are not asked about again.
        drop(other);
        assert!(standing.followed().is_empty());
    }
}
