use serde_json::json;

use crate::dual;
use crate::support::{jid, TestApp};
use wagate::domain::SessionId;
use wagate::store::SessionStatus;

dual!(async fn create_list_get_patch_delete(backend) {
    let app = TestApp::new(backend).await;
    let r = app.post("/api/v1/sessions", json!({"label": "Support", "autoRead": true, "ratePerMin": 5})).await;
    r.expect(201);
    let s = r.json();
    let sid = s["id"].as_str().unwrap().to_owned();
    assert!(sid.parse::<SessionId>().is_ok(), "ULID id");
    assert_eq!(s["organizationId"], "org-a");
    assert_eq!(s["status"], "stopped");
    assert_eq!(s["label"], "Support");
    assert_eq!(s["autoRead"], true);
    assert_eq!(s["presenceTyping"], false);
    assert_eq!(s["ratePerMin"], 5);
    assert_eq!(s["ratePerHour"], 600);
    assert!(s["createdAt"].is_i64() && s["updatedAt"].is_i64());
    let other = app.post("/api/v1/sessions", json!({})).await.json();
    let list = app.get("/api/v1/sessions").await.json();
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [sid.as_str(), other["id"].as_str().unwrap()]);
    assert_eq!(app.get(&format!("/api/v1/sessions/{sid}")).await.json(), s);
    let p = app.patch(&format!("/api/v1/sessions/{sid}"), json!({"label": null, "presenceTyping": true})).await.json();
    assert!(p.get("label").is_none() || p["label"].is_null());
    assert_eq!(p["presenceTyping"], true);
    assert_eq!(p["autoRead"], true);
    app.post("/api/v1/sessions", json!({"ratePerMin": 0})).await.expect_error(422, "validation_error");
    app.post("/api/v1/sessions", json!({"colour": "red"})).await.expect_error(422, "validation_error");
    // Another org sees none of it.
    let b = app.key("org-b", "manage").await;
    let theirs = app.call(axum::http::Method::GET, "/api/v1/sessions", Some(&b), None).await.json();
    assert_eq!(theirs["data"], json!([]));

    // Delete removes the stored copy too.
    app.msg(&sid, "100@s.whatsapp.net", "a", false, 1).await;
    app.store.link_lid_pn(&sid, &jid("9@lid"), &jid("100@s.whatsapp.net")).await.unwrap();
    let r = app.delete(&format!("/api/v1/sessions/{sid}")).await;
    r.expect(204);
    assert!(r.body.is_empty());
    app.get(&format!("/api/v1/sessions/{sid}")).await.expect_error(404, "not_found");
    app.get(&format!("/api/v1/sessions/{sid}/chats")).await.expect_error(404, "not_found");
    assert!(app.store.get_chat(&sid, &jid("100@s.whatsapp.net")).await.unwrap().is_none());
    app.delete(&format!("/api/v1/sessions/{sid}")).await.expect_error(404, "not_found");
    app.get("/api/v1/sessions/not-a-ulid").await.expect_error(400, "validation_error");
});

