//! Live updates for connected devices (server-sent events).
//!
//! Events go through the store's outbox (`live_events`), never only through memory: a replica
//! publishes by appending a row, and every replica (this one included) reads the rows newer
//! than the last it saw and fans them out to its own streams. On PostgreSQL a NOTIFY wakes the
//! readers at once; a short poll covers a notification lost while a listener reconnected (and
//! SQLite). Each event carries its sequence number as the SSE id, so a client that reconnects
//! — to any replica — with `Last-Event-ID` is sent what it missed.

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use portcullis_proto::{LiveEvent, Role};
use tokio::sync::{Notify, broadcast};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::ServerState;
use crate::auth::Caller;
use crate::store::Store;

/// An event and the user it concerns (the requester), or the end of a holder's streams.
// Events are few (one per request change): boxing them buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "to")]
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

/// How often a replica reads the outbox without being woken (a lost notification, SQLite).
const POLL: Duration = Duration::from_millis(250);

struct Inner {
    /// What this replica's streams receive: (sequence number, event).
    local: broadcast::Sender<(i64, Published)>,
    /// Wakes this replica's reader at once after it published.
    published: Notify,
}

#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
    store: Store,
}

impl Bus {
    /// The bus of one replica; its reader runs until the bus is dropped.
    pub async fn start(store: Store) -> Result<Self, crate::ServerError> {
        let inner = Arc::new(Inner { local: broadcast::channel(1024).0, published: Notify::new() });
        let head = store.live_head().await?;
        let wakeups = store.live_wakeups().await?;
        tokio::spawn(read_outbox(store.clone(), Arc::downgrade(&inner), head, wakeups));
        Ok(Self { inner, store })
    }

    async fn append(&self, published: Published) {
        let (payload, now) = match encoded(&published) {
            Ok(p) => p,
            Err(e) => return tracing::error!(error = %e, "a live event does not serialise"),
        };
        match self.store.publish_live(&payload, now).await {
            Ok(_) => self.inner.published.notify_one(),
            // What changed is committed; a client that misses the event sees it at its next
            // refresh (and the store refusing writes is an outage of its own, logged there).
            Err(e) => tracing::error!(error = %e, "a live event could not be published"),
        }
    }

    /// Publishes `event` with the change `tx` makes: it goes out if and only if `tx` commits
    /// (no event for a change rolled back, none lost to a crash between commit and publish),
    /// and it costs no transaction of its own. Call [`Bus::published`] after the commit.
    pub async fn publish_in(
        &self,
        tx: &mut crate::store::Tx<'_>,
        event: LiveEvent,
        requester_id: &str,
    ) -> Result<(), crate::ServerError> {
        let published = Published::Event { event, requester_id: requester_id.to_string() };
        let (payload, now) = encoded(&published).map_err(|e| crate::ServerError::Internal(e.to_string()))?;
        Store::publish_live_in(tx, &payload, now).await?;
        Ok(())
    }

    /// Wakes this replica's reader after a commit that published (the others are woken by the
    /// database, or poll).
    pub fn published(&self) {
        self.inner.published.notify_one()
    }

    /// To one user's devices only.
    pub async fn tell_user(&self, event: LiveEvent, user_id: &str) {
        self.append(Published::Personal { event, user_id: user_id.to_string() }).await
    }

    /// Ends the live streams of a user (or of one of their devices), on every replica.
    pub async fn close_streams(&self, user_id: &str, device_id: Option<&str>) {
        self.append(Published::Close { user_id: user_id.to_string(), device_id: device_id.map(String::from) }).await
    }
}

/// An outbox row: the event's JSON and when it was published.
fn encoded(published: &Published) -> Result<(String, i64), serde_json::Error> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    Ok((serde_json::to_string(published)?, now))
}

