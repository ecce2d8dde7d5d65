//! The text fields of a task as a request sends them, each with its rule
//! written once: the check whose message a 422 carries, and the schema
//! (length, pattern) the OpenAPI document publishes, built from the same
//! constants. `Text<Title>` is a title that passed its check.

use std::{borrow::Cow, marker::PhantomData};

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde_json::Value;

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
pub const MAX_TAG_CHARS: usize = 50;

/// What `str::trim` removes (Unicode White_Space), as the inside of a regex
/// character class.
const WHITE_SPACE: &str =
    r"\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// An ECMA-262 pattern (OpenAPI's dialect) for text without NUL that is 1
/// to `max_chars` characters once trimmed; with `or_empty`, blank text too.
pub fn trimmed_text_pattern(max_chars: usize, or_empty: bool) -> String {
    let ws = WHITE_SPACE;
    let inner = max_chars - 2;
    let text = format!(r"[^\u0000{ws}](?:[^\u0000]{{0,{inner}}}[^\u0000{ws}])?[{ws}]*");
    if or_empty {
        format!("^[{ws}]*(?:{text})?$")
    } else {
        format!("^[{ws}]*{text}$")
    }
}

/// Text PostgreSQL can store: without NUL characters.
pub fn without_nul(text: &str) -> Result<&str, String> {
    if text.contains('\0') {
        return Err("must not contain NUL characters".into());
    }
    Ok(text)
}

/// `text` if it is not blank and holds at most `max_chars` characters;
/// `counted` says how they were counted, for the message.
fn within(text: String, max_chars: usize, counted: &str) -> Result<String, String> {
    match text.chars().count() {
        0 => Err("must not be blank".into()),
        n if n > max_chars => Err(format!(
            "must be at most {max_chars} characters{counted} (got {n})"
        )),
        _ => Ok(text),
    }
}

/// A kind of text field: how a value is checked and how it is published.
pub trait TextRule: Send + Sync + 'static {
    /// The name the framework quotes when a value fails to parse.
    const NAME: &'static str;
    /// The value to store, or why it is not acceptable.
    fn check(text: &str) -> Result<String, String>;
    /// The published schema, from the constants `check` uses.
    fn schema() -> MetaSchema;
}

/// Text that passed the check of its rule `R`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<R>(String, PhantomData<R>);

impl<R: TextRule> Text<R> {
    /// Reads a JSON value: a string that passes [`Self::check`].
    pub fn parse(value: &Value) -> Result<Self, String> {
        Self::check(value.as_str().ok_or("must be a string")?)
    }

    /// Text without NUL characters (which PostgreSQL cannot store) that
    /// passes `R`.
    pub fn check(text: &str) -> Result<Self, String> {
        R::check(without_nul(text)?).map(|checked| Self(checked, PhantomData))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl<R: TextRule> Type for Text<R> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        R::NAME.into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(R::schema()))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<R: TextRule> ParseFromJSON for Text<R> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        Self::parse(&value.unwrap_or_default()).map_err(ParseError::custom)
    }
}

impl<R: TextRule> ToJSON for Text<R> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// A task's title: 1 to [`MAX_TITLE_CHARS`] characters, stored trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title;

impl TextRule for Title {
    const NAME: &'static str = "string(title)";

    fn check(text: &str) -> Result<String, String> {
        within(text.trim().to_owned(), MAX_TITLE_CHARS, "")
    }

    fn schema() -> MetaSchema {
        MetaSchema {
            pattern: Some(trimmed_text_pattern(MAX_TITLE_CHARS, false)),
            ..MetaSchema::new("string")
        }
    }
}

/// A task's description: up to [`MAX_DESCRIPTION_CHARS`] characters, stored
/// as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description;

impl TextRule for Description {
    const NAME: &'static str = "string(description)";

    fn check(text: &str) -> Result<String, String> {
        match text.chars().count() {
            n if n > MAX_DESCRIPTION_CHARS => Err(format!(
                "must be at most {MAX_DESCRIPTION_CHARS} characters (got {n})"
            )),
            _ => Ok(text.to_owned()),
        }
    }

    fn schema() -> MetaSchema {
        MetaSchema {
            max_length: Some(MAX_DESCRIPTION_CHARS),
            pattern: Some(r"^[^\u0000]*$".into()),
            ..MetaSchema::new("string")
        }
    }
}

/// A tag: compared and stored trimmed and lower-cased, 1 to
/// [`MAX_TAG_CHARS`] characters as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagName;

impl TextRule for TagName {
    const NAME: &'static str = "string(tag)";

    fn check(text: &str) -> Result<String, String> {
        // Counted as stored: lower-casing can lengthen a tag (`İ` becomes two
        // characters), and a stored tag must be accepted when sent back.
        within(
            text.trim().to_lowercase(),
            MAX_TAG_CHARS,
            " once lower-cased",
        )
    }

    fn schema() -> MetaSchema {
        MetaSchema {
            pattern: Some(trimmed_text_pattern(MAX_TAG_CHARS, false)),
            ..MetaSchema::new("string")
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_title_is_stored_trimmed_and_must_not_be_blank_or_too_long() {
        let title = Text::<Title>::parse(&json!("  Write report \u{3000}")).unwrap();
        assert_eq!(title.into_inner(), "Write report");
        assert_eq!(
            Text::<Title>::parse(&json!(" \t ")),
            Err("must not be blank".into())
        );
        let long = "x".repeat(MAX_TITLE_CHARS + 1);
        assert_eq!(
            Text::<Title>::parse(&json!(long)),
            Err(format!(
                "must be at most {MAX_TITLE_CHARS} characters (got 201)"
            ))
        );
        assert_eq!(
            Text::<Title>::parse(&json!(7)),
            Err("must be a string".into())
        );
        assert_eq!(
            Text::<Title>::check("a\0b"),
            Err("must not contain NUL characters".into())
        );
    }

    #[test]
    fn a_tag_is_counted_as_stored_lower_cased() {
        assert_eq!(
            Text::<TagName>::check(" Work ").unwrap().into_inner(),
            "work"
        );
        // `İ` lower-cases to two characters.
        let dotted = "İ".repeat(MAX_TAG_CHARS / 2 + 1);
        assert!(Text::<TagName>::check(&dotted).is_err());
    }
}
