//! Better Auth's public keys, fetched from its JWKS endpoint and cached by
//! `kid`.
//!
//! The set is fetched at startup (without failing it when the auth server is
//! not up yet), again every refresh interval so removed keys stop working, and
//! on demand when a token names a `kid` the cache does not know, which is how
//! a rotated-in key is picked up without a restart. Those on-demand fetches are
//! rate-limited, so a flood of tokens with made-up `kid`s cannot hammer the auth
//! server. A failed fetch keeps the last good set.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};
use tokio::{sync::Mutex, time::Instant};
use url::Url;

use crate::telemetry;

/// A JWKS response larger than this is refused; real sets hold a few keys.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Keys kept from one response, so a huge set cannot grow memory without bound.
const MAX_KEYS: usize = 64;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// First wait before retrying after a failed fetch; doubles up to the refresh interval.
const FIRST_RETRY: Duration = Duration::from_secs(2);

/// A public key from the set, with the token algorithms it may verify.
pub struct PublicKey {
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

/// What a lookup by `kid` found.
pub enum KeyLookup {
    Found(Arc<PublicKey>),
    /// The set is loaded and, even after a refetch (if one was allowed), has no such key.
    Unknown,
    /// No key set could be fetched yet.
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the auth server answered {0}")]
    Status(reqwest::StatusCode),
    #[error("the response is over {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("the response is not a JWKS (`{{\"keys\": [...]}}`): {0}")]
    Malformed(#[from] serde_json::Error),
}

pub struct Jwks {
    url: Url,
    http: reqwest::Client,
    /// `None` until the first successful fetch.
    keys: RwLock<Option<HashMap<String, Arc<PublicKey>>>>,
    /// When a token's unknown `kid` last caused a fetch; held during that fetch
    /// so concurrent requests with unknown kids share it instead of adding more.
    last_unknown_kid_fetch: Mutex<Option<Instant>>,
    unknown_kid_cooldown: Duration,
    refresh_interval: Duration,
}

impl Jwks {
    #[expect(
        clippy::expect_used,
        reason = "startup: building a client fails only without a TLS backend, which is compiled in"
    )]
    pub fn new(url: Url, refresh_interval: Duration, unknown_kid_cooldown: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("todo-api/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the TLS backend is compiled in");
        Self {
            url,
            http,
            keys: RwLock::new(None),
            last_unknown_kid_fetch: Mutex::new(None),
            unknown_kid_cooldown,
            refresh_interval,
        }
    }

