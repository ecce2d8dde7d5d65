//! Who is told that a user's tasks changed: the event streams open on this
//! instance, woken per user. A wake-up carries nothing but "look again": a
//! stream reads what changed from the change feed (`tasks::changes`) after
//! its own cursor, so a wake-up that is lost, doubled or merged with others
//! never loses or repeats an event.
//!
//! On PostgreSQL every instance `LISTEN`s: the trigger that numbers a change
//! `NOTIFY`s its user at commit, whichever instance (or tool) wrote it. On
//! SQLite (one process) the service wakes streams itself after each write.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::sync::watch;

/// The channel the `trash_and_changes` migration's trigger notifies, with
/// the user id as payload.
pub const CHANNEL: &str = "task_changes";

/// The open streams of each user, and their wake-up.
#[derive(Debug)]
pub struct ChangeHub {
    users: Mutex<HashMap<String, Streams>>,
    max_streams_per_user: usize,
    /// How often a stream with nothing to send writes a comment.
    keep_alive: Duration,
    /// Whether this process's own writes wake the streams (SQLite), rather
    /// than the database's notifications (PostgreSQL).
    wakes_on_own_writes: bool,
}

#[derive(Debug)]
struct Streams {
    wake: watch::Sender<()>,
    open: usize,
}

/// One open stream: woken when its user's tasks change; closing it (drop)
/// frees its place under `MAX_STREAMS_PER_USER`.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<ChangeHub>,
    user_id: String,
    pub woken: watch::Receiver<()>,
}

impl ChangeHub {
    pub fn new(
        max_streams_per_user: usize,
        keep_alive: Duration,
        wakes_on_own_writes: bool,
    ) -> Self {
        Self {
            users: Mutex::default(),
            max_streams_per_user,
            keep_alive,
            wakes_on_own_writes,
        }
    }

    /// How often a stream with nothing to send writes a comment
    /// (`STREAM_KEEP_ALIVE`).
    pub fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    /// A write of this process to the user's tasks has committed.
    pub fn written(&self, user_id: &str) {
        if self.wakes_on_own_writes {
            self.notify(user_id);
        }
    }

    /// Tasks of any users were deleted by this process (the purge).
    pub fn written_by_many(&self) {
        if self.wakes_on_own_writes {
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
    /// allowed (`None`).
    pub fn subscribe(self: &Arc<Self>, user_id: &str) -> Option<Subscription> {
        let mut users = self.lock();
        let streams = users.entry(user_id.to_owned()).or_insert_with(|| Streams {
            wake: watch::Sender::new(()),
            open: 0,
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
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut users = self.hub.lock();
        if let Some(streams) = users.get_mut(&self.user_id) {
            streams.open -= 1;
            if streams.open == 0 {
                users.remove(&self.user_id);
            }
        }
    }
}

/// Forwards the database's notifications to `hub` for as long as the
/// process runs: `LISTEN` on a session of its own at `url`, reconnecting
/// after a lost connection (every stream then looks again, having perhaps
/// missed a notification meanwhile).
pub async fn listen_forever(url: String, hub: Arc<ChangeHub>) {
    use sea_orm::sqlx::postgres::PgListener;
    const RETRY: Duration = Duration::from_secs(1);
    loop {
        let mut listener = match PgListener::connect(&url).await {
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
        tracing::info!("listening for changes");
        hub.notify_all();
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => hub.notify(notification.payload()),
                // The connection was lost and is back (PgListener listens
                // again by itself): notifications in between are gone.
                Ok(None) => {
                    tracing::warn!("change listener reconnected; streams catch up");
                    hub.notify_all();
                }
                Err(err) => {
                    tracing::warn!(error = %err, "change listener failed; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
