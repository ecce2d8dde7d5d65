//! Bearer-token authentication: verifying the JWTs Better Auth issues, and
//! minting HS256 development tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};
use serde::{Deserialize, Serialize};

use crate::{app::AppState, error::ApiError};

/// Longest accepted `sub`, matching the longest `user_id` path segment.
pub const MAX_SUBJECT_CHARS: usize = 128;

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
}

/// Checks signatures and claims of incoming tokens.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    /// HS256 with Better Auth's shared secret. The algorithm is pinned, so
    /// `alg: none` and every other algorithm are rejected.
    pub fn hs256(secret: &[u8], leeway_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = leeway_secs;
        // Better Auth sets `aud`; it is only checked once an audience is configured.
        validation.validate_aud = false;
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        // `alg: none` and unknown algorithms fail here, before any key is chosen.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            ApiError::Unauthorized("token is malformed or its `alg` is not supported".into())
        })?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(ApiError::Unauthorized(format!(
                "token algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|err| ApiError::Unauthorized(rejection_reason(err.kind())))?
            .claims;
        let length = claims.sub.chars().count();
        if length == 0 || length > MAX_SUBJECT_CHARS || claims.sub.chars().any(char::is_control) {
            return Err(ApiError::Unauthorized(format!(
                "token `sub` must be 1 to {MAX_SUBJECT_CHARS} printable characters"
            )));
        }
        Ok(claims)
    }
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

/// A JWT in `Authorization: Bearer <token>`: HS256-signed with
/// `BETTER_AUTH_SECRET`, carrying `sub` (the user id) and `exp`. For local
/// development, `todo-api token --sub <id>` mints one.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "verify_bearer")]
pub struct BearerAuth(pub Claims);

async fn verify_bearer(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    let state = req
        .data::<AppState>()
        .expect("AppState is attached to every route by app::build_app");
    Ok(state.verifier.verify(&bearer.token)?)
}

impl BearerAuth {
    /// The caller's user id once the path's `user_id` is checked against the
    /// token's subject (403 otherwise) and the user row exists.
    pub async fn owner(&self, state: &AppState, path_user_id: &str) -> Result<String, ApiError> {
        if self.0.sub != path_user_id {
            return Err(ApiError::Forbidden);
        }
        state.users.ensure(&state.db, &self.0).await?;
        Ok(self.0.sub.clone())
    }
}

/// Mints an HS256 token, as `todo-api token` and the demo login print.
pub fn mint_token(secret: &[u8], claims: &Claims, ttl: Duration) -> String {
    #[derive(Serialize)]
    struct Registered<'a> {
        #[serde(flatten)]
        claims: &'a Claims,
        iat: u64,
        exp: u64,
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let body = Registered {
        claims,
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