    /// Fetches the set now and then keeps it fresh in the background: every
    /// refresh interval after a success, sooner (with backoff) after a failure.
    /// The task ends when the last other handle to `self` is dropped.
    pub fn start_refreshing(self: &Arc<Self>) {
        let jwks = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut retry = FIRST_RETRY;
            loop {
                let Some(this) = jwks.upgrade() else { return };
                let wait = match this.refresh().await {
                    Ok(()) => {
                        retry = FIRST_RETRY;
                        this.refresh_interval
                    }
                    Err(_) => {
                        let wait = retry.min(this.refresh_interval);
                        retry = (retry * 2).min(this.refresh_interval);
                        wait
                    }
                };
                drop(this);
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// The key a token names, fetching the set again (rate-limited) when the
    /// cache does not know it.
    pub async fn key(&self, kid: &str) -> KeyLookup {
        if let Some(found) = self.cached(kid) {
            return found;
        }
        {
            let mut last = self.last_unknown_kid_fetch.lock().await;
            // Another request may have fetched while this one waited for the lock.
            if let Some(found) = self.cached(kid) {
                return found;
            }
            let cooling_down = last.is_some_and(|at| at.elapsed() < self.unknown_kid_cooldown);
            if !cooling_down {
                *last = Some(Instant::now());
                let _ = self.refresh().await;
            }
        }
        self.cached(kid).unwrap_or_else(|| {
            if self.read().is_some() {
                KeyLookup::Unknown
            } else {
                KeyLookup::Unavailable
            }
        })
    }

    /// Replaces the cached set with a freshly fetched one; on failure the last
    /// good set stays.
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let fetched = self.fetch().await;
        telemetry::metrics::jwks_fetched(fetched.is_ok());
        match fetched {
            Ok(keys) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "JWKS fetched");
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some(keys);
                Ok(())
            }
            Err(err) => {
                tracing::warn!(url = %self.url, error = %err, "cannot fetch the JWKS; keeping the last key set");
                Err(err)
            }
        }
    }

    fn cached(&self, kid: &str) -> Option<KeyLookup> {
        let keys = self.read();
        keys.as_ref()?.get(kid).cloned().map(KeyLookup::Found)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<HashMap<String, Arc<PublicKey>>>> {
        // The map is replaced whole, so a panic elsewhere cannot leave it half-written.
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<PublicKey>>, FetchError> {
        let mut response = self
            .http
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        parse_key_set(&body)
    }
}

/// Reads the usable signing keys of a JWKS document; keys this service cannot
/// use (encryption keys, symmetric keys, unknown curves) are skipped with a log
/// line rather than failing the whole set.
fn parse_key_set(body: &[u8]) -> Result<HashMap<String, Arc<PublicKey>>, FetchError> {
    #[derive(serde::Deserialize)]
    struct KeySet {
        keys: Vec<serde_json::Value>,
    }
    let set: KeySet = serde_json::from_slice(body)?;
    let mut keys = HashMap::new();
    for raw in set.keys.into_iter().take(MAX_KEYS) {
        let kid = raw.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        match serde_json::from_value::<Jwk>(raw) {
            Ok(jwk) => match (jwk.common.key_id.clone(), public_key(&jwk)) {
                (Some(kid), Ok(key)) => {
                    keys.insert(kid, Arc::new(key));
                }
                (None, _) => tracing::warn!("JWKS key without `kid` skipped"),
                (Some(kid), Err(reason)) => tracing::warn!(%kid, reason, "JWKS key skipped"),
            },
            Err(err) => tracing::warn!(?kid, error = %err, "JWKS key skipped: not a valid JWK"),
        }
    }
    Ok(keys)
}

/// The verifying key of a JWK and the algorithms it may verify: its key type
/// decides the family, and its `alg`, when present, narrows it to one.
fn public_key(jwk: &Jwk) -> Result<PublicKey, &'static str> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return Err("not a signature key (`use`)");
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            // jsonwebtoken slices the first 32 bytes of `x` when verifying;
            // a shorter key would panic there, so it is refused here.
            if base64_len(&okp.x) != Some(32) {
                return Err("Ed25519 `x` is not 32 bytes");
            }
            &[Algorithm::EdDSA]
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err("unsupported elliptic curve"),
        },
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        // A symmetric key must never verify tokens: anyone reading the set could sign.
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are not accepted"),
        _ => return Err("unsupported key type"),
    };
    let algorithms: Vec<Algorithm> = match &jwk.common.key_algorithm {
        None => family.to_vec(),
        Some(named) => {
            let named = signing_algorithm(named).ok_or("`alg` is not a signature algorithm")?;
            if !family.contains(&named) {
                return Err("`alg` does not match the key type");
            }
            vec![named]
        }
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "key material is invalid")?;
    Ok(PublicKey { key, algorithms })
}

fn signing_algorithm(named: &KeyAlgorithm) -> Option<Algorithm> {
    Some(match named {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Decoded length of unpadded base64url text, if it is well-formed.
fn base64_len(text: &str) -> Option<usize> {
    let valid = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (valid && text.len() % 4 != 1).then_some(text.len() * 3 / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> HashMap<String, Arc<PublicKey>> {
        parse_key_set(json.as_bytes()).expect("a JWKS")
    }

    const ED25519_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn usable_keys_are_kept_with_their_algorithms() {
        let keys = parse(&format!(
            r#"{{"keys": [
                {{"kty": "OKP", "crv": "Ed25519", "x": "{ED25519_X}", "kid": "ed", "alg": "EdDSA"}},
                {{"kty": "OKP", "crv": "Ed25519", "x": "{ED25519_X}", "kid": "ed-no-alg"}}
            ]}}"#
        ));
        assert_eq!(keys["ed"].algorithms, [Algorithm::EdDSA]);
        assert_eq!(keys["ed-no-alg"].algorithms, [Algorithm::EdDSA]);
    }

    #[test]
    fn keys_that_must_not_verify_tokens_are_skipped() {
        let keys = parse(&format!(
            r#"{{"keys": [
                {{"kty": "oct", "k": "c2VjcmV0", "kid": "symmetric", "alg": "HS256"}},
                {{"kty": "OKP", "crv": "Ed25519", "x": "{ED25519_X}", "kid": "enc", "use": "enc"}},
                {{"kty": "OKP", "crv": "Ed25519", "x": "{ED25519_X}", "kid": "mismatch", "alg": "RS256"}},
                {{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "short"}},
                {{"kty": "OKP", "crv": "Ed25519", "x": "{ED25519_X}"}},
                {{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"}},
                {{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa", "alg": "ES512"}},
                {{"kty": "XYZ", "kid": "unknown"}},
                "not an object"
            ]}}"#
        ));
        assert!(
            keys.is_empty(),
            "kept: {:?}",
            keys.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn documents_that_are_not_a_key_set_are_errors() {
        for body in ["", "[]", r#"{"keys": {}}"#, "<html>"] {
            assert!(parse_key_set(body.as_bytes()).is_err(), "{body}");
        }
    }
}
