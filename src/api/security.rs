//! The bearer-token security scheme of every `/api/{user_id}/...` operation.

use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};

use crate::{
    auth::{self, Claims, Owner, VerifiedClaims},
    error::ApiError,
    state::AppState,
};

/// A JWT in `Authorization: Bearer <token>` carrying `sub` (the user id) and
/// `exp`: the token Better Auth's `jwt()` plugin issues (`authClient.token()`,
/// EdDSA/ES256/RS256/PS256, checked against its JWKS), or an HS256 token signed
/// with `BETTER_AUTH_SECRET`. For local development, `todo-api token --sub <id>`
/// mints one.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "verify_bearer")]
pub struct BearerAuth(pub Claims);

async fn verify_bearer(req: &Request, bearer: Bearer) -> poem::Result<Claims> {
    let Some(state) = req.data::<AppState>() else {
        let unwired = anyhow::anyhow!("AppState is not attached to this route");
        return Err(ApiError::Internal(unwired).into());
    };
    if let Some(verified) = req.extensions().get::<VerifiedClaims>()
        && verified.token == bearer.token
    {
        return Ok(verified.claims.clone());
    }
    Ok(state.verifier.verify(&bearer.token).await?)
}

impl BearerAuth {
    /// The caller, once the path's `user_id` is checked against the token's
    /// subject (403 otherwise) and its user row is provisioned.
    pub async fn owner(&self, state: &AppState, path_user_id: &str) -> Result<Owner, ApiError> {
        let owner = auth::authorize(&self.0, path_user_id)?;
        state.users.provision(&state.db.writer, &self.0).await?;
        Ok(owner)
    }
}
