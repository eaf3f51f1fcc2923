use axum::body::Body;
use axum::http::{Method, Request};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::dual;
use crate::support::TestApp;

dual!(async fn unknown_routes_methods_and_big_bodies_use_the_envelope(backend) {
    let app = TestApp::builder().body_limit(2048).build(backend).await;
    let r = app.get("/api/v1/nothing-here").await;
    r.expect_error(404, "not_found");
    app.call(Method::GET, "/nope", None, None).await.expect_error(404, "not_found");
    app.call(Method::DELETE, "/healthz", None, None).await.expect_error(405, "method_not_allowed");
    app.call(Method::PUT, "/api/v1/sessions", Some(&app.admin_key.clone()), Some(json!({}))).await.expect_error(405, "method_not_allowed");
    let big = json!({"label": "x".repeat(4096)});
    app.post("/api/v1/sessions", big).await.expect_error(413, "payload_too_large");
    assert_eq!(app.get("/api/v1/sessions").await.json()["data"], json!([]), "nothing was created");
});

dual!(async fn panics_become_500_internal_without_the_cause(backend) {
    let extra: Router<wagate::AppState> = Router::new().route("/boom", get(|| async {
        if std::hint::black_box(true) {
            panic!("secret cause 42");
        }
        "unreachable"
    }));
    let app = TestApp::builder().extra_routes(extra).build(backend).await;
    let r = app.call(Method::GET, "/boom", None, None).await;
    let v = r.expect_error(500, "internal");
    assert!(!String::from_utf8_lossy(&r.body).contains("secret cause"), "{v}");
    assert!(r.headers.contains_key("x-request-id"));
    // The server keeps serving.
    app.call(Method::GET, "/healthz", None, None).await.expect(200);
});

dual!(async fn request_ids_on_every_response(backend) {
    let app = TestApp::new(backend).await;
    for r in [app.call(Method::GET, "/healthz", None, None).await, app.call(Method::GET, "/api/v1/sessions", None, None).await, app.get("/x").await] {
        let id = r.headers.get("x-request-id").expect("x-request-id").to_str().unwrap().to_owned();
        assert!(!id.is_empty());
    }
    let req = Request::builder().uri("/healthz").header("x-request-id", "my-trace-1").body(Body::empty()).unwrap();
    assert_eq!(app.raw(req).await.headers["x-request-id"], "my-trace-1");
});

dual!(async fn health_readiness_and_metrics(backend) {
    let app = TestApp::new(backend).await;
    assert_eq!(app.call(Method::GET, "/healthz", None, None).await.json(), json!({"status": "ok"}));
    assert_eq!(app.call(Method::GET, "/readyz", None, None).await.json(), json!({"status": "ok"}));
    let sid = app.session().await;
    app.get(&format!("/api/v1/sessions/{sid}/chats")).await.expect(200);
    app.get("/api/v1/sessions/01HZZZZZZZZZZZZZZZZZZZZZZZ/chats").await.expect(404);
    let m = app.call(Method::GET, "/metrics", None, None).await;
    m.expect(200);
    let text = String::from_utf8_lossy(&m.body).to_string();
    assert!(text.contains(r#"wagate_http_requests_total{method="GET",route="/api/v1/sessions/{sid}/chats",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"route="/api/v1/sessions/{sid}/chats",status="404"} 1"#));
    assert!(text.contains("wagate_http_request_duration_seconds_bucket"));
    // Readiness follows the database.
    app.store.close().await;
    app.call(Method::GET, "/readyz", None, None).await.expect_error(503, "gateway_unavailable");
    // So does every endpoint that needs it: a retryable 503, not a 500.
    app.get("/api/v1/sessions").await.expect_error(503, "gateway_unavailable");
    app.get(&format!("/api/v1/sessions/{sid}/chats")).await.expect_error(503, "gateway_unavailable");
});
