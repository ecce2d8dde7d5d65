use std::{collections::VecDeque, task::Poll, time::Duration};

use bytes::Bytes;
use futures_util::{StreamExt, stream::BoxStream};
use poem::{
    Body, IntoResponse, Response,
    web::{Data, sse::Event},
};
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Header, Path, Query},
    payload::{EventStream, Payload},
    registry::{MetaSchemaRef, Registry},
    types::{ToJSON, Type},
};
use sea_orm::DatabaseConnection;

use super::{ApiTags, schema::Change, security::BearerAuth};
use crate::{
    auth::Owner,
    error::ApiError,
    events::Subscription,
    state::AppState,
    tasks::{self, ChangeCursor},
};

pub struct EventsApi;

/// Changes read from the feed per query while a stream catches up.
const PAGE: u64 = 100;

#[derive(ApiResponse)]
enum ChangeEvents {
    /// A stream of `change` events, one per change, each with `id:` the
    /// cursor after it and `data:` the `Change`; a `: keep-alive` comment
    /// line after 15 s without an event. It ends when the token expires:
    /// reconnect with a fresh token and `Last-Event-ID`.
    #[oai(status = 200)]
    Stream(ChangeStream),
}

#[OpenApi(
    tag = "ApiTags::Sync",
    response_header(
        name = "X-Request-Id",
        ty = "String",
        description = "The request's `X-Request-Id` if it sent a usable one, else a new id; quote it when reporting a problem."
    )
)]
impl EventsApi {
    /// Stream changes as they happen
    ///
    /// Server-Sent Events: every change to your tasks, made through any
    /// instance, as a `change` event carrying the same `Change` as
    /// `listChanges`, with the cursor after it as the event's `id`. With
    /// `Last-Event-ID` (or `since`) the stream first replays what changed
    /// after it, then goes live: no gap, no duplicate. Without either it
    /// starts with what changes from now on. A cursor too old answers `410`
    /// before the stream starts; more than `MAX_STREAMS_PER_USER` open
    /// streams answers `429`.
    #[oai(
        path = "/api/:user_id/events",
        method = "get",
        operation_id = "streamChanges"
    )]
    async fn stream_changes(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Your user id (the token's `sub`).
        user_id: Path<String>,
        /// A `cursor` (of `listChanges`) or event `id` to resume after.
        since: Query<Option<ChangeCursor>>,
        /// The `id` of the last event received, as browsers send it when
        /// they reconnect; wins over `since`.
        #[oai(name = "Last-Event-ID")]
        last_event_id: Header<Option<ChangeCursor>>,
    ) -> Result<ChangeEvents, ApiError> {
        let owner = auth.owner(&state, &user_id).await?;
        // Subscribed (and, on PostgreSQL, registered for notifications)
        // before the first read: a change committed after that read wakes
        // the stream.
        let subscription = state
            .changes
            .subscribe(owner.id())
            .ok_or(ApiError::TooManyStreams)?;
        subscription.register().await?;
        let db = state.db.reader.clone();
        let feed = match last_event_id.0.or(since.0) {
            // A replay's first page is read now, so an expired cursor is
            // a 410 rather than a stream that ends at once.
            Some(cursor) => {
                let page = tasks::changes(&db, &owner, Some(cursor.0), PAGE).await?;
                Feed::at(db, owner, subscription, page)
            }
            None => {
                let now = tasks::last_change(&db, &owner).await?;
                Feed::at(
                    db,
                    owner,
                    subscription,
                    tasks::ChangePage {
                        changes: Vec::new(),
                        through: now,
                        has_more: false,
                    },
                )
            }
        };
        let expires = auth.0.exp.map(|exp| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            tokio::time::Instant::now() + Duration::from_secs(exp.saturating_sub(now))
        });
        let changes = futures_util::stream::unfold(feed, move |feed| feed.next(expires)).boxed();
        Ok(ChangeEvents::Stream(ChangeStream {
            changes,
            keep_alive: state.changes.keep_alive(),
        }))
    }
}

/// The `text/event-stream` body: one `change` event per change, and a
/// `: keep-alive` comment whenever nothing was sent for `keep_alive`.
/// (poem's `EventStream` writes a bare `:` on a fixed clock; the contract
/// names the comment, and a busy stream needs none.)
pub struct ChangeStream {
    changes: BoxStream<'static, Change>,
    keep_alive: Duration,
}

const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

impl Payload for ChangeStream {
    const CONTENT_TYPE: &'static str = "text/event-stream";

    fn schema_ref() -> MetaSchemaRef {
        EventStream::<BoxStream<'static, Change>>::schema_ref()
    }

    fn register(registry: &mut Registry) {
        Change::register(registry);
    }
}

impl IntoResponse for ChangeStream {
    fn into_response(self) -> Response {
        let Self {
            mut changes,
            keep_alive,
        } = self;
        let mut quiet =
            tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
        quiet.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let body = futures_util::stream::poll_fn(move |cx| {
            if let Poll::Ready(change) = changes.poll_next_unpin(cx) {
                quiet.reset();
                return Poll::Ready(change.map(|change| Ok(event_of(change))));
            }
            quiet.poll_tick(cx).map(|_| {
                Some(Ok::<_, std::io::Error>(Bytes::from_static(
                    KEEP_ALIVE_COMMENT,
                )))
            })
        });
        Response::builder()
            .content_type(Self::CONTENT_TYPE)
            .header("Cache-Control", "no-cache")
            // nginx would otherwise buffer the stream.
            .header("X-Accel-Buffering", "no")
            .body(Body::from_bytes_stream(body))
    }
}

fn event_of(change: Change) -> Bytes {
    let id = ChangeCursor(change.seq).to_string();
    Event::message(change.to_json_string())
        .id(id)
        .event_type("change")
        .to_string()
        .into()
}

/// Where a stream is in its user's change feed.
struct Feed {
    db: DatabaseConnection,
    owner: Owner,
    subscription: Subscription,
    pending: VecDeque<Change>,
    through: i64,
    has_more: bool,
}

impl Feed {
    fn at(
        db: DatabaseConnection,
        owner: Owner,
        subscription: Subscription,
        page: tasks::ChangePage,
    ) -> Self {
        Self {
            db,
            owner,
            subscription,
            pending: page.changes.into_iter().map(Change::from).collect(),
            through: page.through,
            has_more: page.has_more,
        }
    }

    /// The next change, read from the feed only when the client has taken
    /// the ones before (a slow reader holds one page, never a backlog);
    /// `None` ends the stream: the token expired, or the feed failed (the
    /// client resumes from its last id).
    async fn next(mut self, expires: Option<tokio::time::Instant>) -> Option<(Change, Self)> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Some((change, self));
            }
            if !self.has_more {
                let expiry = async {
                    match expires {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    woken = self.subscription.woken.changed() => woken.ok()?,
                    () = expiry => return None,
                }
            }
            match tasks::changes(&self.db, &self.owner, Some(self.through), PAGE).await {
                Ok(page) => {
                    self.pending = page.changes.into_iter().map(Change::from).collect();
                    self.through = page.through;
                    self.has_more = page.has_more;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "event stream ends: cannot read the change feed");
                    return None;
                }
            }
        }
    }
}
