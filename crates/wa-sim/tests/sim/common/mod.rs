//! Shared test harness: an in-process simulator on 127.0.0.1:0 and real
//! whatsapp-rust clients pointed at it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use wa_sim::{Running, SimConfig};
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::store::traits::Backend;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore::store::InMemoryBackend;
use whatsapp_rust::Client;
use whatsapp_rust_tokio_transport::TokioWebSocketTransportFactory;
use whatsapp_rust_ureq_http_client::UreqHttpClient;

pub const WAIT: Duration = Duration::from_secs(60);

pub async fn sim() -> Running {
    sim_with(SimConfig::default()).await
}

pub async fn sim_with(config: SimConfig) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "wa_sim=info".into()),
        )
        .with_test_writer()
        .try_init();
    wa_sim::start("127.0.0.1:0", config)
        .await
        .expect("start simulator")
}

/// Every event a client emitted, in arrival order, with a waiter.
#[derive(Clone, Default)]
pub struct Events {
    list: Arc<Mutex<Vec<Arc<Event>>>>,
    notify: Arc<Notify>,
}

impl Events {
    fn push(&self, e: Arc<Event>) {
        self.list.lock().unwrap().push(e);
        self.notify.notify_waiters();
    }

    pub fn all(&self) -> Vec<Arc<Event>> {
        self.list.lock().unwrap().clone()
    }

    pub fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.list.lock().unwrap().iter().filter(|e| pred(e)).count()
    }

    /// Waits until the `n`-th (1-based) event matching `pred` arrives.
    pub async fn wait_nth(
        &self,
        what: &str,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Arc<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self
                .list
                .lock()
                .unwrap()
                .iter()
                .filter(|e| pred(e))
                .nth(n - 1)
                .cloned()
            {
                return e;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen: Vec<String> = self
                    .all()
                    .iter()
                    .map(|e| format!("{:?}", e).chars().take(80).collect())
                    .collect();
                panic!("timed out waiting for {what} (#{n}); events seen: {seen:#?}");
            }
        }
    }

    pub async fn wait(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Arc<Event> {
        self.wait_nth(what, 1, timeout, pred).await
    }
}

pub struct TestClient {
    pub handle: Option<BotHandle>,
    pub client: Arc<Client>,
    pub events: Events,
    pub backend: Arc<dyn Backend>,
}

impl TestClient {
    pub async fn shutdown(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(25), h.shutdown()).await;
        }
    }
}

pub fn new_backend() -> Arc<dyn Backend> {
    Arc::new(InMemoryBackend::new())
}

/// Starts a real whatsapp-rust client against the simulator.
pub async fn client(sim: &Running, backend: Arc<dyn Backend>) -> TestClient {
    client_with(sim, backend, |b| b).await
}

/// A client pointed at any simulator URL (e.g. a spawned `wa-sim` process).
pub async fn client_at(ws_url: &str, backend: Arc<dyn Backend>) -> TestClient {
    client_builder(ws_url, backend, |b| b, true).await
}

pub async fn client_with(
    sim: &Running,
    backend: Arc<dyn Backend>,
    tweak: impl FnOnce(
        whatsapp_rust::bot::BotBuilder<
            whatsapp_rust::bot::Provided,
            whatsapp_rust::bot::Provided,
            whatsapp_rust::bot::Provided,
            whatsapp_rust::bot::Provided,
        >,
    ) -> whatsapp_rust::bot::BotBuilder<
        whatsapp_rust::bot::Provided,
        whatsapp_rust::bot::Provided,
        whatsapp_rust::bot::Provided,
        whatsapp_rust::bot::Provided,
    >,
) -> TestClient {
    client_builder(&sim.ws_url(), backend, tweak, true).await
}

