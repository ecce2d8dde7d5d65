//! Bearer-token authentication: verifying the JWTs Better Auth issues,
//! authorising a verified caller for a user's resources ([`Owner`](crate::auth::Owner)), and
//! minting HS256 development tokens.

mod jwks;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

pub use self::jwks::{FetchError, Jwks, KeyLookup};
use crate::{config::Config, error::ApiError};

/// Longest accepted `sub`, matching the longest `user_id` path segment.
pub const MAX_SUBJECT_CHARS: usize = 128;

/// The claims of the request's bearer token, verified once by the rate
/// limit (which needs the user before the handler runs) and attached to the
/// request, so the handler's security check does not verify it again.
#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    /// The token they were read from.
    pub token: String,
    pub claims: Claims,
}

/// What the API uses from a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id; the `user_id` in every `/api/{user_id}/...` path must equal it.
    /// Missing reads as empty, which `verify` rejects with a clear reason.
    #[serde(default)]
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the token expires (Unix seconds), as verified; never written by
    /// `mint_token`, which sets its own.
    #[serde(default, skip_serializing)]
    pub exp: Option<u64>,
}

/// Checks signatures and claims of incoming tokens: HS256 with the shared
/// secret, asymmetric algorithms with Better Auth's JWKS, either or both.
///
/// The token's `alg` picks the path, and each path accepts only its own
/// algorithms: an HS256 token is never checked against a public key, so a
/// token "signed" with a published key's bytes cannot pass.
pub struct TokenVerifier {
    shared_secret: Option<(DecodingKey, Validation)>,
    jwks: Option<(Arc<Jwks>, Validation)>,
}

/// Signature algorithms accepted from the JWKS; each key narrows this further.
const JWKS_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::EdDSA,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

impl TokenVerifier {
    /// The verifier the configuration asks for; `None` when it enables neither
    /// HS256 (`BETTER_AUTH_SECRET`) nor JWKS (`BETTER_AUTH_URL` / `JWKS_URL`).
    /// The JWKS, if any, is fetched in the background from now on.
    pub fn from_config(config: &Config) -> Option<Self> {
        let explicit_issuer: Vec<String> = config.jwt_issuer.iter().cloned().collect();
        let shared_secret = config.secret_bytes().map(|secret| {
            let validation = validation(
                &[Algorithm::HS256],
                config.jwt_leeway_secs,
                &explicit_issuer,
                &config.jwt_audience,
            );
            (DecodingKey::from_secret(secret), validation)
        });
        let jwks = config.jwks_location().map(|url| {
            let jwks = Arc::new(Jwks::new(
                url,
                config.jwks_refresh_interval,
                config.jwks_unknown_kid_cooldown,
            ));
            jwks.start_refreshing();
            let validation = validation(
                &JWKS_ALGORITHMS,
                config.jwt_leeway_secs,
                &config.jwks_issuers(),
                &config.jwks_audiences(),
            );
            (jwks, validation)
        });
        tracing::info!(
            hs256 = shared_secret.is_some(),
            jwks = config.jwks_location().map(|url| url.to_string()),
            issuers = ?config.jwks_issuers(),
            audiences = ?config.jwks_audiences(),
            "token verification"
        );
        (shared_secret.is_some() || jwks.is_some()).then_some(Self {
            shared_secret,
            jwks,
        })
    }

    /// The JWKS client, when JWKS tokens are enabled.
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref().map(|(jwks, _)| jwks)
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        // `alg: none` and unknown algorithms fail here, before any key is chosen.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            ApiError::Unauthorized("token is malformed or its `alg` is not supported".into())
        })?;
        // RFC 7515 §4.1.11: extensions named critical must be understood, and
        // this server understands none.
        if header.crit.is_some() {
            return Err(ApiError::Unauthorized(
                "token header names critical extensions (`crit`) this server does not support"
                    .into(),
            ));
        }
        let claims = match (header.alg, &self.shared_secret, &self.jwks) {
            (Algorithm::HS256, Some((key, validation)), _) => decode(token, key, validation)?,
            (alg, _, Some((jwks, validation))) if JWKS_ALGORITHMS.contains(&alg) => {
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| ApiError::Unauthorized("token header has no `kid`".into()))?;
                let key = match jwks.key(kid).await {
                    KeyLookup::Found(key) => key,
                    KeyLookup::Unknown => {
                        return Err(ApiError::Unauthorized(
                            "token `kid` is not a key of the auth server".into(),
                        ));
                    }
                    KeyLookup::Unavailable => return Err(ApiError::AuthUnavailable),
                };
                if !key.algorithms.contains(&alg) {
                    return Err(ApiError::Unauthorized(format!(
                        "token algorithm {alg:?} does not match its key"
                    )));
                }
                let mut validation = validation.clone();
                validation.algorithms = vec![alg];
                decode(token, &key.key, &validation)?
            }
            (alg, _, _) => {
                return Err(ApiError::Unauthorized(format!(
                    "token algorithm {alg:?} is not accepted"
                )));
            }
        };
        if !is_printable_subject(&claims.sub) {
            return Err(ApiError::Unauthorized(format!(
                "token `sub` must be 1 to {MAX_SUBJECT_CHARS} printable characters, not only spaces"
            )));
        }
        Ok(claims)
    }
}

