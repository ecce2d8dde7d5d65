//! Idempotent retries (draft-ietf-httpapi-idempotency-key-header). A write
//! sent with an `Idempotency-Key` runs at most once per user and key: the
//! response it got is remembered in the write's own transaction, so a crash
//! never keeps one without the other, and a retry with the same key and the
//! same request gets that response again instead of writing twice. Keys live
//! in the database, shared by every instance, until `IDEMPOTENCY_TTL`.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use entity::idempotency_key;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    ExprTrait, QueryFilter, SqlErr, TransactionTrait,
    sea_query::{Expr, Func, OnConflict, Query},
};
use sha2::{Digest, Sha256};

use crate::{auth::Owner, error::ApiError};

/// The longest key, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// A valid `Idempotency-Key`: 1 to [`MAX_KEY_CHARS`] printable ASCII
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// What a valid header looks like, for the 400 that rejects one.
    pub const RULE: &str = "must be one header line of 1 to 255 printable ASCII characters, \
         bare (`abc`) or in double quotes (`\"abc\"`)";

    /// Reads a header's raw value: a structured-field string (`"abc"`, the
    /// draft's form) or the bare key (`abc`, as Stripe's clients send it).
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(raw).ok()?.trim_matches([' ', '\t']);
        let key = match text.strip_prefix('"') {
            Some(quoted) => quoted
                .strip_suffix('"')
                .filter(|inner| !inner.contains(['"', '\\']))?,
            None => text,
        };
        let printable = key.bytes().all(|b| (b' '..=b'~').contains(&b));
        ((1..=MAX_KEY_CHARS).contains(&key.len()) && printable).then(|| Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What identifies a request for its key: SHA-256 (hex) of its method, path
/// and JSON body (as parsed, so whitespace does not count).
pub fn fingerprint(method: &str, path: &str, body: Option<&serde_json::Value>) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update(b" ");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    if let Some(body) = body {
        hash.update(body.to_string().as_bytes());
    }
    format!("{:x}", hash.finalize())
}

/// A response as remembered for a key's retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub status: u16,
    /// The JSON body.
    pub body: String,
    pub location: Option<String>,
    pub etag: Option<String>,
}

/// What a request with a key got: its own write's result, or the response
/// remembered from an earlier request with the same key.
#[derive(Debug)]
pub enum Outcome<T> {
    Ran(T),
    Replayed(Remembered),
}

/// The keys and their lifetime, shared by every request.
pub struct Idempotency {
    ttl: Duration,
    /// On SQLite (one process): the keys whose request is being worked on.
    /// On PostgreSQL an advisory lock does this across instances.
    in_flight: Arc<Mutex<HashSet<(String, IdempotencyKey)>>>,
}

