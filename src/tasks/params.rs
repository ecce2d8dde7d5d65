//! The list query's free-form parameters as types: each parses itself, says
//! what a valid value looks like (the 422 that names the parameter quotes
//! it), and publishes its schema from the same constants.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use poem_openapi::{
    registry::MetaSchema,
    types::{ParseError, ParseFromParameter, ParseResult, ToJSON},
};
use serde_json::Value;

use super::{
    fields::{
        MAX_TAG_CHARS, TagName, Text, WITHOUT_NUL_PATTERN, inline_type, trimmed_text_pattern,
    },
    without_nul,
};

pub const DEFAULT_PAGE_SIZE: u64 = 20;
pub const MAX_PAGE_SIZE: u64 = 100;
/// Largest `offset`: 2^53 - 1, the largest integer a JavaScript number holds
/// exactly.
pub const MAX_OFFSET: u64 = 9_007_199_254_740_991;
/// Longest search text (`q`), in characters.
pub const MAX_SEARCH_CHARS: usize = 1000;

/// A whole number from `MIN` to `MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whole<const MIN: u64, const MAX: u64>(pub u64);

/// `limit`: how many tasks a page holds.
pub type PageSize = Whole<1, MAX_PAGE_SIZE>;
/// `offset`: how many matching tasks to skip.
pub type Offset = Whole<0, MAX_OFFSET>;

impl<const MIN: u64, const MAX: u64> Whole<MIN, MAX> {
    pub fn rule() -> String {
        format!("must be a whole number from {MIN} to {MAX}")
    }
}

impl Default for PageSize {
    fn default() -> Self {
        Self(DEFAULT_PAGE_SIZE)
    }
}

impl Default for Offset {
    fn default() -> Self {
        Self(0)
    }
}

inline_type!(
    [const MIN: u64, const MAX: u64] Whole<MIN, MAX>,
    "integer_uint64",
    MetaSchema {
        // Published as JSON numbers; both bounds are exact in an f64.
        minimum: Some(MIN as f64),
        maximum: Some(MAX as f64),
        ..MetaSchema::new_with_format("integer", "uint64")
    }
);

impl<const MIN: u64, const MAX: u64> ParseFromParameter for Whole<MIN, MAX> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        value
            .parse()
            .ok()
            .filter(|n| (MIN..=MAX).contains(n))
            .map(Self)
            .ok_or_else(|| ParseError::custom(Self::rule()))
    }
}

impl<const MIN: u64, const MAX: u64> ToJSON for Whole<MIN, MAX> {
    fn to_json(&self) -> Option<Value> {
        Some(self.0.into())
    }
}

/// `tag`: a tag name compared as stored (trimmed, lower-cased); blank means
/// any tag, as frontends send `?tag=` for "no filter".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter(Option<String>);

impl TagFilter {
    pub fn rule() -> String {
        format!(
            "must be at most {MAX_TAG_CHARS} characters once trimmed and lower-cased, \
             without NUL characters"
        )
    }

    /// The normalised tag name; `None` for any tag.
    pub fn into_name(self) -> Option<String> {
        self.0
    }
}

inline_type!(
    [] TagFilter,
    "string(tag_filter)",
    MetaSchema {
        pattern: Some(trimmed_text_pattern(MAX_TAG_CHARS, true)),
        ..MetaSchema::new("string")
    }
);

impl ParseFromParameter for TagFilter {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        if value.trim().is_empty() {
            return Ok(Self(None));
        }
        Text::<TagName>::check(value)
            .map(|tag| Self(Some(tag.into_inner())))
            .map_err(ParseError::custom)
    }
}

/// `limit` of the change feed: how many changes a page holds.
pub type ChangeLimit = Whole<1, MAX_CHANGES_PAGE>;
pub const DEFAULT_CHANGES_PAGE: u64 = 100;
pub const MAX_CHANGES_PAGE: u64 = 1000;

impl Default for ChangeLimit {
    fn default() -> Self {
        Self(DEFAULT_CHANGES_PAGE)
    }
}

/// `since`: a change feed cursor, the sequence number a page ended at,
/// written as 11 URL-safe base64 characters so that clients treat it as
/// the opaque token it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeCursor(pub i64);

impl ChangeCursor {
    pub fn rule() -> &'static str {
        "must be a `cursor` from an earlier response of this operation"
    }
}

impl std::fmt::Display for ChangeCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0.to_be_bytes()))
    }
}

impl std::str::FromStr for ChangeCursor {
    type Err = &'static str;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|_| Self::rule())?;
        let seq = <[u8; 8]>::try_from(bytes.as_slice())
            .map(i64::from_be_bytes)
            .map_err(|_| Self::rule())?;
        if seq < 0 {
            return Err(Self::rule());
        }
        Ok(Self(seq))
    }
}