/// Reads the outbox after `seen` and fans each new event out to this replica's streams.
async fn read_outbox(
    store: Store,
    bus: Weak<Inner>,
    mut seen: i64,
    mut wakeups: Option<crate::store::live::LiveWakeups>,
) {
    loop {
        let Some(inner) = bus.upgrade() else { return };
        loop {
            match store.live_since(seen, 500).await {
                Ok(rows) if rows.is_empty() => break,
                Ok(rows) => {
                    for (seq, payload) in rows {
                        seen = seq;
                        match serde_json::from_str::<Published>(&payload) {
                            Ok(published) => {
                                let _ = inner.local.send((seq, published));
                            }
                            Err(e) => tracing::warn!(seq, error = %e, "an unreadable live event was skipped"),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read live events; retrying");
                    break;
                }
            }
        }
        let woken = async {
            match wakeups.as_mut() {
                Some(w) => {
                    if let Err(e) = w.next().await {
                        tracing::warn!(error = %e, "the live-event listener failed; polling");
                        wakeups = None;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = inner.published.notified() => {}
            _ = woken => {}
            _ = tokio::time::sleep(POLL) => {}
        }
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

fn next_for(caller: &Caller, item: Result<(i64, Published), BroadcastStreamRecvError>) -> (Option<i64>, Next) {
    match item {
        Ok((seq, published)) => (Some(seq), visible(caller, published)),
        Err(BroadcastStreamRecvError::Lagged(_)) => (None, Next::Send(LiveEvent::Resync)),
    }
}

fn visible(caller: &Caller, published: Published) -> Next {
    match published {
        Published::Event { event, requester_id } if visible_to(caller, &requester_id) => Next::Send(event),
        Published::Personal { event, user_id } if user_id == caller.user_id => Next::Send(event),
        Published::Close { user_id, device_id }
            if user_id == caller.user_id && device_id.as_ref().is_none_or(|d| *d == caller.device_id) =>
        {
            Next::End
        }
        _ => Next::Skip,
    }
}

fn sse(seq: Option<i64>, event: &LiveEvent) -> Event {
    let e = Event::default().json_data(event).unwrap_or_default();
    match seq {
        Some(seq) => e.id(seq.to_string()),
        None => e,
    }
}

/// The live stream. `Last-Event-ID` (what a reconnecting client last saw, from any replica)
/// replays the events after it that the caller may see; events older than the outbox keeps
/// (an hour) are answered with a resync.
pub async fn stream(
    State(state): State<Arc<ServerState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribed before the replay is read: nothing falls between the two.
    let live = BroadcastStream::new(state.live.inner.local.subscribe());
    let last_seen = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok());
    let mut replay: Vec<(Option<i64>, Next)> = Vec::new();
    let mut replayed_through = 0;
    if let Some(after) = last_seen {
        let kept_from = state.db.live_oldest().await.unwrap_or(i64::MAX);
        match state.db.live_since(after, 1000).await {
            // (Sequence numbers may skip, a rolled-back insert's; only a deleted range is a gap.)
            Ok(rows) if kept_from == 0 || after + 1 >= kept_from => {
                for (seq, payload) in rows {
                    replayed_through = seq;
                    if let Ok(published) = serde_json::from_str::<Published>(&payload) {
                        replay.push((Some(seq), visible(&caller, published)));
                    }
                }
            }
            // A gap: what it missed is no longer kept (or could not be read).
            _ => replay.push((None, Next::Send(LiveEvent::Resync))),
        }
    }
    let events = futures_util::stream::iter(replay)
        .chain(
            live.map(move |item| next_for(&caller, item))
                .filter(move |(seq, _)| std::future::ready(seq.is_none_or(|s| s > replayed_through))),
        )
        .take_while(|(_, next)| std::future::ready(!matches!(next, Next::End)))
        .filter_map(|(seq, next)| {
            std::future::ready(match next {
                Next::Send(e) => Some(Ok(sse(seq, &e))),
                _ => None,
            })
        });
    // Counted open while the stream lives (the guard goes with it).
    let open = crate::metrics::LiveStreamOpen::open();
    let events = events.map(move |e| {
        let _open = &open;
        e
    });
    // A first event tells the client the subscription is live.
    let hello = futures_util::stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    Sse::new(hello.chain(events)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