async fn client_builder(
    ws_url: &str,
    backend: Arc<dyn Backend>,
    tweak: impl FnOnce(
        whatsapp_rust::bot::BotBuilder<
            whatsapp_rust::bot::Provided,
            whatsapp_rust::bot::Provided,
            whatsapp_rust::bot::Provided,
            whatsapp_rust::bot::Provided,
        >,
    ) -> whatsapp_rust::bot::BotBuilder<
        whatsapp_rust::bot::Provided,
        whatsapp_rust::bot::Provided,
        whatsapp_rust::bot::Provided,
        whatsapp_rust::bot::Provided,
    >,
    skip_history: bool,
) -> TestClient {
    let events = Events::default();
    let sink = events.clone();
    let builder = Bot::builder()
        .with_backend_arc(backend.clone())
        .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(ws_url))
        .with_http_client(LoopbackHttp(UreqHttpClient::new()))
        .with_runtime(whatsapp_rust::TokioRuntime)
        .with_version((2, 3000, 1_000_000_000))
        .on_event(move |e, _c| {
            let sink = sink.clone();
            async move { sink.push(e) }
        });
    let builder = if skip_history {
        builder.skip_history_sync()
    } else {
        builder
    };
    let bot = tweak(builder).build().await.expect("build bot");
    let client = bot.client();
    let handle = bot.spawn();
    TestClient {
        handle: Some(handle),
        client,
        events,
        backend,
    }
}

pub fn is_qr(e: &Event) -> bool {
    matches!(e, Event::PairingQrCode(_))
}

pub fn qr_code(e: &Arc<Event>) -> String {
    match &**e {
        Event::PairingQrCode(q) => q.code.clone(),
        other => panic!("not a QR event: {other:?}"),
    }
}

pub fn is_connected(e: &Event) -> bool {
    matches!(e, Event::Connected(_))
}

pub fn is_pair_success(e: &Event) -> bool {
    matches!(e, Event::PairSuccess(_))
}

/// POST a JSON body to the control API (blocking HTTP on a worker thread).
pub async fn post(sim: &Running, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{}", sim.http_base(), path);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent.post(&url).send_json(&body).expect("control POST");
        let status = resp.status().as_u16();
        let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        (status, v)
    })
    .await
    .unwrap()
}

pub async fn get(sim: &Running, path: &str) -> Value {
    let url = format!("{}{}", sim.http_base(), path);
    tokio::task::spawn_blocking(move || {
        let mut resp = ureq::get(&url).call().expect("control GET");
        resp.body_mut().read_json().expect("json")
    })
    .await
    .unwrap()
}

/// Pairs a fresh client as `phone` by scanning its first QR over the control
/// API; returns it once `Connected`.
pub async fn paired_client(sim: &Running, phone: &str, name: &str) -> TestClient {
    let c = client(sim, new_backend()).await;
    let qr = qr_code(&c.events.wait("first QR", WAIT, is_qr).await);
    let (status, body) = post(
        sim,
        "/control/scan",
        serde_json::json!({"qr": qr, "phone": phone, "name": name}),
    )
    .await;
    assert_eq!(status, 200, "scan failed: {body}");
    c.events.wait("PairSuccess", WAIT, is_pair_success).await;
    c.events.wait("Connected", WAIT, is_connected).await;
    c
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Simulator-side connection ids logged in as `phone:device`.
pub fn conn_ids(sim: &Running, phone: &str, device: u16) -> Vec<u64> {
    let w = sim.sim.world();
    w.conns
        .iter()
        .filter(|(_, c)| {
            c.device
                .as_ref()
                .is_some_and(|(p, d)| p == phone && *d == device)
        })
        .map(|(id, _)| *id)
        .collect()
}

/// The text of every message in a `Messages` event.
pub fn texts(e: &Event) -> Vec<String> {
    use whatsapp_rust::wacore::proto_helpers::MessageExt;
    e.messages()
        .filter_map(|m| m.message.text_content().map(str::to_string))
        .collect()
}

/// Whether `e` is a `Messages` event carrying `text`.
pub fn has_text(e: &Event, text: &str) -> bool {
    texts(e).iter().any(|t| t == text)
}

/// Waits for the inbound message with `text`; returns it.
pub async fn wait_text(c: &TestClient, text: &str) -> whatsapp_rust::types::events::InboundMessage {
    let ev = c
        .events
        .wait(&format!("message {text:?}"), WAIT, |e| has_text(e, text))
        .await;
    use whatsapp_rust::wacore::proto_helpers::MessageExt;
    let found = ev
        .messages()
        .find(|m| m.message.text_content() == Some(text))
        .cloned()
        .expect("matched");
    found
}

/// GET that returns the status too (for 404s).
pub async fn get_status(sim: &Running, path: &str) -> (u16, Value) {
    let url = format!("{}{}", sim.http_base(), path);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent.get(&url).call().expect("control GET");
        let status = resp.status().as_u16();
        let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        (status, v)
    })
    .await
    .unwrap()
}

