use std::{collections::VecDeque, time::Duration};

use futures_util::{StreamExt, stream::BoxStream};
use poem::web::{Data, sse::Event};
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Header, Path, Query},
    payload::EventStream,
    types::ToJSON,
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

/// Longest silence on a stream: proxies and browsers keep a connection that
/// shows a comment line this often.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(ApiResponse)]
enum ChangeEvents {
    /// A stream of `change` events, one per change, each with `id:` the
    /// cursor after it and `data:` the `Change`; a comment line at least
    /// every 15 s. It ends when the token expires: reconnect with a fresh
    /// token and `Last-Event-ID`.
    #[oai(status = 200)]
    Stream(EventStream<BoxStream<'static, Change>>),
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
        // Subscribed before the first read: a change committed after that
        // read wakes the stream.
        let subscription = state
            .changes
            .subscribe(owner.id())
            .ok_or(ApiError::TooManyStreams)?;
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
        let stream = futures_util::stream::unfold(feed, move |feed| feed.next(expires)).boxed();
        let events = EventStream::new(stream)
            .keep_alive(KEEP_ALIVE)
            .to_event(|change: Change| {
                Event::message(change.to_json_string())
                    .id(ChangeCursor(change.seq).to_string())
                    .event_type("change")
            });
        Ok(ChangeEvents::Stream(events))
    }
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