impl Idempotency {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            in_flight: Arc::default(),
        }
    }

    /// Runs `write` once for this user and key: in one transaction with the
    /// remembered response (`remember` of its result; 404 and 422 problems
    /// too). A request whose key an earlier request with the same fingerprint
    /// used gets that response back ([`Outcome::Replayed`]), one with another
    /// fingerprint a 422, one while the first is still running a 409. An
    /// error that is not remembered (a 5xx) rolls everything back, so a retry
    /// runs again.
    pub async fn run<T>(
        &self,
        db: &DatabaseConnection,
        owner: &Owner,
        key: &IdempotencyKey,
        fingerprint: String,
        write: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, ApiError>,
        remember: impl FnOnce(&T) -> Remembered,
    ) -> Result<Outcome<T>, ApiError> {
        let user_id = owner.id();
        // Another request with this key on this instance: told at once.
        // Across instances, the key's advisory lock tells (see `write_once`).
        let _in_flight = self.claim(user_id, key)?;
        let txn = db.begin().await?;
        let request = KeyedRequest {
            user_id,
            key,
            fingerprint: &fingerprint,
        };
        // Every path ends the transaction before answering: a dropped one
        // would hold the key's advisory lock until its connection is reused.
        match self.write_once(&txn, request, write, remember).await {
            Ok(End::Commit(result)) => {
                txn.commit().await?;
                result.map(Outcome::Ran)
            }
            Ok(End::RollBack(outcome)) => {
                txn.rollback().await?;
                outcome
            }
            Ok(End::Earlier) => {
                txn.rollback().await?;
                earlier_response(db, user_id, key, &fingerprint).await
            }
            Err(err) => {
                if let Err(rollback) = txn.rollback().await {
                    tracing::warn!(error = %rollback, "rolling back after an error failed");
                }
                Err(err)
            }
        }
    }

    /// The work of [`Self::run`] inside its transaction, and how to end it.
    /// The write runs first and the key is stored after it: for a new key
    /// (the common case) that is one statement more than the write alone. A
    /// key already stored is found by that statement, and the write rolled
    /// back.
    async fn write_once<T>(
        &self,
        txn: &DatabaseTransaction,
        request: KeyedRequest<'_>,
        write: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, ApiError>,
        remember: impl FnOnce(&T) -> Remembered,
    ) -> Result<End<T>, ApiError> {
        let KeyedRequest {
            user_id,
            key,
            fingerprint,
        } = request;
        let result = write(txn).await;
        let response = match &result {
            Ok(value) => remember(value),
            Err(err) if is_remembered(err) => Remembered {
                status: err.status().as_u16(),
                body: poem_openapi::types::ToJSON::to_json_string(&err.problem()),
                location: None,
                etag: None,
            },
            // Rolled back: the retry runs again.
            Err(_) => return Ok(End::RollBack(result.map(Outcome::Ran))),
        };
        let now = Utc::now();
        let expires_at =
            now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::MAX);
        use idempotency_key::Column as C;
        let values: [sea_orm::Value; 8] = [
            user_id.into(),
            key.0.as_str().into(),
            fingerprint.into(),
            i32::from(response.status).into(),
            response.body.into(),
            response.location.into(),
            response.etag.into(),
            expires_at.into(),
        ];
        // Stored only if the key's advisory lock is free (PostgreSQL): while
        // another instance's request with this key is between its insert and
        // its commit, this one is in flight beside it. A row past its expiry
        // is forgotten: this request takes its place.
        let mut row = Query::select().exprs(values.map(Expr::val)).to_owned();
        if txn.get_database_backend() == DbBackend::Postgres {
            row.and_where(lock_expr(user_id, key));
        }
        // What a key holds besides its identity, in the order of `values`.
        let remembered = [
            C::Fingerprint,
            C::Status,
            C::Body,
            C::Location,
            C::Etag,
            C::ExpiresAt,
        ];
        let insert = Query::insert()
            .into_table(idempotency_key::Entity)
            .columns([C::UserId, C::Key].into_iter().chain(remembered))
            .select_from(row)
            .map_err(|err| ApiError::Internal(err.into()))?
            .on_conflict(
                OnConflict::columns([C::UserId, C::Key])
                    .update_columns(remembered)
                    .action_and_where(Expr::col((idempotency_key::Entity, C::ExpiresAt)).lte(now))
                    .to_owned(),
            )
            .to_owned();
        match txn.execute(&insert).await.map(|done| done.rows_affected()) {
            Ok(0)
                if txn.get_database_backend() == DbBackend::Postgres
                    && !lock_key(txn, user_id, key).await? =>
            {
                Ok(End::RollBack(Err(ApiError::IdempotencyKeyInFlight)))
            }
            Ok(0) => Ok(End::Earlier),
            Ok(_) => Ok(End::Commit(result)),
            Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Ok(End::RollBack(Err(ApiError::IdempotencyKeyInFlight)))
            }
            Err(err) => Err(err.into()),
        }
    }

    fn claim(&self, user_id: &str, key: &IdempotencyKey) -> Result<InFlight, ApiError> {
        let entry = (user_id.to_owned(), key.clone());
        let mut keys = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if !keys.insert(entry.clone()) {
            return Err(ApiError::IdempotencyKeyInFlight);
        }
        Ok(InFlight {
            keys: self.in_flight.clone(),
            entry,
        })
    }
}

/// Who sent a keyed request, with which key, and what it was.
struct KeyedRequest<'a> {
    user_id: &'a str,
    key: &'a IdempotencyKey,
    fingerprint: &'a str,
}

/// How [`Idempotency::run`] ends its transaction, and what it answers.
enum End<T> {
    /// The write and its remembered response (a 404 or 422 among them).
    Commit(Result<T, ApiError>),
    /// Nothing to keep: a refusal, or an error to run again.
    RollBack(Result<Outcome<T>, ApiError>),
    /// The key was used before: roll the write back and answer what the
    /// earlier request got.
    Earlier,
}

/// What an earlier request with this key got: its response again if it was
/// the same request, a 422 if not.
async fn earlier_response<T>(
    db: &DatabaseConnection,
    user_id: &str,
    key: &IdempotencyKey,
    fingerprint: &str,
) -> Result<Outcome<T>, ApiError> {
    let earlier = idempotency_key::Entity::find_by_id((user_id.to_owned(), key.0.clone()))
        .one(db)
        .await?;
    match earlier {
        Some(earlier) if earlier.fingerprint == fingerprint => Ok(Outcome::Replayed(Remembered {
            status: u16::try_from(earlier.status).unwrap_or_default(),
            body: earlier.body,
            location: earlier.location,
            etag: earlier.etag,
        })),
        Some(_) => Err(ApiError::IdempotencyKeyReused),
        // Swept since: the client's retry will run afresh.
        None => Err(ApiError::IdempotencyKeyInFlight),
    }
}