dual!(async fn lifecycle_through_the_engine(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let base = format!("/api/v1/sessions/{sid}");
    app.get(&format!("{base}/me")).await.expect_error(409, "conflict");
    app.get(&format!("{base}/qr")).await.expect_error(409, "conflict");
    let r = app.post(&format!("{base}:start"), json!(null)).await;
    r.expect(200);
    assert_eq!(r.json()["status"], "starting");
    assert_eq!(app.engine.started.lock().unwrap().len(), 1);
    app.post(&format!("{base}:start"), json!(null)).await.expect_error(409, "conflict");
    // The engine reports it is waiting for a scan: the QR code is served, as JSON or SVG.
    app.store.set_session_status(&sid.parse().unwrap(), SessionStatus::ScanQrCode, None).await.unwrap();
    let qr = app.get(&format!("{base}/qr")).await;
    qr.expect(200);
    let qr = qr.json();
    assert!(qr["qr"].as_str().unwrap().starts_with("2@"));
    assert!(qr["expiresAt"].is_i64());
    let svg = app.get(&format!("{base}/qr?format=svg")).await;
    svg.expect(200);
    assert_eq!(svg.headers["content-type"], "image/svg+xml");
    assert!(String::from_utf8_lossy(&svg.body).contains("<svg"));
    let png = app.get(&format!("{base}/qr?format=png")).await;
    png.expect(200);
    assert_eq!(png.headers["content-type"], "image/png");
    let mut reader = png::Decoder::new(std::io::Cursor::new(png.body.clone())).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.color_type), (info.height, png::ColorType::Grayscale));
    assert_eq!(info.width % 8, 0);
    // The top-left finder pattern after the 4-module quiet zone: dark ring, light inner ring.
    let at = |mx: usize, my: usize| pixels[(my * 8 + 4) * info.width as usize + mx * 8 + 4];
    assert_eq!((at(0, 0), at(4, 4), at(5, 5), at(10, 4)), (255, 0, 255, 0));
    app.get(&format!("{base}/qr?format=gif")).await.expect_error(400, "validation_error");
    let code = app.post(&format!("{base}/pairing-code"), json!({"phone": "+62 812-3456-7890"})).await;
    code.expect(200);
    assert_eq!(code.json(), json!({"code": "6281CODE"}));
    app.post(&format!("{base}/pairing-code"), json!({"phone": "12"})).await.expect_error(422, "validation_error");
    app.post(&format!("{base}/pairing-code"), json!({})).await.expect_error(422, "validation_error");
    // Paired and connected.
    app.store.set_session_account(&sid.parse().unwrap(), Some("6281234567890@s.whatsapp.net"), Some("55@lid"), Some("6281234567890"), Some("Shop")).await.unwrap();
    app.store.set_session_status(&sid.parse().unwrap(), SessionStatus::Working, None).await.unwrap();
    app.engine.connect(&sid);
    let me = app.get(&format!("{base}/me")).await.json();
    assert_eq!(me, json!({"jid": "6281234567890@s.whatsapp.net", "lid": "55@lid", "phoneNumber": "6281234567890", "pushName": "Shop", "connected": true}));
    let s = app.get(&base).await.json();
    assert_eq!(s["status"], "working");
    assert!(s["lastConnectedAt"].is_i64());
    assert_eq!(s["phoneNumber"], "6281234567890");
    let r = app.post(&format!("{base}:restart"), json!(null)).await;
    r.expect(200);
    assert_eq!(r.json()["status"], "starting");
    let r = app.post(&format!("{base}:stop"), json!(null)).await;
    assert_eq!(r.json()["status"], "stopped");
    app.post(&format!("{base}:stop"), json!(null)).await.expect(200);
    // Logout needs a connected client.
    app.post(&format!("{base}:logout"), json!(null)).await.expect_error(501, "not_implemented");
    app.engine.connect(&sid);
    assert_eq!(app.post(&format!("{base}:logout"), json!(null)).await.json()["status"], "logged_out");
    app.post(&format!("{base}:explode"), json!(null)).await.expect_error(404, "not_found");
    app.post("/api/v1/sessions/nope:start", json!(null)).await.expect_error(400, "validation_error");
});

#[tokio::test]
async fn the_offline_engine_answers_501_for_live_calls() {
    use wagate::engine::{Engine, EngineError, OfflineEngine};
    let e = OfflineEngine;
    let sid = SessionId::new();
    assert!(e.client(&sid).is_none());
    assert!(matches!(e.qr(&sid).await, Err(EngineError::NotConnected)));
    assert!(matches!(
        e.pairing_code(&sid, &"6281234567890".parse().unwrap())
            .await,
        Err(EngineError::NotConnected)
    ));
    assert!(
        e.stop(&sid).await.is_ok(),
        "stopping what does not run is fine"
    );
}

#[tokio::test]
async fn first_start_writes_a_private_admin_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let store = wagate::store::Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let path = wagate::bootstrap::ensure_admin_key(&store, dir.path())
        .await
        .unwrap()
        .expect("created");
    let key = std::fs::read_to_string(&path).unwrap();
    assert!(key.trim().starts_with("wag_"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        wagate::bootstrap::ensure_admin_key(&store, dir.path())
            .await
            .unwrap()
            .is_none(),
        "only on first start"
    );
    let keys = store.list_api_keys("default").await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].capabilities, "read,send,manage,events");
    assert_ne!(keys[0].key_hash, key.trim(), "only the hash is stored");
}
