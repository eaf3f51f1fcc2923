use axum::http::Method;
use serde_json::json;

use crate::dual;
use crate::support::TestApp;

dual!(async fn create_list_use_and_revoke_over_the_api(backend) {
    let app = TestApp::new(backend).await;
    let r = app.post("/api/v1/api-keys", json!({"name": "CRM", "capabilities": ["read", "send"]})).await;
    r.expect(201);
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("wag_") && key.len() >= 4 + 43);
    assert_eq!(created["name"], "CRM");
    assert_eq!(created["capabilities"], json!(["read", "send"]));
    assert_eq!(created["organizationId"], "org-a");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    let id = created["id"].as_str().unwrap().to_owned();
    let sid = app.session().await;
    app.call(Method::GET, &format!("/api/v1/sessions/{sid}/chats"), Some(&key), None).await.expect(200);
    let list = app.get("/api/v1/api-keys").await;
    list.expect(200);
    let text = String::from_utf8_lossy(&list.body).to_string();
    assert!(!text.contains(&key), "the secret is never listed");
    assert!(!text.contains("keyHash") && !text.contains("key_hash"));
    let listed = list.json();
    assert!(listed["data"].as_array().unwrap().iter().any(|k| k["id"] == id.as_str()));
    // Revoke: 204, then the key stops working, and the listing shows it.
    let r = app.delete(&format!("/api/v1/api-keys/{id}")).await;
    r.expect(204);
    assert!(r.body.is_empty());
    app.call(Method::GET, &format!("/api/v1/sessions/{sid}/chats"), Some(&key), None).await.expect_error(401, "unauthorized");
    let listed = app.get("/api/v1/api-keys").await.json();
    let k = listed["data"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
    assert!(k["revokedAt"].is_i64());
    app.delete("/api/v1/api-keys/01HZZZZZZZZZZZZZZZZZZZZZZZ").await.expect_error(404, "not_found");
});

dual!(async fn a_key_cannot_revoke_itself(backend) {
    let app = TestApp::new(backend).await;
    let created = app.post("/api/v1/api-keys", json!({"name": "ops", "capabilities": ["manage"]})).await.json();
    let (id, key) = (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());
    let own = app.call(Method::DELETE, &format!("/api/v1/api-keys/{id}"), Some(&key), None).await;
    own.expect_error(409, "conflict");
    // Still working, then revoked by another credential.
    app.call(Method::GET, "/api/v1/api-keys", Some(&key), None).await.expect(200);
    app.delete(&format!("/api/v1/api-keys/{id}")).await.expect(204);
    app.call(Method::GET, "/api/v1/api-keys", Some(&key), None).await.expect_error(401, "unauthorized");
});

dual!(async fn a_key_never_grants_more_than_its_creator_holds(backend) {
    let app = TestApp::new(backend).await;
    let manager = app.key("org-a", "manage,read").await;
    let call = |body| {
        let (app, manager) = (&app, manager.clone());
        async move { app.call(Method::POST, "/api/v1/api-keys", Some(&manager), Some(body)).await }
    };
    call(json!({"name": "x", "capabilities": ["read"]})).await.expect(201);
    call(json!({"name": "x", "capabilities": ["read", "send"]})).await.expect_error(403, "forbidden");
    call(json!({"name": "x", "capabilities": []})).await.expect_error(422, "validation_error");
    call(json!({"name": "x", "capabilities": ["root"]})).await.expect_error(422, "validation_error");
    call(json!({"name": "", "capabilities": ["read"]})).await.expect_error(422, "validation_error");
    // An expiry in the past (the document cannot say "in the future") makes a key that is
    // expired from the start: created, and refused when used.
    let expired = call(json!({"name": "x", "capabilities": ["read"], "expiresAt": 1000})).await;
    expired.expect(201);
    let secret = expired.json()["key"].as_str().unwrap().to_owned();
    app.call(Method::GET, "/api/v1/sessions", Some(&secret), None).await.expect_error(401, "unauthorized");
    // Another org's key cannot be revoked, and is not listed.
    let b = app.key("org-b", "manage").await;
    let theirs = app.call(Method::GET, "/api/v1/api-keys", Some(&b), None).await.json();
    let first_id = theirs["data"][0]["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/api/v1/api-keys/{first_id}")).await.expect_error(404, "not_found");
    assert_eq!(theirs["data"].as_array().unwrap().len(), 1);
    let reader = app.key("org-a", "read").await;
    app.call(Method::POST, "/api/v1/api-keys", Some(&reader), Some(json!({"name": "x", "capabilities": ["read"]}))).await.expect_error(403, "forbidden");
});
