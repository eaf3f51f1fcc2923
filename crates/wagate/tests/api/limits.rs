//! What bounds a request (issue 17, defects 9 and 10): a time limit answered in the envelope,
//! load shedding with `Retry-After`, a synchronous send that answers before the limit, and
//! request logs that name the route, never the path's personal data.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::routing::get;
use serde_json::json;
use tokio::sync::Semaphore;
use wagate::engine::send::SendError;
use wagate::AppState;

use crate::support::{Backend, TestApp};

fn get_req(app: &TestApp, uri: &str) -> Request<Body> {
    Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin_key))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_request_over_the_time_limit_is_504_in_the_envelope() {
    let stall = axum::Router::<AppState>::new().route(
        "/api/v1/test/stall",
        get(std::future::pending::<&'static str>),
    );
    let app = TestApp::builder()
        .config(|c| c.request_timeout_secs = 1)
        .extra_routes(stall)
        .build(Backend::Sqlite)
        .await;
    let started = Instant::now();
    let r = app.raw(get_req(&app, "/api/v1/test/stall")).await;
    let e = r.expect_error(504, "gateway_timeout");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request_timeout_secs"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Ordinary requests are untouched by the limit.
    app.get("/api/v1/sessions").await.expect(200);
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_are_shed_with_retry_after() {
    // Each request to the route says it is in, then waits until the test lets it go.
    let entered = Arc::new(Semaphore::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (e, rl) = (entered.clone(), release.clone());
    let block = axum::Router::<AppState>::new().route(
        "/api/v1/test/block",
        get(move || {
            let (entered, release) = (e.clone(), rl.clone());
            async move {
                entered.add_permits(1);
                release.acquire().await.unwrap().forget();
                "done"
            }
        }),
    );
    let app = TestApp::builder()
        .config(|c| c.max_concurrent_requests = 2)
        .extra_routes(block)
        .build(Backend::Sqlite)
        .await;
    let held = async {
        tokio::join!(
            app.raw(get_req(&app, "/api/v1/test/block")),
            app.raw(get_req(&app, "/api/v1/test/block"))
        )
    };
    let probe = async {
        // Both slots are taken once both requests are inside the handler.
        tokio::time::timeout(Duration::from_secs(10), entered.acquire_many(2))
            .await
            .expect("both requests entered")
            .unwrap()
            .forget();
        let shed = app.raw(get_req(&app, "/api/v1/sessions")).await;
        // Health and metrics are not counted.
        let health = app.raw(get_req(&app, "/healthz")).await;
        release.add_permits(2);
        (shed, health)
    };
    let ((a, b), (shed, health)) = tokio::join!(held, probe);
    a.expect(200);
    b.expect(200);
    shed.expect_error(503, "gateway_unavailable");
    assert_eq!(shed.headers["retry-after"], "1");
    health.expect(200);
    // The slots are free again.
    app.get("/api/v1/sessions").await.expect(200);
}

#[tokio::test]
async fn a_sync_send_answers_202_before_the_request_time_limit() {
    let app = TestApp::builder()
        .config(|c| c.request_timeout_secs = 3)
        .build(Backend::Sqlite)
        .await;
    let sid = app.session().await;
    let client = app.engine.connect(&sid);
    // WhatsApp keeps failing for now: the message stays on its way.
    client
        .send_failures
        .lock()
        .unwrap()
        .extend((0..1000).map(|_| SendError::Retry("timeout".into())));
    let started = Instant::now();
    let r = app
        .post(
            &format!("/api/v1/sessions/{sid}/messages"),
            json!({"to": "6281234567890", "type": "text", "text": "hi"}),
        )
        .await;
    r.expect(202);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(r.json()["status"], "pending");
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn request_logs_name_the_route_and_never_the_number() {
    let app = TestApp::new(Backend::Sqlite).await;
    let sid = app.session().await;
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let r = {
        // This test's thread only (a current-thread runtime: the request runs here).
        let _guard = tracing::subscriber::set_default(subscriber);
        app.raw(get_req(
            &app,
            &format!("/api/v1/sessions/{sid}/chats/6281234567890@s.whatsapp.net?q=6281234567890"),
        ))
        .await
    };
    r.expect_error(404, "not_found");
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("route=/api/v1/sessions/{sid}/chats/{cid}"),
        "the route template is logged: {text}"
    );
    assert!(text.contains("request_id="), "{text}");
    assert!(
        !text.contains("6281234567890"),
        "a number in the log: {text}"
    );
    assert!(!text.contains(&sid), "the raw path in the log: {text}");
}
