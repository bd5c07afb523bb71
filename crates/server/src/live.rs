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

/// An event and the user it concerns (the requester), or the end of a holder's streams.
// Events are few (one per request change): boxing them buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Published {
    Event {
        event: LiveEvent,
        requester_id: String,
    },
    /// For one user's devices only.
    Personal {
        event: LiveEvent,
        user_id: String,
    },
    /// The user's (or one device's) access changed: their streams end, and a client that
    /// reconnects does so with what it may see now (or is refused).
    Close {
        user_id: String,
        device_id: Option<String>,
    },
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
        let _ = self.0.send(Published::Event { event, requester_id: requester_id.to_string() });
    }

    /// To one user's devices only.
    pub fn tell_user(&self, event: LiveEvent, user_id: &str) {
        let _ = self.0.send(Published::Personal { event, user_id: user_id.to_string() });
    }

    /// Ends the live streams of a user (or of one of their devices).
    pub fn close_streams(&self, user_id: &str, device_id: Option<&str>) {
        let _ = self.0.send(Published::Close { user_id: user_id.to_string(), device_id: device_id.map(String::from) });
    }
}

/// Who sees what: a requester sees events about their own requests; approvers see everyone
/// else's (an approver never needs their own request in their inbox).
fn visible_to(caller: &Caller, requester_id: &str) -> bool {
    requester_id == caller.user_id || caller.has(Role::Approver)
}

#[allow(clippy::large_enum_variant)]
enum Next {
    Send(LiveEvent),
    Skip,
    End,
}

fn next_for(caller: &Caller, item: Result<Published, BroadcastStreamRecvError>) -> Next {
    match item {
        Ok(Published::Event { event, requester_id }) if visible_to(caller, &requester_id) => Next::Send(event),
        Ok(Published::Personal { event, user_id }) if user_id == caller.user_id => Next::Send(event),
        Ok(Published::Close { user_id, device_id })
            if user_id == caller.user_id && device_id.as_ref().is_none_or(|d| *d == caller.device_id) =>
        {
            Next::End
        }
        Ok(_) => Next::Skip,
        Err(BroadcastStreamRecvError::Lagged(_)) => Next::Send(LiveEvent::Resync),
    }
}

pub async fn stream(
    State(state): State<Arc<ServerState>>,
    Extension(caller): Extension<Caller>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = BroadcastStream::new(state.live.0.subscribe())
        .map(move |item| next_for(&caller, item))
        .take_while(|next| std::future::ready(!matches!(next, Next::End)))
        .filter_map(|next| {
            std::future::ready(match next {
                Next::Send(e) => Some(Ok(Event::default().json_data(e).unwrap_or_default())),
                _ => None,
            })
        });
    // A first event tells the client the subscription is live.
    let hello = futures_util::stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    Sse::new(hello.chain(events)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