/// A user id that reads the same wherever it is shown or logged: no control
/// or invisible format characters (U+200B, U+202E, ...), and not blank.
fn is_printable_subject(sub: &str) -> bool {
    use icu_properties::{CodePointMapData, props::GeneralCategory};
    let category = CodePointMapData::<GeneralCategory>::new();
    let length = sub.chars().count();
    (1..=MAX_SUBJECT_CHARS).contains(&length)
        && !sub.chars().all(char::is_whitespace)
        && !sub
            .chars()
            .any(|c| c.is_control() || category.get(c) == GeneralCategory::Format)
}

fn validation(
    algorithms: &[Algorithm],
    leeway_secs: u64,
    issuers: &[String],
    audiences: &[String],
) -> Validation {
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms.to_vec();
    validation.leeway = leeway_secs;
    validation.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    if !issuers.is_empty() {
        validation.set_issuer(issuers);
        required.push("iss");
    }
    if audiences.is_empty() {
        // Better Auth sets `aud`; it is only checked once an audience is expected.
        validation.validate_aud = false;
    } else {
        validation.set_audience(audiences);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation
}

fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Claims, ApiError> {
    jsonwebtoken::decode::<Claims>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|err| ApiError::Unauthorized(rejection_reason(err.kind())))
}

/// Says what was wrong with a token without echoing any of it.
fn rejection_reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token has expired".into(),
        ErrorKind::ImmatureSignature => "token is not valid yet (`nbf`)".into(),
        ErrorKind::InvalidSignature => "token signature is invalid".into(),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => "token algorithm is not accepted".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("token has no `{claim}` claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("token claim `{claim}` has the wrong type"),
        ErrorKind::InvalidIssuer => "token issuer is not accepted".into(),
        ErrorKind::InvalidAudience => "token audience is not accepted".into(),
        ErrorKind::Json(_) => {
            "token claims are not the expected JSON (`sub`, `email`, `name` must be strings)".into()
        }
        _ => "token is malformed".into(),
    }
}

/// A user whose resources the current request may touch: the subject of a
/// verified token that matched the `user_id` of the path.
///
/// Only [`authorize`] makes one, so every function that reads or writes a
/// user's tasks, taking an `&Owner`, can only be reached past the 403 check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner(String);

impl Owner {
    /// The user id, as stored in `user_id` columns.
    pub fn id(&self) -> &str {
        &self.0
    }
}

/// The 403 check: a verified token may only reach the resources of the user
/// it names.
pub fn authorize(claims: &Claims, path_user_id: &str) -> Result<Owner, ApiError> {
    if claims.sub != path_user_id {
        return Err(ApiError::Forbidden);
    }
    Ok(Owner(claims.sub.clone()))
}

/// Mints an HS256 token, as the demo login and the tests do.
pub fn mint_token(secret: &[u8], claims: &Claims, ttl: Duration) -> String {
    mint_token_for(secret, claims, ttl, None, None)
}

/// Mints an HS256 token carrying `iss` and `aud` when given, as `todo-api
/// token` does when JWT_ISSUER or JWT_AUDIENCE make the server expect them.
#[expect(
    clippy::expect_used,
    reason = "HS256 signs any bytes with any secret; only other algorithms' keys can be unusable"
)]
pub fn mint_token_for(
    secret: &[u8],
    claims: &Claims,
    ttl: Duration,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> String {
    #[derive(Serialize)]
    struct Registered<'a> {
        #[serde(flatten)]
        claims: &'a Claims,
        #[serde(skip_serializing_if = "Option::is_none")]
        iss: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        aud: Option<&'a str>,
        iat: u64,
        exp: u64,
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let body = Registered {
        claims,
        iss: issuer,
        aud: audience,
        iat: now,
        exp: now + ttl.as_secs(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &body,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing cannot fail")
}
