use std::time::Duration;

use axum::http::Method;
use serde_json::json;

use crate::dual;
use crate::support::jwks::{claims, forge, mint, now, JwksServer, KeyKind};
use crate::support::{Backend, TestApp};

async fn jwt_app(backend: Backend, refresh: Duration) -> (TestApp, JwksServer) {
    let jwks = JwksServer::start(&[KeyKind::Ed, KeyKind::Ec, KeyKind::Rsa]).await;
    let app = TestApp::builder()
        .jwt(jwks.config(refresh))
        .build(backend)
        .await;
    (app, jwks)
}

dual!(async fn login_tokens_of_each_algorithm_are_accepted(backend) {
    let (app, _jwks) = jwt_app(backend, Duration::from_secs(30)).await;
    for k in [KeyKind::Ed, KeyKind::Ec, KeyKind::Rsa] {
        let t = mint(k, &claims("org-a", "owner"), None);
        let r = app.call(Method::POST, "/api/v1/sessions", Some(&t), Some(json!({"label": format!("{k:?}")}))).await;
        r.expect(201);
        assert_eq!(r.json()["organizationId"], "org-a", "{k:?}");
    }
    // The org comes from the token: org-b's owner sees none of org-a's sessions.
    let b = mint(KeyKind::Ed, &claims("org-b", "owner"), None);
    let list = app.call(Method::GET, "/api/v1/sessions", Some(&b), None).await.json();
    assert_eq!(list["data"], json!([]));
    // X-Api-Key carries API keys only; a JWT there is still verified as a token.
    let req = axum::http::Request::builder().uri("/api/v1/sessions").header("x-api-key", &app.admin_key).body(axum::body::Body::empty()).unwrap();
    app.raw(req).await.expect(200);
});

