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
    run: Run,
}

/// How the gateway runs: as tasks of the test's runtime, or as a process of its own (this test
/// binary re-run as [`crate::crash::gateway_process`]) that can be killed with SIGKILL.
enum Run {
    InProcess {
        engine: WaEngine,
        server: tokio::task::JoinHandle<()>,
        store: Store,
    },
    Process(std::process::Child),
}

/// Set for the child process that runs the gateway (`World::new_process`).
pub const CHILD_ENV: &str = "WAGATE_E2E_GATEWAY_CHILD";

pub struct World {
    pub sim: wa_sim::Running,
    pub dir: tempfile::TempDir,
    pub gw: Option<Gateway>,
    pub http: reqwest::Client,
    process: bool,
    /// `resume_concurrency` of the next in-process gateway start.
    pub resume_concurrency: usize,
}

impl World {
    pub async fn new() -> World {
        World::with(false).await
    }

    /// A world whose gateway is a separate process.
    pub async fn new_process() -> World {
        World::with(true).await
    }

    async fn with(process: bool) -> World {
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
            process,
            resume_concurrency: 4,
        };
        w.start_gateway().await;
        w
    }

    /// The gateway's SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("wagate.db")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the gateway over the world's database (resuming the sessions that were running).
    pub async fn start_gateway(&mut self) {
        if self.process {
            return self.start_process().await;
        }
        let cfg = Config {
            data_dir: self.data_dir(),
            wa_url: self.sim.ws_url(),
            ..Config::default()
        };
        let store = Store::connect(&cfg.database_url(), 8)
            .await
            .unwrap()
            .with_media_dir(cfg.media_path());
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
                resume_concurrency: self.resume_concurrency,
                media_dir: cfg.media_path(),
                media_store_max_bytes: cfg.media_store_max_bytes,
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
            run: Run::InProcess {
                engine,
                server,
                store,
            },
        });
    }

    async fn start_process(&mut self) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))
            .unwrap();
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::gateway_process",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_ENV, "1")
            .env("WAGATE_DATA_DIR", self.data_dir())
            .env("WAGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("WAGATE_WA_URL", self.sim.ws_url())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the gateway process");
        let base = format!("http://127.0.0.1:{port}");
        let http = self.http.clone();
        let ready = base.clone();
        eventually("the gateway process is ready", || {
            let (http, ready) = (http.clone(), ready.clone());
            async move {
                let r = http.get(format!("{ready}/readyz")).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        let key = std::fs::read_to_string(self.data_dir().join("admin-key"))
            .unwrap()
            .trim()
            .to_owned();
        self.gw = Some(Gateway {
            base,
            key,
            run: Run::Process(child),
        });
    }

    /// Stops the gateway as a shutdown does: connections closed, database kept.
    pub async fn stop_gateway(&mut self) {
        if let Some(gw) = self.gw.take() {
            match gw.run {
                Run::InProcess {
                    engine,
                    server,
                    store,
                } => {
                    server.abort();
                    engine.shutdown().await;
                    store.close().await;
                }
                Run::Process(mut child) => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }

    /// Kills the gateway process with SIGKILL: nothing is flushed or closed.
    pub fn kill_gateway(&mut self) {
        match self.gw.take().map(|g| g.run) {
            Some(Run::Process(mut child)) => {
                child.kill().expect("SIGKILL");
                child.wait().unwrap();
            }
            _ => panic!("only a gateway process can be killed"),
        }
    }

    /// The in-process gateway's engine.
    pub fn engine(&self) -> &WaEngine {
        match &self.gw().run {
            Run::InProcess { engine, .. } => engine,
            Run::Process(_) => panic!("the engine of a gateway process is out of reach"),
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
        let Run::InProcess { store, .. } = &self.gw().run else {
            panic!("org_key needs the in-process gateway")
        };
        let keys = wagate::auth::ApiKeyService::new(store.clone());
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

    /// Injects the simulator's fault `kind` on the first device of `phone`, waits for the
    /// session to reach `status` and checks that its reason mentions `reason`.
    pub async fn fault_then(&self, sid: &str, phone: &str, kind: &str, status: &str, reason: &str) {
        let (s, v) = self
            .sim_post(
                "/control/fault",
                json!({"jid": format!("{phone}:1@s.whatsapp.net"), "kind": kind}),
            )
            .await;
        assert_eq!(s, 200, "fault {kind}: {v}");
        let now = self.wait_status(sid, status).await;
        assert!(
            now["statusReason"]
                .as_str()
                .unwrap_or_default()
                .contains(reason),
            "after {kind}: {now}"
        );
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

impl Drop for World {
    fn drop(&mut self) {
        if let Some(Gateway {
            run: Run::Process(child),
            ..
        }) = self.gw.as_mut()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
