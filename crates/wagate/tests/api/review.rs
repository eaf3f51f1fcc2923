//! Smaller defects found in the store review, each pinned by a test that fails without its fix.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;

use crate::dual;
use crate::support::{jid, TestApp};

dual!(async fn search_matches_the_name_shown_and_a_deleted_dm_is_no_longer_a_dm(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let p = "6281300000001@s.whatsapp.net";
    app.msg(&sid, p, "a", false, 1).await;
    app.store.record_push_name(&sid, &jid(p), "Nickname").await.unwrap();
    app.store.record_saved_name(&sid, &jid(p), Some("Aunt May")).await.unwrap();
    let base = format!("/api/v1/sessions/{sid}/contacts");
    assert_eq!(app.get(&format!("{base}?q=nickname")).await.json()["data"], json!([]), "a push name hidden behind the saved name is not searched");
    assert_eq!(app.get(&format!("{base}?q=aunt")).await.json()["data"][0]["name"], "Aunt May");
    // The person is also in a group, then the DM is deleted.
    app.store
        .record_participants(&sid, &jid("120363000000000099@g.us"), wagate::store::ParticipantChange::Add, &[wagate::store::GroupMember { jid: jid(p), alt: None, role: "member".into() }])
        .await
        .unwrap();
    assert_eq!(app.get(&format!("{base}?source=dm")).await.json()["data"].as_array().unwrap().len(), 1);
    app.delete(&format!("/api/v1/sessions/{sid}/chats/{p}")).await.expect(204);
    assert_eq!(app.get(&format!("{base}?source=dm")).await.json()["data"], json!([]));
    let all = app.get(&base).await.json();
    assert_eq!(all["data"][0]["source"], "group");
    // New activity brings the DM back.
    app.msg(&sid, p, "b", false, 2).await;
    assert_eq!(app.get(&format!("{base}?source=dm")).await.json()["data"].as_array().unwrap().len(), 1);
});

dual!(async fn huge_limits_are_clamped_not_rejected(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    for l in ["99999999999999999999999", "-99999999999999999999999", "9223372036854775808"] {
        app.get(&format!("/api/v1/sessions/{sid}/chats?limit={l}")).await.expect(200);
        app.get(&format!("/api/v1/sessions/{sid}/contacts?limit={l}")).await.expect(200);
    }
    app.get(&format!("/api/v1/sessions/{sid}/chats?limit=1.5")).await.expect_error(400, "validation_error");
});

dual!(async fn a_key_never_outlives_the_key_that_created_it(backend) {
    let app = TestApp::new(backend).await;
    let soon = wagate::domain::now_ms() + 3_600_000;
    let r = app.post("/api/v1/api-keys", json!({"name": "short", "capabilities": ["manage", "read"], "expiresAt": soon})).await;
    r.expect(201);
    let short = r.json()["key"].as_str().unwrap().to_owned();
    let create = |body: serde_json::Value| {
        let short = short.clone();
        let app = &app;
        async move { app.call(Method::POST, "/api/v1/api-keys", Some(&short), Some(body)).await }
    };
    let child = create(json!({"name": "forever", "capabilities": ["read"]})).await;
    child.expect(201);
    assert_eq!(child.json()["expiresAt"], soon, "no expiry asked: the creator's");
    let later = create(json!({"name": "later", "capabilities": ["read"], "expiresAt": soon + 86_400_000})).await;
    assert_eq!(later.json()["expiresAt"], soon, "a later expiry is cut to the creator's");
    let earlier = create(json!({"name": "earlier", "capabilities": ["read"], "expiresAt": soon - 1_000})).await;
    assert_eq!(earlier.json()["expiresAt"], soon - 1_000);
});

dual!(async fn concurrent_starts_claim_the_session_once(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let uri = format!("/api/v1/sessions/{sid}:start");
    let (a, b, c) = tokio::join!(app.post(&uri, json!(null)), app.post(&uri, json!(null)), app.post(&uri, json!(null)));
    let mut codes = vec![a.status.as_u16(), b.status.as_u16(), c.status.as_u16()];
    codes.sort();
    assert_eq!(codes, [200, 409, 409]);
});

dual!(async fn metrics_do_not_take_arbitrary_methods_as_labels(backend) {
    let app = TestApp::new(backend).await;
    for m in ["FROBNICATE", "X-CUSTOM-1", "X-CUSTOM-2"] {
        let req = Request::builder().method(Method::from_bytes(m.as_bytes()).unwrap()).uri("/api/v1/sessions").body(Body::empty()).unwrap();
        app.raw(req).await;
    }
    let text = String::from_utf8(app.call(Method::GET, "/metrics", None, None).await.body).unwrap();
    assert!(!text.contains("FROBNICATE") && !text.contains("X-CUSTOM"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
});
