use axum::http::Method;

use crate::support::{Backend, TestApp};

/// Every route the gateway serves, as (method, path in the document).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/sessions"),
    ("post", "/api/v1/sessions"),
    ("get", "/api/v1/sessions/{sid}"),
    ("patch", "/api/v1/sessions/{sid}"),
    ("delete", "/api/v1/sessions/{sid}"),
    ("post", "/api/v1/sessions/{sid}:start"),
    ("post", "/api/v1/sessions/{sid}:stop"),
    ("post", "/api/v1/sessions/{sid}:restart"),
    ("post", "/api/v1/sessions/{sid}:logout"),
    ("get", "/api/v1/sessions/{sid}/qr"),
    ("post", "/api/v1/sessions/{sid}/pairing-code"),
    ("get", "/api/v1/sessions/{sid}/me"),
    ("get", "/api/v1/sessions/{sid}/chats"),
    ("get", "/api/v1/sessions/{sid}/chats/{cid}"),
    ("patch", "/api/v1/sessions/{sid}/chats/{cid}"),
    ("delete", "/api/v1/sessions/{sid}/chats/{cid}"),
    ("post", "/api/v1/sessions/{sid}/chats/{cid}/read"),
    ("put", "/api/v1/sessions/{sid}/chats/{cid}/presence"),
    ("get", "/api/v1/sessions/{sid}/chats/{cid}/messages"),
    ("get", "/api/v1/sessions/{sid}/contacts"),
    ("get", "/api/v1/sessions/{sid}/contacts/check"),
    ("get", "/api/v1/api-keys"),
    ("post", "/api/v1/api-keys"),
    ("delete", "/api/v1/api-keys/{id}"),
    ("get", "/api/v1/events"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

#[tokio::test]
async fn every_route_is_documented_and_served() {
    let app = TestApp::new(Backend::Sqlite).await;
    let r = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    r.expect(200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in ROUTES {
        let op = &paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} missing from the document"))[*method];
        assert!(op.is_object(), "{method} {path} missing from the document");
        assert!(
            op["description"].as_str().is_some_and(|d| d.len() > 20),
            "{method} {path} needs a description"
        );
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} lists no responses"
        );
        // The router answers the route (a real 404 envelope for an unknown route says "no such route").
        let uri = path
            .replace("{sid}", "01HZZZZZZZZZZZZZZZZZZZZZZZ")
            .replace("{cid}", "1@s.whatsapp.net")
            .replace("{id}", "x");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = app
            .call(
                m,
                &uri,
                Some(&app.admin_key.clone()),
                Some(serde_json::json!({})),
            )
            .await;
        assert_ne!(resp.status.as_u16(), 405, "{method} {path}");
        if resp.status.as_u16() == 404 {
            assert_ne!(
                resp.json()["error"]["message"],
                "no such route",
                "{method} {path} is not routed"
            );
        }
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "the document lists routes this test does not know: update ROUTES"
    );
    for schema in [
        "Chat",
        "ChatPage",
        "Message",
        "MessagePage",
        "Contact",
        "ContactPage",
        "Session",
        "ErrorEnvelope",
        "OnWhatsApp",
        "EventPage",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
