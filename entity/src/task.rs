use sea_orm::entity::prelude::*;

/// How important a task is; sorts `low` < `medium` < `high`.
// Stored as its rank so that sorting by priority is a plain column sort.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
#[sea_orm(rs_type = "i32", db_type = "Integer")]
pub enum Priority {
    Low = 0,
    /// What a task gets when none is given.
    #[default]
    Medium = 1,
    High = 2,
}

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: String,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    pub priority: Priority,
    pub due_date: Option<DateTimeUtc>,
    pub completed_at: Option<DateTimeUtc>,
    /// [`search_key`] of `title`, computed in Rust: SQL `LOWER()` folds only
    /// ASCII on SQLite (and on PostgreSQL under the C collation), and search
    /// must be Unicode-aware.
    pub title_search: String,
    /// [`search_key`] of `description`, for the same reason as `title_search`.
    pub description_search: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// 1 when created, +1 on every change: the task's entity tag.
    pub version: i64,
    /// When the task was moved to the trash; `None` while it is live.
    pub deleted_at: Option<DateTimeUtc>,
    #[sea_orm(belongs_to, from = "user_id", to = "id", on_delete = "Cascade")]
    pub user: BelongsTo<super::user::Entity>,
    #[sea_orm(has_many, via = "task_tag")]
    pub tags: HasMany<super::tag::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}

/// What the `*_search` columns hold, and what a search query is turned into
/// before it is matched against them as a substring: compatibility-normalised
/// (NFKC: `ﬁ` is `fi`, full-width `Ａ` is `A`) and fully case-folded (`Σ`,
/// `σ` and `ς` all match, `ß` matches `ss`). `İ` folds to `i` plus a
/// combining dot; the dot is dropped so that `istanbul` finds `İstanbul`.
pub fn search_key(text: &str) -> String {
    use icu_casemap::CaseMapper;
    use icu_normalizer::ComposingNormalizer;
    let nfkc = ComposingNormalizer::new_nfkc();
    let folded = CaseMapper::new()
        .fold_string(&nfkc.normalize(text))
        .into_owned();
    nfkc.normalize(&folded).replace("i\u{307}", "i")
}

#[cfg(test)]
mod tests {
    use super::search_key;

    #[test]
    fn search_keys_fold_case_and_compatibility_forms() {
        assert_eq!(search_key("ΟΔΟΣ"), "οδοσ");
        assert_eq!(search_key("οδος"), "οδοσ");
        assert_eq!(search_key("ﬁnance"), "finance");
        assert_eq!(search_key("İstanbul"), "istanbul");
        assert_eq!(search_key("Straße"), "strasse");
        assert_eq!(search_key("BRÛLÉE"), search_key("brûlée"));
        assert_eq!(search_key("Ｔｏｄｏ"), "todo");
    }
}
