//! Test support: an in-process app on a fresh database, request helpers, seeding helpers,
//! a scripted engine and a JWKS server.

pub mod engine;
pub mod jwks;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use wagate::auth::JwtConfig;
use wagate::domain::{CapSet, Jid};
use wagate::store::{MessageStatus, NewMessage, RecordOptions, Store};
use wagate::{AppState, Config};

pub use engine::ScriptedEngine;

/// Runs a test body once on SQLite and once on PostgreSQL, each on a fresh database.
#[macro_export]
macro_rules! dual {
    (async fn $name:ident($backend:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($backend: $crate::support::Backend) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::support::Backend::Postgres).await
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where tests reach PostgreSQL as a superuser (to create and drop their databases).
pub fn pg_admin_url() -> String {
    std::env::var("WAGATE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database that is removed when dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("wagate.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let name = format!("wagate_t_{}", uuid::Uuid::new_v4().simple());
                let mut admin = sqlx::PgConnection::connect(&pg_admin_url()).await.expect(
                    "PostgreSQL must be running for the PostgreSQL half of the suite (see README)",
                );
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut admin)
                    .await
                    .expect("create database");
                let _ = admin.close().await;
                let base = pg_admin_url();
                let url = match base.rfind('/') {
                    Some(i) => format!("{}/{name}", &base[..i]),
                    None => panic!("bad WAGATE_TEST_PG_URL"),
                };
                TestDb {
                    url,
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Dropping needs async I/O; do it on a thread of its own so it works inside any runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    use sqlx::Connection;
                    if let Ok(mut admin) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                        let _ = sqlx::query(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut admin)
                        .await;
                        let _ = admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// Options for building a test app.
#[derive(Default)]
pub struct Builder {
    jwt: Option<JwtConfig>,
    body_limit: Option<usize>,
    extra: Option<Router<AppState>>,
    tweak: Option<ConfigTweak>,
}

/// A change to the test app's configuration.
type ConfigTweak = Box<dyn FnOnce(&mut Config)>;

impl Builder {
    /// Changes settings of the app's configuration.
    pub fn config(mut self, f: impl FnOnce(&mut Config) + 'static) -> Self {
        self.tweak = Some(Box::new(f));
        self
    }

    pub fn jwt(mut self, cfg: JwtConfig) -> Self {
        self.jwt = Some(cfg);
        self
    }

    pub fn body_limit(mut self, n: usize) -> Self {
        self.body_limit = Some(n);
        self
    }

    pub fn extra_routes(mut self, r: Router<AppState>) -> Self {
        self.extra = Some(r);
        self
    }

    pub async fn build(self, backend: Backend) -> TestApp {
        let db = TestDb::new(backend).await;
        let store = Store::connect(&db.url, 4).await.expect("connect");
        store.migrate().await.expect("migrate");
        let mut cfg = Config {
            database_url: db.url.clone(),
            ..Config::default()
        };
        if let Some(n) = self.body_limit {
            cfg.body_limit_bytes = n;
        }
        if let Some(f) = self.tweak {
            f(&mut cfg);
        }
        if let Some(j) = &self.jwt {
            cfg.jwks_url = j.jwks_url.clone();
            cfg.jwt_issuer = j.issuer.clone();
            cfg.jwt_audience = j.audience.clone();
            cfg.jwks_refresh_interval_secs = j.refresh_interval.as_secs();
        }
        let engine = Arc::new(ScriptedEngine::new(store.clone()));
        let state = AppState::new(cfg, store.clone(), engine.clone());
        let router = wagate::http::router_with(state.clone(), self.extra.unwrap_or_default());
        let admin_key = state
            .auth()
            .keys
            .create("org-a", "test admin", CapSet::all(), None, None)
            .await
            .expect("key")
            .1;
        TestApp {
            router,
            store,
            engine,
            state,
            admin_key,
            _db: db,
        }
    }
}

/// The app under test, in process.
pub struct TestApp {
    pub router: Router,
    pub store: Store,
    pub engine: Arc<ScriptedEngine>,
    pub state: AppState,
    /// An all-capability key of org `org-a`.
    pub admin_key: String,
    _db: TestDb,
}

/// A response, read whole.
pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the status and, for errors, the envelope and its code.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> Value {
        self.expect(status);
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "body: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "message missing: {v}"
        );
        assert!(
            v["error"]["details"].is_object(),
            "details must be an object: {v}"
        );
        v
    }
}

impl TestApp {
    pub async fn new(backend: Backend) -> TestApp {
        Builder::default().build(backend).await
    }

    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        self.raw(req.body(body).unwrap()).await
    }

    pub async fn raw(&self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Resp {
        self.call(Method::GET, uri, Some(&self.admin_key.clone()), None)
            .await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Resp {
        self.call(Method::POST, uri, Some(&self.admin_key.clone()), Some(body))
            .await
    }

    pub async fn patch(&self, uri: &str, body: Value) -> Resp {
        self.call(
            Method::PATCH,
            uri,
            Some(&self.admin_key.clone()),
            Some(body),
        )
        .await
    }

    pub async fn put(&self, uri: &str, body: Value) -> Resp {
        self.call(Method::PUT, uri, Some(&self.admin_key.clone()), Some(body))
            .await
    }

    pub async fn delete(&self, uri: &str) -> Resp {
        self.call(Method::DELETE, uri, Some(&self.admin_key.clone()), None)
            .await
    }

    /// Creates a session of `org-a` through the API; returns its id.
    pub async fn session(&self) -> String {
        let r = self
            .post("/api/v1/sessions", serde_json::json!({"label": "test"}))
            .await;
        r.expect(201);
        r.json()["id"].as_str().unwrap().to_owned()
    }

    /// A key of `org` with exactly `caps`.
    pub async fn key(&self, org: &str, caps: &str) -> String {
        let caps = CapSet::parse_list(caps).unwrap();
        self.state
            .auth()
            .keys
            .create(org, "test", caps, None, None)
            .await
            .unwrap()
            .1
    }

    /// Records one text message through the ingest surface.
    pub async fn msg(
        &self,
        sid: &str,
        chat: &str,
        id: &str,
        from_me: bool,
        ts: i64,
    ) -> wagate::store::Recorded {
        self.store
            .record_message(sid, text(chat, id, from_me, ts), RecordOptions::default())
            .await
            .expect("record")
    }
}

pub fn jid(s: &str) -> Jid {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

/// A text message in `chat`.
pub fn text(chat: &str, id: &str, from_me: bool, ts: i64) -> NewMessage {
    NewMessage {
        chat: jid(chat),
        chat_alt: None,
        wa_message_id: id.to_owned(),
        from_me,
        sender: None,
        sender_lid: None,
        sender_name: None,
        kind: "text".into(),
        body: Some(format!("body of {id}")),
        media: None,
        quoted_message_id: None,
        mentions: Vec::new(),
        status: if from_me {
            MessageStatus::Sent
        } else {
            MessageStatus::Delivered
        },
        timestamp: ts,
        poll: None,
    }
}

/// Waits until `cond` holds, polling, or panics after `secs`.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl TestApp {
    /// Creates a session owned by `org` through the API (with a key of that org); returns its id.
    pub async fn session_of(&self, org: &str) -> String {
        let key = self.key(org, "manage").await;
        let r = self
            .call(
                Method::POST,
                "/api/v1/sessions",
                Some(&key),
                Some(serde_json::json!({"label": org})),
            )
            .await;
        r.expect(201);
        r.json()["id"].as_str().unwrap().to_owned()
    }

    /// How many rows of `table` belong to `session` (a direct look at the database).
    pub async fn rows_of(&self, table: &str, session: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE session_id = $1");
        match self.store.db() {
            wagate::store::Db::Sqlite(p) => sqlx::query_scalar(&sql)
                .bind(session)
                .fetch_one(p)
                .await
                .unwrap(),
            wagate::store::Db::Postgres(p) => sqlx::query_scalar(&sql)
                .bind(session)
                .fetch_one(p)
                .await
                .unwrap(),
        }
    }
}