dual!(async fn bad_login_tokens_are_401(backend) {
    let (app, _jwks) = jwt_app(backend, Duration::from_secs(30)).await;
    let call = |t: String| {
        let app = &app;
        async move { app.call(Method::GET, "/api/v1/sessions", Some(&t), None).await }
    };
    let mut c = claims("org-a", "owner");
    c["iss"] = json!("https://evil.test");
    call(mint(KeyKind::Ed, &c, None)).await.expect_error(401, "unauthorized");
    let mut c = claims("org-a", "owner");
    c["aud"] = json!("someone-else");
    call(mint(KeyKind::Ec, &c, None)).await.expect_error(401, "unauthorized");
    let mut c = claims("org-a", "owner");
    c["exp"] = json!(now() - 3600);
    let e = call(mint(KeyKind::Rsa, &c, None)).await.expect_error(401, "unauthorized");
    assert!(e["error"]["message"].as_str().unwrap().contains("expired"));
    let mut c = claims("org-a", "owner");
    c["nbf"] = json!(now() + 3600);
    call(mint(KeyKind::Ed, &c, None)).await.expect_error(401, "unauthorized");
    let mut c = claims("org-a", "owner");
    c.as_object_mut().unwrap().remove("exp");
    call(mint(KeyKind::Ed, &c, None)).await.expect_error(401, "unauthorized");
    // A valid signature under another key id is not accepted for this one.
    call(mint(KeyKind::Ed, &claims("org-a", "owner"), Some("rsa-1"))).await.expect_error(401, "unauthorized");
    // Tampered payload.
    let t = mint(KeyKind::Ed, &claims("org-a", "member"), None);
    let parts: Vec<&str> = t.split('.').collect();
    let forged_payload = forge(json!({"alg": "EdDSA"}), &claims("org-a", "owner"), b"x");
    let fp: Vec<&str> = forged_payload.split('.').collect();
    call(format!("{}.{}.{}", parts[0], fp[1], parts[2])).await.expect_error(401, "unauthorized");
    // alg: none.
    call(forge(json!({"alg": "none", "typ": "JWT"}), &claims("org-a", "owner"), b"")).await.expect_error(401, "unauthorized");
    // HS256 "signed" with the public key material as the secret.
    let public = serde_json::to_vec(&crate::support::jwks::public_jwk(KeyKind::Rsa)).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = Some("rsa-1".into());
    let hs = jsonwebtoken::encode(&h, &claims("org-a", "owner"), &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap();
    call(hs).await.expect_error(401, "unauthorized");
    call("not.a.jwt".into()).await.expect_error(401, "unauthorized");
    call("garbage".into()).await.expect_error(401, "unauthorized");
    app.call(Method::GET, "/api/v1/sessions", None, None).await.expect_error(401, "unauthorized");
    let req = axum::http::Request::builder().uri("/api/v1/sessions").header("authorization", "Basic abc").body(axum::body::Body::empty()).unwrap();
    app.raw(req).await.expect_error(401, "unauthorized");
});

dual!(async fn roles_map_to_capabilities(backend) {
    let (app, _jwks) = jwt_app(backend, Duration::from_secs(30)).await;
    let sid = app.session().await;
    app.msg(&sid, "100@s.whatsapp.net", "a", false, 1).await;
    let member = mint(KeyKind::Ed, &claims("org-a", "member"), None);
    let chats = format!("/api/v1/sessions/{sid}/chats");
    app.call(Method::GET, &chats, Some(&member), None).await.expect(200);
    app.call(Method::POST, &format!("{chats}/100@s.whatsapp.net/read"), Some(&member), None).await.expect(200);
    app.call(Method::GET, "/api/v1/sessions", Some(&member), None).await.expect_error(403, "forbidden");
    app.call(Method::GET, "/api/v1/api-keys", Some(&member), None).await.expect_error(403, "forbidden");
    let admin = mint(KeyKind::Ec, &claims("org-a", "admin"), None);
    app.call(Method::GET, "/api/v1/sessions", Some(&admin), None).await.expect(200);
    let guest = mint(KeyKind::Ed, &claims("org-a", "guest"), None);
    app.call(Method::GET, &chats, Some(&guest), None).await.expect_error(403, "forbidden");
    let mut no_org = claims("org-a", "owner");
    no_org.as_object_mut().unwrap().remove("activeOrganizationId");
    app.call(Method::GET, &chats, Some(&mint(KeyKind::Ed, &no_org, None)), None).await.expect_error(403, "forbidden");
});

dual!(async fn unknown_kids_refresh_the_jwks_at_most_once_per_interval(backend) {
    let (app, jwks) = jwt_app(backend, Duration::from_secs(3600)).await;
    let good = mint(KeyKind::Ed, &claims("org-a", "owner"), None);
    app.call(Method::GET, "/api/v1/sessions", Some(&good), None).await.expect(200);
    assert_eq!(jwks.fetch_count(), 1, "first use fetches the set");
    for i in 0..20 {
        let forged = mint(KeyKind::Ed, &claims("org-a", "owner"), Some(&format!("unknown-{i}")));
        app.call(Method::GET, "/api/v1/sessions", Some(&forged), None).await.expect_error(401, "unauthorized");
    }
    assert_eq!(jwks.fetch_count(), 1, "forged kids within the interval fetch nothing");
    app.call(Method::GET, "/api/v1/sessions", Some(&good), None).await.expect(200);
    assert_eq!(jwks.fetch_count(), 1, "known keys come from the cache");
});

dual!(async fn a_rotated_key_is_picked_up_by_one_refresh(backend) {
    let jwks = JwksServer::start(&[KeyKind::Ed]).await;
    let app = TestApp::builder().jwt(jwks.config(Duration::from_secs(0))).build(backend).await;
    let ed = mint(KeyKind::Ed, &claims("org-a", "owner"), None);
    app.call(Method::GET, "/api/v1/sessions", Some(&ed), None).await.expect(200);
    assert_eq!(jwks.fetch_count(), 1);
    let ec = mint(KeyKind::Ec, &claims("org-a", "owner"), None);
    app.call(Method::GET, "/api/v1/sessions", Some(&ec), None).await.expect_error(401, "unauthorized");
    assert_eq!(jwks.fetch_count(), 2, "an unknown kid refreshes once");
    jwks.keys.lock().unwrap().push(crate::support::jwks::public_jwk(KeyKind::Ec));
    app.call(Method::GET, "/api/v1/sessions", Some(&ec), None).await.expect(200);
    assert_eq!(jwks.fetch_count(), 3, "the rotated key arrives with exactly one more fetch");
    app.call(Method::GET, "/api/v1/sessions", Some(&ec), None).await.expect(200);
    assert_eq!(jwks.fetch_count(), 3, "and is cached from then on");
    // A set with one key verifies tokens that name no kid.
    let no_kid = mint(KeyKind::Ed, &claims("org-a", "owner"), Some(""));
    jwks.keys.lock().unwrap().retain(|k| k["kid"] == "ed-1");
    let fresh = TestApp::builder().jwt(jwks.config(Duration::from_secs(0))).build(backend).await;
    fresh.call(Method::GET, "/api/v1/sessions", Some(&no_kid), None).await.expect(200);
});

dual!(async fn api_keys_expire_revoke_and_carry_capabilities(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let chats = format!("/api/v1/sessions/{sid}/chats");
    let reader = app.key("org-a", "read").await;
    app.call(Method::GET, &chats, Some(&reader), None).await.expect(200);
    app.call(Method::GET, "/api/v1/sessions", Some(&reader), None).await.expect_error(403, "forbidden");
    let e = app.call(Method::PATCH, &format!("{chats}/1@s.whatsapp.net"), Some(&reader), Some(json!({}))).await.expect_error(403, "forbidden");
    assert!(e["error"]["message"].as_str().unwrap().contains("send"));
    // A key that looks right but is not stored.
    let fake = format!("{}x", &reader[..reader.len() - 1]);
    app.call(Method::GET, &chats, Some(&fake), None).await.expect_error(401, "unauthorized");
    // Expired.
    let (rec, expired) = app.state.auth().keys.create("org-a", "old", wagate::domain::CapSet::all(), Some(wagate::domain::now_ms() - 1), None).await.unwrap();
    let e = app.call(Method::GET, &chats, Some(&expired), None).await.expect_error(401, "unauthorized");
    assert!(e["error"]["message"].as_str().unwrap().contains("expired"));
    // Revoked.
    app.store.revoke_api_key(None, &rec.id).await.unwrap();
    let r = app.delete(&format!("/api/v1/api-keys/{}", app.store.find_api_key_by_hash(&wagate::auth::api_key::hash_key(&reader)).await.unwrap().unwrap().id)).await;
    r.expect(204);
    let e = app.call(Method::GET, &chats, Some(&reader), None).await.expect_error(401, "unauthorized");
    assert!(e["error"]["message"].as_str().unwrap().contains("revoked"));
    // Last use is recorded.
    let rec = app.store.find_api_key_by_hash(&wagate::auth::api_key::hash_key(&app.admin_key)).await.unwrap().unwrap();
    crate::support::eventually(10, "last_used_at recorded", || async {
        app.store.find_api_key_by_hash(&rec.key_hash).await.unwrap().unwrap().last_used_at.is_some()
    }).await;
});
