//! The harness: a simulator, a gateway on loopback over a database that outlives restarts,
//! and small HTTP helpers. Nothing sleeps to wait for work: every wait polls a condition with
//! a deadline.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use wagate::engine::whatsapp::{WaConfig, WaEngine};
use wagate::store::Store;
use wagate::{AppState, Config};

pub const WAIT: Duration = Duration::from_secs(60);

pub struct Gateway {
    pub base: String,
    pub key: String,
    engine: WaEngine,
    server: tokio::task::JoinHandle<()>,
    store: Store,
}

pub struct World {
    pub sim: wa_sim::Running,
    pub dir: tempfile::TempDir,
    pub gw: Option<Gateway>,
    pub http: reqwest::Client,
}

impl World {
    pub async fn new() -> World {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let sim = wa_sim::start("127.0.0.1:0", wa_sim::SimConfig::default())
            .await
            .expect("simulator");
        let dir = tempfile::tempdir().unwrap();
        let mut w = World {
            sim,
            dir,
            gw: None,
            http: reqwest::Client::new(),
        };
        w.start_gateway().await;
        w
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the gateway over the world's database (resuming the sessions that were running).
    pub async fn start_gateway(&mut self) {
        let cfg = Config {
            data_dir: self.data_dir(),
            wa_url: self.sim.ws_url(),
            ..Config::default()
        };
        let store = Store::connect(&cfg.database_url(), 8).await.unwrap();
        store.migrate().await.unwrap();
        wagate::bootstrap::ensure_admin_key(&store, &cfg.data_dir)
            .await
            .unwrap();
        let key = std::fs::read_to_string(cfg.data_dir.join("admin-key"))
            .unwrap()
            .trim()
            .to_owned();
        let engine = WaEngine::new(
            store.clone(),
            WaConfig {
                url: cfg.wa_url.clone(),
                max_connect_failures: 3,
                resume_concurrency: 4,
            },
        );
        engine.resume_all().await.unwrap();
        let state = AppState::new(cfg, store.clone(), Arc::new(engine.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, wagate::app(state)).await.unwrap();
        });
        self.gw = Some(Gateway {
            base,
            key,
            engine,
            server,
            store,
        });
    }

    /// Stops the gateway as a shutdown does: connections closed, database kept.
    pub async fn stop_gateway(&mut self) {
        if let Some(gw) = self.gw.take() {
            gw.server.abort();
            gw.engine.shutdown().await;
            gw.store.close().await;
        }
    }

    fn gw(&self) -> &Gateway {
        self.gw.as_ref().expect("the gateway runs")
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let key = self.gw().key.clone();
        self.call_as(&key, method, path, body).await
    }

    /// A key of another organization, with every capability.
    pub async fn org_key(&self, org: &str) -> String {
        let keys = wagate::auth::ApiKeyService::new(self.gw().store.clone());
        let caps = wagate::domain::CapSet::all();
        keys.create(org, "e2e", caps, None, None).await.unwrap().1
    }

    pub async fn call_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let gw = self.gw();
        let mut req = self
            .http
            .request(method, format!("{}{path}", gw.base))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("gateway answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    // The simulator's control API.

    pub async fn sim_post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.sim.http_base()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn sim_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.sim.http_base()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A session created and started through the API, paired by QR as `phone`; returns its id
    /// once it is `working`.
    pub async fn paired_session(&self, phone: &str, name: &str) -> String {
        let key = self.gw().key.clone();
        self.paired_session_as(&key, phone, name).await
    }

    /// [`World::paired_session`] for the organization of `key`.
    pub async fn paired_session_as(&self, key: &str, phone: &str, name: &str) -> String {
        let (s, created) = self
            .call_as(
                key,
                reqwest::Method::POST,
                "/api/v1/sessions",
                Some(json!({"label": name})),
            )
            .await;
        assert_eq!(s, 201, "{created}");
        let sid = created["id"].as_str().unwrap().to_owned();
        let (s, started) = self
            .call_as(
                key,
                reqwest::Method::POST,
                &format!("/api/v1/sessions/{sid}:start"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{started}");
        let qr = eventually("a QR code", || async {
            let (s, v) = self
                .call_as(
                    key,
                    reqwest::Method::GET,
                    &format!("/api/v1/sessions/{sid}/qr"),
                    None,
                )
                .await;
            (s == 200).then(|| v["qr"].as_str().unwrap().to_owned())
        })
        .await;
        let (s, v) = self
            .sim_post(
                "/control/scan",
                json!({"qr": qr, "phone": phone, "name": name}),
            )
            .await;
        assert_eq!(s, 200, "scan: {v}");
        eventually("working", || async {
            let (_, v) = self
                .call_as(
                    key,
                    reqwest::Method::GET,
                    &format!("/api/v1/sessions/{sid}"),
                    None,
                )
                .await;
            (v["status"] == "working").then_some(())
        })
        .await;
        sid
    }

    pub async fn wait_status(&self, sid: &str, status: &str) -> Value {
        eventually(&format!("session {sid} {status}"), || async {
            let v = self.get(&format!("/api/v1/sessions/{sid}")).await;
            (v["status"] == status).then_some(v)
        })
        .await
    }

    pub async fn person(&self, phone: &str, name: &str) -> (String, String) {
        let (s, v) = self
            .sim_post("/control/people", json!({"phone": phone, "name": name}))
            .await;
        assert_eq!(s, 201, "{v}");
        (
            v["jid"].as_str().unwrap().to_owned(),
            v["lid"].as_str().unwrap().to_owned(),
        )
    }
}

/// Polls `f` until it gives `Some`, or panics after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
