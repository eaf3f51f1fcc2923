//! A JWKS endpoint on loopback that counts its fetches, and token minting with the fixture keys.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use wagate::auth::JwtConfig;

pub const ISSUER: &str = "https://frontend.test";
pub const AUDIENCE: &str = "wagate";

const ED_PEM: &str = include_str!("../fixtures/ed25519.pem");
const EC_PEM: &str = include_str!("../fixtures/p256.pem");
const RSA_PEM: &str = include_str!("../fixtures/rsa.pem");
const PUBLIC: &str = include_str!("../fixtures/public-jwks.json");

#[derive(Clone, Copy, Debug)]
pub enum KeyKind {
    Ed,
    Ec,
    Rsa,
}

impl KeyKind {
    pub fn kid(self) -> &'static str {
        match self {
            KeyKind::Ed => "ed-1",
            KeyKind::Ec => "ec-1",
            KeyKind::Rsa => "rsa-1",
        }
    }
    fn fixture(self) -> &'static str {
        match self {
            KeyKind::Ed => "ed25519",
            KeyKind::Ec => "p256",
            KeyKind::Rsa => "rsa",
        }
    }
    pub fn alg(self) -> Algorithm {
        match self {
            KeyKind::Ed => Algorithm::EdDSA,
            KeyKind::Ec => Algorithm::ES256,
            KeyKind::Rsa => Algorithm::RS256,
        }
    }
    fn encoding(self) -> EncodingKey {
        match self {
            KeyKind::Ed => EncodingKey::from_ed_pem(ED_PEM.as_bytes()).unwrap(),
            KeyKind::Ec => EncodingKey::from_ec_pem(EC_PEM.as_bytes()).unwrap(),
            KeyKind::Rsa => EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap(),
        }
    }
}

/// The public JWK of a fixture key.
pub fn public_jwk(k: KeyKind) -> Value {
    let all: Value = serde_json::from_str(PUBLIC).unwrap();
    all[k.fixture()].clone()
}

pub struct JwksServer {
    pub url: String,
    pub fetches: Arc<AtomicUsize>,
    pub keys: Arc<Mutex<Vec<Value>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Serves the given keys at `http://127.0.0.1:<port>/jwks.json`.
    pub async fn start(keys: &[KeyKind]) -> JwksServer {
        let fetches = Arc::new(AtomicUsize::new(0));
        let set = Arc::new(Mutex::new(
            keys.iter().map(|k| public_jwk(*k)).collect::<Vec<_>>(),
        ));
        let (f, s) = (fetches.clone(), set.clone());
        let app = Router::new().route(
            "/jwks.json",
            get(move || {
                let (f, s) = (f.clone(), s.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let keys = s.lock().unwrap().clone();
                    Json(json!({ "keys": keys }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer {
            url: format!("http://{addr}/jwks.json"),
            fetches,
            keys: set,
            _task: task,
        }
    }

    pub fn config(&self, refresh: Duration) -> JwtConfig {
        JwtConfig {
            jwks_url: self.url.clone(),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            claim_sub: "sub".into(),
            claim_org: "activeOrganizationId".into(),
            claim_org_role: "orgRole".into(),
            claim_role: "role".into(),
            refresh_interval: refresh,
            max_age: Duration::from_secs(600),
        }
    }

    pub fn fetch_count(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Standard claims for `org` with `role`, valid for an hour.
pub fn claims(org: &str, role: &str) -> Value {
    json!({
        "sub": "user-1", "iss": ISSUER, "aud": AUDIENCE,
        "exp": now() + 3600, "iat": now(),
        "activeOrganizationId": org, "orgRole": role,
    })
}

/// Signs `claims` with a fixture key (header `kid` set unless `kid` is `Some("")`).
pub fn mint(k: KeyKind, claims: &Value, kid: Option<&str>) -> String {
    let mut h = Header::new(k.alg());
    h.kid = match kid {
        Some("") => None,
        Some(other) => Some(other.to_owned()),
        None => Some(k.kid().to_owned()),
    };
    jsonwebtoken::encode(&h, claims, &k.encoding()).unwrap()
}

/// A token with a hand-made header and an arbitrary signature (for `alg: none` / HMAC forgeries).
pub fn forge(header: Value, claims: &Value, signature: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}
