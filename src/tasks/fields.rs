//! The fields of a task as a request sends them, each with its rule written
//! once: the check whose message a 422 carries ([`FieldValue`]), and the
//! schema (length, pattern, items) the OpenAPI document publishes, built from
//! the same constants. `Text<Title>` is a title that passed its check.

use std::marker::PhantomData;

use poem_openapi::{
    registry::MetaSchema,
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON},
};
use serde_json::Value;

use super::{Priority, one_of};

/// Implements poem-openapi's `Type` for a plain value whose schema is written
/// out inline: `inline_type!([generics] Type, name, schema)`.
macro_rules! inline_type {
    ([$($generics:tt)*] $ty:ty, $name:expr, $schema:expr) => {
        impl<$($generics)*> poem_openapi::types::Type for $ty {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> std::borrow::Cow<'static, str> {
                ($name).into()
            }

            fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
                poem_openapi::registry::MetaSchemaRef::Inline(Box::new($schema))
            }

            fn as_raw_value(&self) -> Option<&Self> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
                Box::new(std::iter::once(self))
            }
        }
    };
}
pub(crate) use inline_type;

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
pub const MAX_TAG_CHARS: usize = 50;
pub const MAX_TAGS: usize = 20;

/// A value a field of a request body can hold, read from its JSON with the
/// message a 422 gives for that field when it cannot be.
pub trait FieldValue: Sized {
    fn read(value: &Value) -> Result<Self, String>;
}

/// `null` is no value.
impl<T: FieldValue> FieldValue for Option<T> {
    fn read(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            value => T::read(value).map(Some),
        }
    }
}

impl FieldValue for bool {
    fn read(value: &Value) -> Result<Self, String> {
        value
            .as_bool()
            .ok_or_else(|| "must be true or false".into())
    }
}

impl FieldValue for Priority {
    fn read(value: &Value) -> Result<Self, String> {
        Self::parse_from_json(Some(value.clone())).map_err(|_| one_of::<Self>())
    }
}

/// The ECMA-262 pattern of text without NUL characters.
pub const WITHOUT_NUL_PATTERN: &str = r"^[^\u0000]*$";

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

impl<R: TextRule> FieldValue for Text<R> {
    /// A string that passes [`Self::check`].
    fn read(value: &Value) -> Result<Self, String> {
        Self::check(value.as_str().ok_or("must be a string")?)
    }
}

impl<R: TextRule> Text<R> {
    /// Text without NUL characters (which PostgreSQL cannot store) that
    /// passes `R`.
    pub fn check(text: &str) -> Result<Self, String> {
        R::check(without_nul(text)?).map(|checked| Self(checked, PhantomData))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

inline_type!([R: TextRule] Text<R>, R::NAME, R::schema());

impl<R: TextRule> ParseFromJSON for Text<R> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        Self::read(&value.unwrap_or_default()).map_err(ParseError::custom)
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
            pattern: Some(WITHOUT_NUL_PATTERN.into()),
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

/// A task's tags as sent: at most [`MAX_TAGS`] names, each a valid
/// [`TagName`]. Duplicates count toward the limit, then collapse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagList(Vec<Text<TagName>>);

impl TagList {
    /// The names to store: normalised, unique, sorted.
    pub fn into_names(self) -> Vec<String> {
        let mut names: Vec<String> = self.0.into_iter().map(Text::into_inner).collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

impl FieldValue for TagList {
    fn read(value: &Value) -> Result<Self, String> {
        let items = value.as_array().ok_or("must be an array of strings")?;
        if items.len() > MAX_TAGS {
            return Err(format!(
                "must hold at most {MAX_TAGS} tags (got {})",
                items.len()
            ));
        }
        let tags = items.iter().enumerate().map(|(index, item)| {
            item.as_str()
                .ok_or_else(|| "must be an array of strings".to_owned())
                .and_then(Text::check)
                .map_err(|e| format!("item {index} {e}"))
        });
        tags.collect::<Result<_, _>>().map(Self)
    }
}

inline_type!(
    [] TagList,
    "array(tag)",
    MetaSchema {
        items: Some(Box::new(Text::<TagName>::schema_ref())),
        max_items: Some(MAX_TAGS),
        ..MetaSchema::new("array")
    }
);

impl ParseFromJSON for TagList {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        Self::read(&value.unwrap_or_default()).map_err(ParseError::custom)
    }
}

impl ToJSON for TagList {
    fn to_json(&self) -> Option<Value> {
        Some(self.0.iter().filter_map(ToJSON::to_json).collect())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_title_is_stored_trimmed_and_must_not_be_blank_or_too_long() {
        let title = Text::<Title>::read(&json!("  Write report \u{3000}")).unwrap();
        assert_eq!(title.into_inner(), "Write report");
        assert_eq!(
            Text::<Title>::read(&json!(" \t ")),
            Err("must not be blank".into())
        );
        let long = "x".repeat(MAX_TITLE_CHARS + 1);
        assert_eq!(
            Text::<Title>::read(&json!(long)),
            Err(format!(
                "must be at most {MAX_TITLE_CHARS} characters (got 201)"
            ))
        );
        assert_eq!(
            Text::<Title>::read(&json!(7)),
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

    #[test]
    fn tags_are_counted_as_sent_then_stored_unique_and_sorted() {
        let tags = TagList::read(&json!([" Work", "q4", "WORK "])).unwrap();
        assert_eq!(tags.into_names(), ["q4", "work"]);
        let too_many = vec!["a"; MAX_TAGS + 1];
        assert_eq!(
            TagList::read(&json!(too_many)),
            Err(format!("must hold at most {MAX_TAGS} tags (got 21)"))
        );
        assert_eq!(
            TagList::read(&json!(["ok", 7])),
            Err("item 1 must be an array of strings".into())
        );
        assert_eq!(
            TagList::read(&json!("work")),
            Err("must be an array of strings".into())
        );
    }
}
