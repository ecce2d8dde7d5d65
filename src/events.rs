//! Who is told that a user's tasks changed: the event streams open on this
//! instance, woken per user. A wake-up carries nothing but "look again": a
//! stream reads what changed from the change feed (`tasks::changes`) after
//! its own cursor, so a wake-up that is lost, doubled or merged with others
//! never loses or repeats an event.
//!
//! On PostgreSQL every instance `LISTEN`s, and the trigger that numbers a
//! change `NOTIFY`s its user at commit, whichever instance (or tool) wrote
//! it, if some instance has registered the user in `event_listeners`: an
//! instance does so before a user's first stream reads the feed, and
//! unregisters users whose streams have all closed (see the
//! `event_listeners` migration). On SQLite (one process) the service wakes
//! streams itself after each write.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicI32, Ordering},
    },
    time::Duration,
};

use entity::{change_sequence, event_listener};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
    sea_query::{Alias, OnConflict, Query},
};
use tokio::sync::watch;

/// The channel the numbering trigger notifies, with the user id as payload.
pub const CHANNEL: &str = "task_changes";

/// The `application_name` of each instance's `LISTEN` session.
pub const LISTENER_NAME: &str = "todo-api change listener";

/// How often users whose streams have all closed are unregistered, and
/// registrations that failed are tried again.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(30);

/// How a change reaches the streams.
#[derive(Debug)]
pub enum FanOut {
    /// SQLite: this process makes every change and wakes streams itself.
    InProcess,
    /// PostgreSQL: the database notifies the users registered (through this
    /// pool) as having open streams.
    Notifications(DatabaseConnection),
}

/// The open streams of each user, and their wake-up.
#[derive(Debug)]
pub struct ChangeHub {
    users: Mutex<HashMap<String, Streams>>,
    max_streams_per_user: usize,
    /// How often a stream with nothing to send writes a comment.
    keep_alive: Duration,
    fan_out: FanOut,
    /// The backend pid of this instance's `LISTEN` session; 0 while it is
    /// not listening.
    listener: AtomicI32,
}

#[derive(Debug)]
struct Streams {
    wake: watch::Sender<()>,
    open: usize,
    registration: Registration,
}

/// The `LISTEN` session a user is registered under, if any. Held across
/// registering or unregistering, so that the two never interleave for a user.
type Registration = Arc<tokio::sync::Mutex<Option<i32>>>;

/// One open stream: woken when its user's tasks change; closing it (drop)
/// frees its place under `MAX_STREAMS_PER_USER`.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<ChangeHub>,
    user_id: String,
    registration: Registration,
    pub woken: watch::Receiver<()>,
}

impl ChangeHub {
    pub fn new(max_streams_per_user: usize, keep_alive: Duration, fan_out: FanOut) -> Self {
        Self {
            users: Mutex::default(),
            max_streams_per_user,
            keep_alive,
            fan_out,
            listener: AtomicI32::new(0),
        }
    }

    /// How often a stream with nothing to send writes a comment
    /// (`STREAM_KEEP_ALIVE`).
    pub fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    /// Streams open on this instance, for the metrics.
    pub fn open_streams(&self) -> usize {
        self.lock().values().map(|streams| streams.open).sum()
    }

    /// A write of this process to the user's tasks has committed.
    pub fn written(&self, user_id: &str) {
        if let FanOut::InProcess = self.fan_out {
            self.notify(user_id);
        }
    }

