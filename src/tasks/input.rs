//! A write to a task once its request has been read: a complete task to
//! create or replace, or the changes of a partial update.

use chrono::{DateTime, Datelike, SubsecRound, Timelike, Utc};

use super::Priority;

/// A complete task as sent to create (POST) or replace (PUT).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDraft {
    pub title: String,
    pub description: Option<String>,
    pub priority: Priority,
    pub due_date: Option<DateTime<Utc>>,
    /// Normalised: trimmed, lower-cased, unique, sorted.
    pub tags: Vec<String>,
    /// Only PUT may set it; `None` keeps the current state.
    pub completed: Option<bool>,
}

/// A partial update (PATCH): `None` leaves a field unchanged; for nullable
/// fields `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskChanges {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub priority: Option<Priority>,
    pub due_date: Option<Option<DateTime<Utc>>>,
    pub tags: Option<Vec<String>>,
    pub completed: Option<bool>,
}

impl From<TaskDraft> for TaskChanges {
    /// A replace is an update of every field, absent optional ones reset.
    fn from(draft: TaskDraft) -> Self {
        Self {
            title: Some(draft.title),
            description: Some(draft.description),
            priority: Some(draft.priority),
            due_date: Some(draft.due_date),
            tags: Some(draft.tags),
            completed: draft.completed,
        }
    }
}

/// Which stored versions of a task a write may change: the `If-Match`
/// condition, checked in the write's own statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IfVersion {
    /// Whichever version is stored (no `If-Match`, or `If-Match: *`).
    #[default]
    Any,
    /// Only one of these; none at all when every tag sent was weak or not a
    /// version.
    OneOf(Vec<i64>),
}

/// What a valid timestamp looks like, for the 422 that rejects one.
pub const TIMESTAMP_RULE: &str = "must be an RFC 3339 date-time such as `2026-12-01T17:00:00Z`, \
     between years 0001 and 9999 in UTC";

/// Parses an RFC 3339 date-time into UTC at the microsecond precision both
/// databases store. Its UTC value must fall in years 1..=9999, the range
/// RFC 3339 can write back (an offset can push `9999-12-31` past it). A leap
/// second (`23:59:60`) reads as the next second, as PostgreSQL stores it.
pub fn parse_timestamp(value: &str) -> Option<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(value)
        .ok()?
        .with_timezone(&Utc);
    let at = match at.nanosecond().checked_sub(1_000_000_000) {
        Some(nanos) => DateTime::from_timestamp(at.timestamp() + 1, nanos)?,
        None => at,
    };
    (1..=9999).contains(&at.year()).then(|| at.trunc_subsecs(6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_dates_are_normalised_to_utc_microseconds() {
        let due = parse_timestamp("2026-12-01T19:00:00.123456789+02:00").unwrap();
        assert_eq!(due.to_rfc3339(), "2026-12-01T17:00:00.123456+00:00");
    }

    #[test]
    fn a_timestamp_must_stay_within_the_years_rfc_3339_can_write() {
        assert!(parse_timestamp("9999-12-31T23:00:00-02:00").is_none());
        assert!(parse_timestamp("0001-01-01T00:00:00Z").is_some());
    }
}
