//! Signing keys made in the test and a local auth server that publishes them
//! as a JWKS, the way Better Auth's `jwt()` plugin does, counting its fetches.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use poem::{
    EndpointExt, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    web::Data,
};
use serde_json::{Value, json};

/// A private key of the auth server, published under `kid`.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// The public half as a JWK, as `/api/auth/jwks` lists it.
    pub jwk: Value,
    /// The public key as bytes an attacker could read (PEM for RSA).
    pub public_bytes: Vec<u8>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// A fresh key of the algorithm's type; RSA keys are made once per run
    /// (generation is slow) and shared under different kids.
    pub fn generate(alg: Algorithm) -> Self {
        let kid = format!("{alg:?}-{}", uuid::Uuid::new_v4().simple());
        let (encoding, mut jwk, public_bytes) = match alg {
            Algorithm::EdDSA => {
                use ed25519_dalek::pkcs8::EncodePrivateKey;
                let key = ed25519_dalek::SigningKey::from_bytes(&rand::random());
                let der = key.to_pkcs8_der().unwrap();
                let public = key.verifying_key().to_bytes().to_vec();
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&public)});
                (EncodingKey::from_ed_der(der.as_bytes()), jwk, public)
            }
            Algorithm::ES256 => {
                use p256::{elliptic_curve::sec1::ToEncodedPoint, pkcs8::EncodePrivateKey};
                let key = p256::SecretKey::random(&mut rand_core_06::OsRng);
                let der = key.to_pkcs8_der().unwrap();
                let point = key.public_key().to_encoded_point(false);
                let jwk = json!({
                    "kty": "EC", "crv": "P-256",
                    "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()),
                });
                (
                    EncodingKey::from_ec_der(der.as_bytes()),
                    jwk,
                    point.as_bytes().to_vec(),
                )
            }
            Algorithm::RS256 | Algorithm::PS256 => {
                let (der, jwk, pem) = rsa_key();
                (EncodingKey::from_rsa_der(der), jwk.clone(), pem.clone())
            }
            other => panic!("no test key for {other:?}"),
        };
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(format!("{alg:?}"));
        Self {
            kid,
            alg,
            encoding,
            jwk,
            public_bytes,
        }
    }

    /// A token signed with this key, its header naming `kid` as Better Auth's does.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = None;
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// The same key material published under another kid.
    pub fn with_kid(&self, kid: &str) -> Self {
        let mut key = self.clone();
        key.kid = kid.into();
        key.jwk["kid"] = json!(kid);
        key
    }
}

fn rsa_key() -> &'static (Vec<u8>, Value, Vec<u8>) {
    static KEY: OnceLock<(Vec<u8>, Value, Vec<u8>)> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::{
            pkcs1::EncodeRsaPrivateKey,
            pkcs8::{EncodePublicKey, LineEnding},
            traits::PublicKeyParts,
        };
        let key = rsa::RsaPrivateKey::new(&mut rand_core_06::OsRng, 2048).unwrap();
        let der = key.to_pkcs1_der().unwrap().as_bytes().to_vec();
        let jwk = json!({
            "kty": "RSA",
            "n": b64(&key.n().to_bytes_be()),
            "e": b64(&key.e().to_bytes_be()),
        });
        let pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
            .into_bytes();
        (der, jwk, pem)
    })
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims Better Auth's `jwt()` plugin puts in a token: the user row plus
/// `sub`, `iss` and `aud` (both its base URL), `iat` and a 15-minute `exp`.
pub fn better_auth_claims(base_url: &str, user_id: &str) -> Value {
    let now = now();
    json!({
        "id": user_id,
        "email": format!("{user_id}@example.com"),
        "name": format!("User {user_id}"),
        "emailVerified": false,
        "image": null,
        "createdAt": "2026-11-22T10:00:00.000Z",
        "updatedAt": "2026-11-22T10:00:00.000Z",
        "sub": user_id,
        "iss": base_url,
        "aud": base_url,
        "iat": now,
        "exp": now + 15 * 60,
    })
}

struct Published {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
    failing: AtomicBool,
}

/// A stand-in auth server on a loopback port serving `/api/auth/jwks`.
pub struct AuthServer {
    /// Its base URL, as BETTER_AUTH_URL (and so `iss` and `aud`).
    pub base_url: String,
    published: Arc<Published>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

#[handler]
fn jwks(Data(published): Data<&Arc<Published>>) -> Response {
    published.fetches.fetch_add(1, Ordering::SeqCst);
    if published.failing.load(Ordering::SeqCst) {
        return StatusCode::BAD_GATEWAY.into();
    }
    let keys = published.keys.lock().unwrap().clone();
    Response::builder()
        .content_type("application/json")
        .body(json!({ "keys": keys }).to_string())
}

impl AuthServer {
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let published = Arc::new(Published {
            keys: Mutex::new(Vec::new()),
            fetches: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let address: SocketAddr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Route::new()
            .at("/api/auth/jwks", get(jwks))
            .data(published.clone());
        tokio::spawn(
            Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                app,
                async move {
                    stopped.await.ok();
                },
                Some(Duration::from_secs(1)),
            ),
        );
        let server = Self {
            base_url: format!("http://{address}"),
            published,
            _stop: stop,
        };
        server.publish(keys);
        server
    }

    /// Replaces the published key set.
    pub fn publish(&self, keys: &[&SigningKey]) {
        *self.published.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// Makes `/api/auth/jwks` answer 502 (or work again).
    pub fn set_failing(&self, failing: bool) {
        self.published.failing.store(failing, Ordering::SeqCst);
    }

    /// How many times the JWKS has been requested.
    pub fn fetches(&self) -> usize {
        self.published.fetches.load(Ordering::SeqCst)
    }
}