inline_type!(
    [] ChangeCursor,
    "string(cursor)",
    MetaSchema {
        min_length: Some(11),
        max_length: Some(11),
        // Exactly the encodings of a number from 0 to 2^63 - 1: a first
        // character below `g` (top bit clear), and a last one whose two
        // unused bits are zero.
        pattern: Some("^[A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048]$".into()),
        ..MetaSchema::new("string")
    }
);

impl ParseFromParameter for ChangeCursor {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        value.parse().map_err(ParseError::custom)
    }
}

impl ToJSON for ChangeCursor {
    fn to_json(&self) -> Option<Value> {
        Some(self.to_string().into())
    }
}

/// `q`: text searched for literally and case-insensitively; empty means no
/// search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText(Option<String>);

impl SearchText {
    pub fn rule() -> String {
        format!("must be at most {MAX_SEARCH_CHARS} characters, without NUL characters")
    }

    /// The text to find; `None` for no search.
    pub fn into_text(self) -> Option<String> {
        self.0
    }
}

inline_type!(
    [] SearchText,
    "string(search)",
    MetaSchema {
        max_length: Some(MAX_SEARCH_CHARS),
        pattern: Some(WITHOUT_NUL_PATTERN.into()),
        ..MetaSchema::new("string")
    }
);

impl ParseFromParameter for SearchText {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        let text = without_nul(value).map_err(ParseError::custom)?;
        if text.chars().count() > MAX_SEARCH_CHARS {
            return Err(ParseError::custom(Self::rule()));
        }
        Ok(Self(
            Some(text)
                .filter(|text| !text.is_empty())
                .map(str::to_owned),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_bounds_are_inclusive_and_whole() {
        assert_eq!(PageSize::parse_from_parameter("1").ok(), Some(Whole(1)));
        assert_eq!(PageSize::parse_from_parameter("100").ok(), Some(Whole(100)));
        for bad in ["0", "101", "1.5", "-1", "", "ten"] {
            assert!(PageSize::parse_from_parameter(bad).is_err(), "{bad:?}");
        }
        let last = MAX_OFFSET.to_string();
        assert_eq!(
            Offset::parse_from_parameter(&last).ok(),
            Some(Whole(MAX_OFFSET))
        );
        assert!(Offset::parse_from_parameter(&(MAX_OFFSET + 1).to_string()).is_err());
    }

    #[test]
    fn cursors_read_back_and_anything_else_is_refused() {
        for seq in [0, 1, 57, i64::MAX] {
            let cursor = ChangeCursor(seq).to_string();
            assert_eq!(cursor.len(), 11);
            assert_eq!(
                ChangeCursor::parse_from_parameter(&cursor).ok(),
                Some(ChangeCursor(seq))
            );
        }
        let pattern = regex::Regex::new("^[A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048]$").unwrap();
        for seq in [0, 1, 57, 1 << 40, i64::MAX] {
            assert!(pattern.is_match(&ChangeCursor(seq).to_string()));
        }
        let negative = ChangeCursor(-1).to_string();
        assert!(!pattern.is_match(&negative));
        for bad in [
            "",
            "42",
            "AAAAAAAAAA",
            "AAAAAAAAAAAA",
            "AAAAAAAAAA=",
            "AAAAAAAAAA+",
            &negative,
        ] {
            assert!(ChangeCursor::parse_from_parameter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_blank_tag_or_search_filters_nothing() {
        assert_eq!(
            TagFilter::parse_from_parameter(" \t").ok(),
            Some(TagFilter(None))
        );
        assert_eq!(
            SearchText::parse_from_parameter("").ok(),
            Some(SearchText(None))
        );
        assert_eq!(
            TagFilter::parse_from_parameter(" Work ").ok(),
            Some(TagFilter(Some("work".into())))
        );
        // Spaces are searched for, not trimmed.
        assert_eq!(
            SearchText::parse_from_parameter(" ").ok(),
            Some(SearchText(Some(" ".into())))
        );
    }

    #[test]
    fn nul_and_overlong_text_are_refused() {
        assert!(TagFilter::parse_from_parameter("a\0b").is_err());
        assert!(SearchText::parse_from_parameter("a\0b").is_err());
        let long = "é".repeat(MAX_SEARCH_CHARS + 1);
        assert!(SearchText::parse_from_parameter(&long).is_err());
        assert!(SearchText::parse_from_parameter(&long[2..]).is_ok());
        // `İ` lower-cases to two characters: counted as stored.
        assert!(TagFilter::parse_from_parameter(&"İ".repeat(MAX_TAG_CHARS / 2 + 1)).is_err());
    }
}