/// A key being worked on; released when the request ends, however it ends.
struct InFlight {
    keys: Arc<Mutex<HashSet<(String, IdempotencyKey)>>>,
    entry: (String, IdempotencyKey),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.entry);
    }
}

/// 404 and 422 describe the request, so its retries get them again; a 5xx
/// (and anything else) describes a moment, so a retry runs again.
fn is_remembered(err: &ApiError) -> bool {
    matches!(err.status().as_u16(), 404 | 422)
}

/// Advisory locks of this module are in their own class, away from any
/// other user of `pg_advisory_*` on the database.
const LOCK_CLASS: i32 = 0x1dea_0001;

/// `pg_try_advisory_xact_lock` of this user and key: takes the
/// transaction-scoped lock without waiting (or finds it already held by this
/// transaction); false when another transaction, on any instance, holds it.
fn lock_expr(user_id: &str, key: &IdempotencyKey) -> Expr {
    let digest = Sha256::new()
        .chain_update(user_id.as_bytes())
        .chain_update([0])
        .chain_update(key.0.as_bytes())
        .finalize();
    let object = i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    Func::cust("pg_try_advisory_xact_lock")
        .args([LOCK_CLASS.into(), object.into()])
        .into()
}

/// Whether this transaction holds (or can take) the key's advisory lock.
async fn lock_key(
    txn: &DatabaseTransaction,
    user_id: &str,
    key: &IdempotencyKey,
) -> Result<bool, DbErr> {
    let statement = Query::select().expr(lock_expr(user_id, key)).to_owned();
    let row = txn.query_one(&statement).await?;
    Ok(row
        .map(|row| row.try_get_by_index::<bool>(0))
        .transpose()?
        .unwrap_or(false))
}

/// Deletes up to `batch` keys past their `IDEMPOTENCY_TTL`; returns how
/// many. Without an index on `expires_at`, each batch scans until it has
/// found `batch` expired rows, which the oldest rows are.
pub async fn forget_expired(db: &DatabaseConnection, batch: u64) -> Result<u64, DbErr> {
    use idempotency_key::Column as C;
    let expired = Query::select()
        .columns([C::UserId, C::Key])
        .from(idempotency_key::Entity)
        .and_where(Expr::col(C::ExpiresAt).lte(Utc::now()))
        .limit(batch)
        .to_owned();
    let deleted = idempotency_key::Entity::delete_many()
        .filter(Expr::tuple([Expr::col(C::UserId), Expr::col(C::Key)]).in_subquery(expired))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_bare_or_quoted() {
        assert_eq!(IdempotencyKey::parse(b"abc").unwrap().as_str(), "abc");
        assert_eq!(IdempotencyKey::parse(b"\"abc\"").unwrap().as_str(), "abc");
        assert_eq!(IdempotencyKey::parse(b" a b ").unwrap().as_str(), "a b");
        let longest = "k".repeat(MAX_KEY_CHARS);
        assert!(IdempotencyKey::parse(longest.as_bytes()).is_some());
        for bad in [
            &b""[..],
            b"\"\"",
            b"\"abc",
            b"\"a\"b\"",
            b"\"a\\b\"",
            b"caf\xc3\xa9",
            b"a\x01b",
            b"a\x7fb",
            "k".repeat(MAX_KEY_CHARS + 1).as_bytes(),
        ] {
            assert_eq!(IdempotencyKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_fingerprint_covers_method_path_and_body_but_not_whitespace() {
        let body: serde_json::Value = serde_json::from_str(r#"{ "title" : "t" }"#).unwrap();
        let same: serde_json::Value = serde_json::from_str(r#"{"title":"t"}"#).unwrap();
        let other = serde_json::json!({"title": "u"});
        let base = fingerprint("POST", "/api/a/tasks", Some(&body));
        assert_eq!(base, fingerprint("POST", "/api/a/tasks", Some(&same)));
        assert_ne!(base, fingerprint("POST", "/api/a/tasks", Some(&other)));
        assert_ne!(base, fingerprint("POST", "/api/b/tasks", Some(&body)));
        assert_ne!(base, fingerprint("PUT", "/api/a/tasks", Some(&body)));
    }
}
