//! Conditional requests (RFC 9110 §8.8, §13): the `ETag` a task is answered
//! with, and the `If-Match` / `If-None-Match` headers compared with it.

use poem_openapi::{
    registry::MetaSchema,
    types::{ParseError, ParseFromParameter, ParseResult},
};

use crate::{
    error::ApiError,
    state::AppState,
    tasks::{IfVersion, inline_type},
};

/// A task's strong entity tag: its version, quoted (`"7"`).
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// The value of an `If-Match` or `If-None-Match` header: `*`, or a list of
/// entity tags. Several header lines form one list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityTags {
    Any,
    List(Vec<EntityTag>),
}

/// One entity tag: `"7"`, or the weak `W/"7"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    weak: bool,
    /// Between the quotes.
    opaque: String,
}

impl EntityTags {
    /// The versions a write sent with this `If-Match` may change. Strong
    /// comparison: a weak tag matches nothing.
    pub fn for_write(&self) -> IfVersion {
        match self {
            Self::Any => IfVersion::Any,
            Self::List(tags) => IfVersion::OneOf(
                tags.iter()
                    .filter(|tag| !tag.weak)
                    .filter_map(|tag| version_of(&tag.opaque))
                    .collect(),
            ),
        }
    }

    /// Whether `If-None-Match` with these tags matches a task at `version`
    /// (weak comparison: `W/"7"` matches `"7"`).
    pub fn matches_weakly(&self, version: i64) -> bool {
        match self {
            Self::Any => true,
            Self::List(tags) => tags
                .iter()
                .any(|tag| version_of(&tag.opaque) == Some(version)),
        }
    }

    fn parse(value: &str) -> Option<Self> {
        if value.trim() == "*" {
            return Some(Self::Any);
        }
        let mut tags = Vec::new();
        let mut rest = value;
        loop {
            // A list may hold empty elements (RFC 9110 §5.6.1).
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if rest.is_empty() {
                break;
            }
            let (weak, quoted) = match rest.strip_prefix("W/") {
                Some(quoted) => (true, quoted),
                None => (false, rest),
            };
            let (opaque, after) = quoted.strip_prefix('"')?.split_once('"')?;
            // etagc: any visible character but `"` (header values reach us
            // as visible ASCII only).
            if !opaque.bytes().all(|b| b.is_ascii_graphic()) {
                return None;
            }
            tags.push(EntityTag {
                weak,
                opaque: opaque.to_owned(),
            });
            rest = after.trim_start_matches([' ', '\t']);
            if !(rest.is_empty() || rest.starts_with(',')) {
                return None;
            }
        }
        (!tags.is_empty()).then_some(Self::List(tags))
    }
}

/// The version an opaque tag names, compared as the exact string we send
/// (`"07"` is not version 7).
fn version_of(opaque: &str) -> Option<i64> {
    opaque
        .parse::<i64>()
        .ok()
        .filter(|version| version.to_string() == opaque)
}

inline_type!([] EntityTags, "string(entity_tags)", MetaSchema::new("string"));

/// A value that is not `*` or a list of entity tags (`7` without its quotes,
/// say) names no version. RFC 9110 leaves such a value to the server; matching
/// nothing is the safe side: a write is refused with a 412 whose
/// `current_version` shows what to send, a read is answered in full.
impl ParseFromParameter for EntityTags {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self::parse(value).unwrap_or(Self::List(Vec::new())))
    }

    /// Several header lines are one list (so `*` beside a tag is no list).
    fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(
        values: I,
    ) -> ParseResult<Self> {
        let lines: Vec<A> = values.into_iter().collect();
        if lines.is_empty() {
            return Err(ParseError::expected_input());
        }
        let joined: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
        Self::parse_from_parameter(&joined.join(","))
    }
}

/// The condition a write to one task is made under: its `If-Match`, or a
/// 428 when `REQUIRE_IF_MATCH` is on and it sent none.
pub fn write_condition(
    state: &AppState,
    if_match: Option<&EntityTags>,
) -> Result<IfVersion, ApiError> {
    match if_match {
        Some(tags) => Ok(tags.for_write()),
        None if state.require_if_match => Err(ApiError::PreconditionRequired),
        None => Ok(IfVersion::Any),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Option<EntityTags> {
        EntityTags::parse_from_parameters(lines).ok()
    }

    #[test]
    fn if_match_compares_strongly_and_exactly() {
        let tags = parse(&[r#""7", W/"8", "09", "x", "10""#]).unwrap();
        assert_eq!(tags.for_write(), IfVersion::OneOf(vec![7, 10]));
        assert_eq!(parse(&["*"]).unwrap().for_write(), IfVersion::Any);
        assert_eq!(
            parse(&[r#"W/"7""#]).unwrap().for_write(),
            IfVersion::OneOf(vec![])
        );
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let tags = parse(&[r#"W/"7""#]).unwrap();
        assert!(tags.matches_weakly(7));
        assert!(!tags.matches_weakly(8));
        assert!(parse(&["*"]).unwrap().matches_weakly(1));
    }

    #[test]
    fn lines_and_empty_elements_make_one_list() {
        let tags = parse(&[r#""1""#, r#" , "2","#]).unwrap();
        assert_eq!(tags.for_write(), IfVersion::OneOf(vec![1, 2]));
        // A comma inside the quotes belongs to the tag.
        assert_eq!(
            parse(&[r#""a,b", "3""#]).unwrap().for_write(),
            IfVersion::OneOf(vec![3])
        );
    }

    #[test]
    fn a_value_that_is_not_entity_tags_names_no_version() {
        for bad in [
            "7",
            r#""7"#,
            r#""7" "8""#,
            r#"w/"7""#,
            ",",
            "",
            r#""7", *"#,
            r#""a b""#,
        ] {
            assert_eq!(EntityTags::parse(bad), None, "{bad:?}");
            let read = parse(&[bad]).unwrap();
            assert_eq!(read.for_write(), IfVersion::OneOf(vec![]), "{bad:?}");
            assert!(!read.matches_weakly(7), "{bad:?}");
        }
        assert_eq!(
            parse(&["*", r#""7""#]).unwrap().for_write(),
            IfVersion::OneOf(vec![])
        );
    }
}