/// Polls a control GET until `cond` holds on its JSON.
pub async fn wait_json(
    sim: &Running,
    path: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = get(sim, path).await;
        if cond(&v) {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out waiting for {what}; last {path}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The test build's HTTP client: media URLs name the simulator
/// (`https://127.0.0.1:PORT/...`), which speaks plain HTTP on loopback.
/// Only tests use this; a release gateway never talks to a loopback host.
pub struct LoopbackHttp(pub UreqHttpClient);

fn to_loopback(mut r: whatsapp_rust::http::HttpRequest) -> whatsapp_rust::http::HttpRequest {
    if let Some(rest) = r.url.strip_prefix("https://127.0.0.1:") {
        r.url = format!("http://127.0.0.1:{rest}");
    }
    r
}

#[async_trait::async_trait]
impl whatsapp_rust::http::HttpClient for LoopbackHttp {
    async fn execute(
        &self,
        request: whatsapp_rust::http::HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::http::HttpResponse> {
        self.0.execute(to_loopback(request)).await
    }
}

/// Base64 of `bytes` (control API bodies).
pub fn b64(bytes: &[u8]) -> String {
    use base64::prelude::*;
    BASE64_STANDARD.encode(bytes)
}

/// Creates a simulated person; returns `(jid, lid)`.
pub async fn person(sim: &Running, phone: &str, name: &str) -> (String, String) {
    let (status, body) = post(
        sim,
        "/control/people",
        serde_json::json!({"phone": phone, "name": name}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["jid"].as_str().unwrap().to_string(),
        body["lid"].as_str().unwrap().to_string(),
    )
}

/// A person sends; returns the message id.
pub async fn person_send(sim: &Running, phone: &str, body: Value) -> String {
    let (status, resp) = post(sim, &format!("/control/people/{phone}/send"), body).await;
    assert_eq!(status, 200, "send failed: {resp}");
    assert!(resp["timestamp"].as_u64().unwrap() > 0, "{resp}");
    resp["id"].as_str().unwrap().to_string()
}

/// Waits until `phone` received a message matching `pred`; returns it.
pub async fn person_received(
    sim: &Running,
    phone: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let list = wait_json(
        sim,
        &format!("/control/people/{phone}/received"),
        what,
        |v| v.as_array().is_some_and(|a| a.iter().any(&pred)),
    )
    .await;
    list.as_array()
        .unwrap()
        .iter()
        .find(|m| pred(m))
        .cloned()
        .unwrap()
}

/// PUT a JSON body to the control API.
pub async fn put(sim: &Running, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{}", sim.http_base(), path);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent.put(&url).send_json(&body).expect("control PUT");
        let status = resp.status().as_u16();
        let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        (status, v)
    })
    .await
    .unwrap()
}

/// Pairs a client that keeps history sync on (the default harness skips it).
pub async fn paired_client_with_history(sim: &Running, phone: &str, name: &str) -> TestClient {
    let c = client_builder(&sim.ws_url(), new_backend(), |b| b, false).await;
    let qr = qr_code(&c.events.wait("first QR", WAIT, is_qr).await);
    let (status, body) = post(
        sim,
        "/control/scan",
        serde_json::json!({"qr": qr, "phone": phone, "name": name}),
    )
    .await;
    assert_eq!(status, 200, "scan failed: {body}");
    c.events.wait("Connected", WAIT, is_connected).await;
    c
}
