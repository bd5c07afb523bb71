//! Live updates for connected devices (server-sent events).
//!
//! One in-process broadcast bus. With several replicas on PostgreSQL this bus is where
//! LISTEN/NOTIFY plugs in; handlers only call [`Bus::publish`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use portcullis_proto::{LiveEvent, Role};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::ServerState;
use crate::auth::Caller;

/// An event and the user it concerns (the requester).
#[derive(Clone, Debug)]
pub struct Published {
    pub event: LiveEvent,
    pub requester_id: String,
}

#[derive(Clone)]
pub struct Bus(broadcast::Sender<Published>);

impl Default for Bus {
    fn default() -> Self {
        Self(broadcast::channel(1024).0)
    }
}

impl Bus {
    /// Fire and forget: nobody listening is fine.
    pub fn publish(&self, event: LiveEvent, requester_id: &str) {
        let _ = self.0.send(Published { event, requester_id: requester_id.to_string() });
    }
}

/// Who sees what: a requester sees events about their own requests; approvers see everyone
/// else's (an approver never needs their own request in their inbox).
fn visible_to(caller: &Caller, published: &Published) -> bool {
    let own = published.requester_id == caller.user_id;
    own || caller.has(Role::Approver)
}

pub async fn stream(
    State(state): State<Arc<ServerState>>,
    Extension(caller): Extension<Caller>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = BroadcastStream::new(state.live.0.subscribe()).filter_map(move |item| {
        let out = match item {
            Ok(published) if visible_to(&caller, &published) => Some(published.event),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(_)) => Some(LiveEvent::Resync),
        };
        std::future::ready(out.map(|e| Ok(Event::default().json_data(e).unwrap_or_default())))
    });
    // A first event tells the client the subscription is live.
    let hello = futures_util::stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    Sse::new(hello.chain(events)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
