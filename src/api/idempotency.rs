//! The `Idempotency-Key` header as an operation parameter, and turning a
//! remembered response back into the operation's own response.

use poem::{Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    error::ParseParamError,
    registry::{MetaParamIn, MetaSchema, MetaSchemaRef},
    types::{ParseFromJSON, Type},
};

use sea_orm::DatabaseTransaction;

use crate::{
    auth::Owner,
    error::{ApiError, Problem},
    idempotency::{IdempotencyKey, MAX_KEY_CHARS, Outcome, Remembered},
    state::AppState,
    tasks::inline_type,
};

/// An operation's response that can be remembered for its key's retries and
/// answered again from what was remembered.
pub trait Replayable: Sized {
    fn remembered(&self) -> Remembered;
    fn replayed(remembered: Remembered) -> Result<Self, ApiError>;
}

/// Runs a keyed write once ([`crate::idempotency::Idempotency::run`]) and
/// answers with its response, or with the one remembered for the key.
pub async fn run_once<R: Replayable>(
    state: &AppState,
    owner: &Owner,
    key: &IdempotencyKey,
    fingerprint: String,
    write: impl AsyncFnOnce(&DatabaseTransaction) -> Result<R, ApiError>,
) -> Result<R, ApiError> {
    let outcome = state
        .idempotency
        .run(
            &state.db.writer,
            owner,
            key,
            fingerprint,
            write,
            R::remembered,
        )
        .await?;
    match outcome {
        Outcome::Ran(response) => Ok(response),
        Outcome::Replayed(remembered) => R::replayed(remembered),
    }
}

inline_type!(
    [] IdempotencyKey,
    "string(idempotency_key)",
    MetaSchema {
        min_length: Some(1),
        max_length: Some(MAX_KEY_CHARS + 2),
        pattern: Some(format!(
            r#"^(?:"[ !#-\[\]-~]{{1,{MAX_KEY_CHARS}}}"|[!#-~][ -~]{{0,{}}})$"#,
            MAX_KEY_CHARS - 1
        )),
        ..MetaSchema::new("string")
    }
);

/// An optional `Idempotency-Key` header, read from its raw bytes: a value
/// that is not visible ASCII, or sent on two lines, is a 400 rather than
/// (as a framework header parameter would have it) no key at all.
pub struct IdempotencyKeyHeader(pub Option<IdempotencyKey>);

impl<'a> ApiExtractor<'a> for IdempotencyKeyHeader {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    const PARAM_IS_REQUIRED: bool = false;

    type ParamType = IdempotencyKey;
    type ParamRawType = IdempotencyKey;

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Header)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(IdempotencyKey::schema_ref())
    }

    fn param_raw_type(&self) -> Option<&Self::ParamRawType> {
        self.0.as_ref()
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let invalid = || ParseParamError {
            name: param_opts.name,
            reason: IdempotencyKey::RULE.into(),
        };
        let mut lines = request.headers().get_all(param_opts.name).iter();
        let Some(line) = lines.next() else {
            return Ok(Self(None));
        };
        if lines.next().is_some() {
            return Err(invalid().into());
        }
        let key = IdempotencyKey::parse(line.as_bytes()).ok_or_else(invalid)?;
        Ok(Self(Some(key)))
    }
}

/// The body of a remembered success, as the operation's own type; a
/// remembered problem is answered again as the error it was.
pub fn replayed_body<T: ParseFromJSON>(remembered: &Remembered) -> Result<T, ApiError> {
    let json = serde_json::from_str(&remembered.body)
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("remembered body: {err}")))?;
    let status = poem::http::StatusCode::from_u16(remembered.status)
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("remembered status: {err}")))?;
    if status.is_success() {
        return T::parse_from_json(Some(json)).map_err(|err| {
            ApiError::Internal(anyhow::anyhow!("remembered body: {}", err.message()))
        });
    }
    let problem = Problem::parse_from_json(Some(json)).map_err(|err| {
        ApiError::Internal(anyhow::anyhow!("remembered problem: {}", err.message()))
    })?;
    Err(ApiError::Replayed {
        status,
        problem: Box::new(problem),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_pattern_accepts_what_the_parser_accepts() {
        let MetaSchemaRef::Inline(schema) = IdempotencyKey::schema_ref() else {
            panic!("an inline schema");
        };
        let pattern = regex::Regex::new(schema.pattern.as_deref().unwrap()).unwrap();
        let longest = "k".repeat(MAX_KEY_CHARS);
        let too_long = "k".repeat(MAX_KEY_CHARS + 1);
        for value in [
            "abc",
            "\"abc\"",
            "a b",
            "a\"b",
            longest.as_str(),
            "",
            "\"\"",
            "\"abc",
            "\"a\"b\"",
            "\"a\\b\"",
            "a\tb",
            too_long.as_str(),
        ] {
            assert_eq!(
                pattern.is_match(value),
                IdempotencyKey::parse(value.as_bytes()).is_some(),
                "{value:?}"
            );
        }
    }
}
