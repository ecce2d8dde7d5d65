//! User rows, created or refreshed from token claims without a database write
//! on every request.

use std::{collections::HashMap, sync::Mutex};

use chrono::{SubsecRound, Utc};
use entity::user;
use sea_orm::{
    DatabaseConnection, DbErr, EntityTrait,
    sea_query::{Expr, Func, OnConflict},
};

use crate::auth::{Claims, Owner};

/// How many users' last-stored profiles are remembered before the memory is
/// cleared; an evicted user costs one idempotent upsert on the next request.
const REMEMBERED_USERS: usize = 10_000;

/// Longest email or name claim stored; longer values are ignored rather than cut.
const MAX_PROFILE_CHARS: usize = 320;

/// Which users exist with which profile, as last written by this process.
#[derive(Default)]
pub struct KnownUsers {
    stored: Mutex<HashMap<String, Profile>>,
}

#[derive(Clone, PartialEq, Eq)]
struct Profile {
    email: Option<String>,
    name: Option<String>,
}

impl Profile {
    fn from_claims(claims: &Claims) -> Self {
        let usable = |value: &Option<String>| {
            value
                .as_ref()
                .filter(|v| v.chars().count() <= MAX_PROFILE_CHARS && !v.contains('\0'))
                .cloned()
        };
        Self {
            email: usable(&claims.email),
            name: usable(&claims.name),
        }
    }
}

impl KnownUsers {
    /// Provisions the token's user: makes sure it has a row holding its latest
    /// email and name. Writes only when this process has not yet stored this
    /// exact profile.
    pub async fn provision(&self, db: &DatabaseConnection, claims: &Claims) -> Result<(), DbErr> {
        let profile = Profile::from_claims(claims);
        if self.lock().get(&claims.sub) == Some(&profile) {
            return Ok(());
        }
        upsert(db, &claims.sub, &profile).await?;
        let mut stored = self.lock();
        if stored.len() >= REMEMBERED_USERS {
            stored.clear();
        }
        stored.insert(claims.sub.clone(), profile);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Profile>> {
        // The map holds no invariant a panic could break.
        self.stored
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Inserts the user, or refreshes email and name; a claim that is absent keeps
/// what is stored, so an HS256 token without profile claims erases nothing.
async fn upsert(db: &DatabaseConnection, id: &str, profile: &Profile) -> Result<(), DbErr> {
    let now = Utc::now().trunc_subsecs(6);
    let keep_stored = |column: user::Column| {
        Func::coalesce([
            Expr::col(("excluded", column)),
            Expr::col((user::Entity, column)),
        ])
    };
    let row = user::ActiveModel {
        id: sea_orm::Set(id.to_owned()),
        email: sea_orm::Set(profile.email.clone()),
        name: sea_orm::Set(profile.name.clone()),
        created_at: sea_orm::Set(now),
        updated_at: sea_orm::Set(now),
    };
    user::Entity::insert(row)
        .on_conflict(
            OnConflict::column(user::Column::Id)
                .value(user::Column::Email, keep_stored(user::Column::Email))
                .value(user::Column::Name, keep_stored(user::Column::Name))
                .value(user::Column::UpdatedAt, Expr::val(now))
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn find(db: &DatabaseConnection, owner: &Owner) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find_by_id(owner.id()).one(db).await
}