    /// Tasks of any users were deleted by this process (the purge).
    pub fn written_by_many(&self) {
        if let FanOut::InProcess = self.fan_out {
            self.notify_all();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Streams>> {
        // A panic while holding it cannot leave the map inconsistent.
        self.users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new stream of `user_id`, unless the user already has the most
    /// allowed (`None`). Call [`Subscription::register`] before its first
    /// read of the feed.
    pub fn subscribe(self: &Arc<Self>, user_id: &str) -> Option<Subscription> {
        let mut users = self.lock();
        let streams = users.entry(user_id.to_owned()).or_insert_with(|| Streams {
            wake: watch::Sender::new(()),
            open: 0,
            registration: Registration::default(),
        });
        if streams.open >= self.max_streams_per_user {
            return None;
        }
        streams.open += 1;
        let mut woken = streams.wake.subscribe();
        woken.mark_unchanged();
        Some(Subscription {
            hub: self.clone(),
            user_id: user_id.to_owned(),
            registration: streams.registration.clone(),
            woken,
        })
    }

    /// Wakes the user's open streams, if any.
    pub fn notify(&self, user_id: &str) {
        if let Some(streams) = self.lock().get(user_id) {
            streams.wake.send_replace(());
        }
    }

    /// Wakes every open stream: after a purge, or once the listener is back
    /// and may have missed notifications.
    pub fn notify_all(&self) {
        for streams in self.lock().values() {
            streams.wake.send_replace(());
        }
    }

    /// Ends every open stream (after the changes it has read): the
    /// process is shutting down.
    pub fn close(&self) {
        // Dropping a user's wake-up ends each of their streams' wait.
        self.lock().clear();
    }

    /// Deletes this instance's registrations (PostgreSQL), once its streams
    /// are closed for good: at shutdown, so that writes stop notifying a
    /// session about to end instead of until another instance reconciles.
    pub async fn unregister_all(&self) -> Result<(), DbErr> {
        let (FanOut::Notifications(db), Some(session)) = (&self.fan_out, self.listener()) else {
            return Ok(());
        };
        event_listener::Entity::delete_many()
            .filter(event_listener::Column::Listener.eq(session))
            .exec(db)
            .await?;
        Ok(())
    }

    /// The `LISTEN` session registrations are made under, if listening.
    fn listener(&self) -> Option<i32> {
        Some(self.listener.load(Ordering::Acquire)).filter(|&pid| pid != 0)
    }

    /// Brings `event_listeners` in line with the open streams: registers
    /// users with open streams under the current `LISTEN` session (waking
    /// their streams, which may have missed changes meanwhile), unregisters
    /// users without, and deletes the rows of sessions that are gone (a
    /// crashed instance's). Nothing to do on SQLite.
    pub async fn reconcile(&self) -> Result<(), DbErr> {
        let FanOut::Notifications(db) = &self.fan_out else {
            return Ok(());
        };
        let users: Vec<(String, Registration)> = self
            .lock()
            .iter()
            .map(|(user_id, streams)| (user_id.clone(), streams.registration.clone()))
            .collect();
        for (user_id, registration) in users {
            let mut registered = registration.lock().await;
            let open = self.lock().get(&user_id).map_or(0, |streams| streams.open);
            if open > 0 {
                if let Some(session) = self.listener()
                    && *registered != Some(session)
                {
                    register(db, &user_id, session).await?;
                    *registered = Some(session);
                    self.notify(&user_id);
                }
                continue;
            }
            if let Some(session) = *registered {
                unregister(db, &user_id, session).await?;
                *registered = None;
            }
            let mut users = self.lock();
            if users.get(&user_id).is_some_and(|streams| {
                streams.open == 0 && Arc::ptr_eq(&streams.registration, &registration)
            }) {
                users.remove(&user_id);
            }
        }
        forget_gone_sessions(db).await
    }
}

impl Subscription {
    /// Makes sure the database notifies this instance of the user's changes
    /// from now on (PostgreSQL): registers the user under this instance's
    /// `LISTEN` session unless already registered. Must complete before the
    /// stream's first read of the feed. While the instance is not listening
    /// this does nothing: registering on (re)connecting wakes every stream.
    pub async fn register(&self) -> Result<(), DbErr> {
        let FanOut::Notifications(db) = &self.hub.fan_out else {
            return Ok(());
        };
        let mut registered = self.registration.lock().await;
        let Some(session) = self.hub.listener() else {
            return Ok(());
        };
        if *registered != Some(session) {
            register(db, &self.user_id, session).await?;
            *registered = Some(session);
        }
        Ok(())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut users = self.hub.lock();
        if let Some(streams) = users.get_mut(&self.user_id) {
            streams.open -= 1;
            // A registered user stays until `reconcile` unregisters them: a
            // stream reopened meanwhile (a reconnect) costs no round trip.
            if streams.open == 0 && matches!(self.hub.fan_out, FanOut::InProcess) {
                users.remove(&self.user_id);
            }
        }
    }
}

/// Registers `user_id` as listened for by `session`, ordered against the
/// user's committing writes (see the `event_listeners` migration): the
/// insert waits for a write that has already numbered its change, and the
/// share lock, held to the commit, makes a write that numbers next wait for
/// the registration. The row is created if the user has no change yet, so
/// there is one to lock.
async fn register(db: &DatabaseConnection, user_id: &str, session: i32) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    change_sequence::Entity::insert(change_sequence::ActiveModel {
        user_id: Set(user_id.to_owned()),
        last_seq: Set(0),
        forgotten_through: Set(0),
    })
    .on_conflict(
        OnConflict::column(change_sequence::Column::UserId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    change_sequence::Entity::find_by_id(user_id)
        .select_only()
        .column(change_sequence::Column::UserId)
        .lock_shared()
        .into_tuple::<String>()
        .one(&txn)
        .await?;
    event_listener::Entity::insert(event_listener::ActiveModel {
        user_id: Set(user_id.to_owned()),
        listener: Set(session),
    })
    .on_conflict(
        OnConflict::columns([
            event_listener::Column::UserId,
            event_listener::Column::Listener,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await
}

async fn unregister(db: &DatabaseConnection, user_id: &str, session: i32) -> Result<(), DbErr> {
    event_listener::Entity::delete_many()
        .filter(event_listener::Column::UserId.eq(user_id))
        .filter(event_listener::Column::Listener.eq(session))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes the registrations of `LISTEN` sessions that no longer exist.
async fn forget_gone_sessions(db: &DatabaseConnection) -> Result<(), DbErr> {
    let sessions = Query::select()
        .column(Alias::new("pid"))
        .from(Alias::new("pg_stat_activity"))
        .to_owned();
    event_listener::Entity::delete_many()
        .filter(event_listener::Column::Listener.not_in_subquery(sessions))
        .exec(db)
        .await?;
    Ok(())
}

/// Forwards the database's notifications to `hub` for as long as the
/// process runs: `LISTEN` on a session of its own at `url`, reconnecting
/// after a lost connection (every stream then looks again, having perhaps
/// missed a notification meanwhile). Registrations follow the session.
pub async fn listen_forever(url: String, hub: Arc<ChangeHub>) {
    use sea_orm::sqlx::{
        self,
        postgres::{PgConnectOptions, PgListener, PgPoolOptions},
    };
    const RETRY: Duration = Duration::from_secs(1);
    tokio::spawn(reconcile_forever(hub.clone()));
    loop {
        // As `PgListener::connect` does, with a name that tells the session
        // apart in `pg_stat_activity`.
        let connected = async {
            let options = url
                .parse::<PgConnectOptions>()?
                .application_name(LISTENER_NAME);
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .max_lifetime(None)
                .idle_timeout(None)
                .connect_with(options)
                .await?;
            PgListener::connect_with(&pool).await
        };
        let mut listener = match connected.await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "cannot connect the change listener; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if let Err(err) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %err, "cannot LISTEN for changes; retrying");
            tokio::time::sleep(RETRY).await;
            continue;
        }
        loop {
            // The session is new (connected, or reconnected by PgListener
            // itself): registrations move to it, and every stream looks again.
            let session = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut listener)
                .await;
            match session {
                Ok(pid) => {
                    hub.listener.store(pid, Ordering::Release);
                    tracing::info!(session = pid, "listening for changes");
                    if let Err(err) = hub.reconcile().await {
                        tracing::warn!(error = %err, "cannot register the users with open streams; retrying later");
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "change listener failed; reconnecting");
                    break;
                }
            }
            hub.notify_all();
            let lost = loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => hub.notify(notification.payload()),
                    // The connection was lost and is back (PgListener listens
                    // again by itself): notifications in between are gone.
                    Ok(None) => break false,
                    Err(err) => {
                        tracing::warn!(error = %err, "change listener failed; reconnecting");
                        break true;
                    }
                }
            };
            if lost {
                break;
            }
            tracing::warn!("change listener reconnected; streams catch up");
        }
        hub.listener.store(0, Ordering::Release);
        tokio::time::sleep(RETRY).await;
    }
}

async fn reconcile_forever(hub: Arc<ChangeHub>) {
    let mut every = tokio::time::interval(RECONCILE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(err) = hub.reconcile().await {
            tracing::warn!(error = %err, "cannot update the users with open streams; retrying later");
        }
    }
}
