use serde_json::{json, Value};

use crate::dual;
use crate::support::{jid, TestApp};
use wagate::store::ChatSettings;

const DAY: i64 = 86_400_000;

fn jids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["jid"].as_str().unwrap().to_owned())
        .collect()
}

/// Walks every page of chats; returns the JIDs in order.
async fn all_chats(app: &TestApp, sid: &str, limit: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/api/v1/sessions/{sid}/chats?limit={limit}&cursor={c}"),
            None => format!("/api/v1/sessions/{sid}/chats?limit={limit}"),
        };
        let page = app.get(&uri).await;
        page.expect(200);
        let v = page.json();
        out.extend(jids(&v));
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert!(
                    v["nextCursor"].is_null(),
                    "chats end with a null nextCursor: {v}"
                );
                return out;
            }
        }
    }
}

dual!(async fn display_order_pinned_then_latest_then_id(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    app.msg(&sid, "100@s.whatsapp.net", "a", false, 1_000).await;
    app.msg(&sid, "200@s.whatsapp.net", "b", false, 3_000).await;
    app.msg(&sid, "300-1@g.us", "c", false, 2_000).await;
    app.msg(&sid, "400@s.whatsapp.net", "d", false, 500).await;
    // Same activity time: the higher id (created later) comes first.
    app.msg(&sid, "500@s.whatsapp.net", "e", false, 2_000).await;
    app.store.record_chat(&sid, &ChatSettings { pinned: Some(true), ..ChatSettings::new(jid("400@s.whatsapp.net")) }).await.unwrap();
    let all = all_chats(&app, &sid, 2).await;
    assert_eq!(all, ["400@s.whatsapp.net", "200@s.whatsapp.net", "500@s.whatsapp.net", "300-1@g.us", "100@s.whatsapp.net"]);
    let one = app.get(&format!("/api/v1/sessions/{sid}/chats")).await.json();
    let group = one["data"].as_array().unwrap().iter().find(|c| c["jid"] == "300-1@g.us").unwrap().clone();
    assert_eq!(group["type"], "group");
    assert_eq!(group["lastMessageAt"], 2000);
    assert_eq!(group["sessionId"], sid.as_str());
    assert!(group["id"].is_i64());
    assert!(one["nextCursor"].is_null());
});

dual!(async fn pages_stay_stable_while_new_chats_arrive(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    for i in 0..25 {
        app.msg(&sid, &format!("{}@s.whatsapp.net", 1000 + i), &format!("m{i}"), false, 10_000 + i).await;
    }
    let first = app.get(&format!("/api/v1/sessions/{sid}/chats?limit=10")).await.json();
    let mut seen = jids(&first);
    let mut cursor = first["nextCursor"].as_str().unwrap().to_owned();
    let mut n = 0;
    loop {
        // New chats with newer activity arrive between page requests.
        app.msg(&sid, &format!("{}@s.whatsapp.net", 9000 + n), &format!("new{n}"), false, 99_000 + n).await;
        n += 1;
        let page = app.get(&format!("/api/v1/sessions/{sid}/chats?limit=10&cursor={cursor}")).await.json();
        seen.extend(jids(&page));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let originals: Vec<String> = (0..25).rev().map(|i| format!("{}@s.whatsapp.net", 1000 + i)).collect();
    assert_eq!(seen, originals, "every original chat exactly once, in order, none of the newcomers");
});

dual!(async fn limit_is_clamped_and_validated(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let batch: Vec<_> = (0..205).map(|i| crate::support::text(&format!("{}@s.whatsapp.net", 5000 + i), "x", false, 1 + i)).collect();
    app.store.record_messages(&sid, &batch, Default::default()).await.unwrap();
    let count = |v: Value| v["data"].as_array().unwrap().len();
    assert_eq!(count(app.get(&format!("/api/v1/sessions/{sid}/chats")).await.json()), 50);
    assert_eq!(count(app.get(&format!("/api/v1/sessions/{sid}/chats?limit=0")).await.json()), 50);
    assert_eq!(count(app.get(&format!("/api/v1/sessions/{sid}/chats?limit=1000")).await.json()), 200);
    assert_eq!(count(app.get(&format!("/api/v1/sessions/{sid}/chats?limit=-7")).await.json()), 1);
    assert_eq!(count(app.get(&format!("/api/v1/sessions/{sid}/chats?limit=3")).await.json()), 3);
    let e = app.get(&format!("/api/v1/sessions/{sid}/chats?limit=ten")).await.expect_error(400, "validation_error");
    assert!(e["error"]["details"]["limit"].is_string());
    app.get(&format!("/api/v1/sessions/{sid}/chats?cursor=garbage!")).await.expect_error(400, "validation_error");
    // A cursor from another list is not a chats cursor.
    let c = wagate::domain::Cursor::new('m', vec![1, 2]).encode();
    app.get(&format!("/api/v1/sessions/{sid}/chats?cursor={c}")).await.expect_error(400, "validation_error");
    // An empty cursor means the first page.
    assert_eq!(count(app.get(&format!("/api/v1/sessions/{sid}/chats?cursor=&limit=2")).await.json()), 2);
});

dual!(async fn get_chat_by_jid_encoded_jid_and_404s(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    app.msg(&sid, "6281234567890@s.whatsapp.net", "a", false, 1_719_662_400_000).await;
    app.store.record_chat(&sid, &ChatSettings { name: Some("Alice".into()), ..ChatSettings::new(jid("6281234567890@s.whatsapp.net")) }).await.unwrap();
    let r = app.get(&format!("/api/v1/sessions/{sid}/chats/6281234567890@s.whatsapp.net")).await;
    r.expect(200);
    let c = r.json();
    assert_eq!(c["jid"], "6281234567890@s.whatsapp.net");
    assert_eq!(c["name"], "Alice");
    assert_eq!(c["type"], "dm");
    assert_eq!(c["archived"], false);
    assert_eq!(c["pinned"], false);
    assert_eq!(c["unreadCount"], 1);
    assert!(c["mutedUntil"].is_null());
    assert_eq!(c["lastMessageAt"], 1_719_662_400_000_i64);
    let enc = app.get(&format!("/api/v1/sessions/{sid}/chats/6281234567890%40s.whatsapp.net")).await;
    enc.expect(200);
    assert_eq!(enc.json()["id"], c["id"]);
    app.get(&format!("/api/v1/sessions/{sid}/chats/999@s.whatsapp.net")).await.expect_error(404, "not_found");
    app.get(&format!("/api/v1/sessions/{sid}/chats/not-a-jid")).await.expect_error(400, "validation_error");
    app.get(&format!("/api/v1/sessions/{sid}/chats/12ab@s.whatsapp.net")).await.expect_error(400, "validation_error");
    app.get("/api/v1/sessions/01HZZZZZZZZZZZZZZZZZZZZZZZ/chats/6281234567890@s.whatsapp.net").await.expect_error(404, "not_found");
});

dual!(async fn patch_is_partial_and_unmute_wins(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    app.msg(&sid, "100@s.whatsapp.net", "a", false, 1_000).await;
    let uri = format!("/api/v1/sessions/{sid}/chats/100@s.whatsapp.net");
    let future = wagate::domain::now_ms() + DAY;
    let c = app.patch(&uri, json!({"pinned": true, "mutedUntil": future})).await;
    c.expect(200);
    let c = c.json();
    assert_eq!(c["pinned"], true);
    assert_eq!(c["archived"], false);
    assert_eq!(c["mutedUntil"], future);
    // Only archived changes; pin and mute stay.
    let c = app.patch(&uri, json!({"archived": true})).await.json();
    assert_eq!((c["archived"].clone(), c["pinned"].clone(), c["mutedUntil"].clone()), (json!(true), json!(true), json!(future)));
    // unmute beats mutedUntil in the same body.
    let c = app.patch(&uri, json!({"mutedUntil": future + DAY, "unmute": true})).await.json();
    assert!(c["mutedUntil"].is_null(), "{c}");
    // A mute time in the past reads as not muted.
    let c = app.patch(&uri, json!({"mutedUntil": 1_000})).await.json();
    assert!(c["mutedUntil"].is_null(), "{c}");
    // An empty body changes nothing.
    let before = app.get(&uri).await.json();
    let after = app.patch(&uri, json!({})).await.json();
    assert_eq!(before, after);
    // unmute: false leaves the mute alone.
    app.patch(&uri, json!({"mutedUntil": future})).await.expect(200);
    assert_eq!(app.patch(&uri, json!({"unmute": false})).await.json()["mutedUntil"], future);
});

dual!(async fn patch_rejects_malformed_bodies_with_422(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    app.msg(&sid, "100@s.whatsapp.net", "a", false, 1_000).await;
    let uri = format!("/api/v1/sessions/{sid}/chats/100@s.whatsapp.net");
    let e = app.patch(&uri, json!({"archived": "yes"})).await.expect_error(422, "validation_error");
    assert!(e["error"]["details"]["archived"].is_string(), "{e}");
    app.patch(&uri, json!({"muted_until": 5})).await.expect_error(422, "validation_error");
    app.patch(&uri, json!({"mutedUntil": -5})).await.expect_error(422, "validation_error");
    app.patch(&uri, json!([1, 2])).await.expect_error(422, "validation_error");
    let req = axum::http::Request::builder()
        .method("PATCH")
        .uri(&uri)
        .header("authorization", format!("Bearer {}", app.admin_key))
        .body(axum::body::Body::from("{not json"))
        .unwrap();
    app.raw(req).await.expect_error(422, "validation_error");
    // Nothing stored was changed by the rejected calls.
    let c = app.get(&uri).await.json();
    assert_eq!((c["archived"].clone(), c["pinned"].clone()), (json!(false), json!(false)));
    app.patch(&format!("/api/v1/sessions/{sid}/chats/555@s.whatsapp.net"), json!({"pinned": true})).await.expect_error(404, "not_found");
});

dual!(async fn delete_is_local_204_and_chat_can_come_back(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    app.msg(&sid, "100@s.whatsapp.net", "a", false, 1_000).await;
    app.msg(&sid, "100@s.whatsapp.net", "b", false, 2_000).await;
    app.msg(&sid, "200@s.whatsapp.net", "c", false, 3_000).await;
    let uri = format!("/api/v1/sessions/{sid}/chats/100@s.whatsapp.net");
    let r = app.delete(&uri).await;
    r.expect(204);
    assert!(r.body.is_empty(), "204 has no body");
    app.get(&uri).await.expect_error(404, "not_found");
    app.get(&format!("{uri}/messages")).await.expect_error(404, "not_found");
    app.delete(&uri).await.expect_error(404, "not_found");
    // The other chat is untouched.
    app.get(&format!("/api/v1/sessions/{sid}/chats/200@s.whatsapp.net")).await.expect(200);
    // New activity brings the chat back, with only the new message.
    app.msg(&sid, "100@s.whatsapp.net", "d", false, 4_000).await;
    let msgs = app.get(&format!("{uri}/messages")).await.json();
    assert_eq!(msgs["data"].as_array().unwrap().len(), 1);
    assert_eq!(msgs["data"][0]["waMessageId"], "d");
});

dual!(async fn mark_read_clears_gateway_counter_idempotently(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    for (i, from_me) in [false, false, true, false].into_iter().enumerate() {
        app.msg(&sid, "100@s.whatsapp.net", &format!("m{i}"), from_me, 1_000 + i as i64).await;
    }
    // The same message again does not count twice.
    app.msg(&sid, "100@s.whatsapp.net", "m0", false, 1_000).await;
    let uri = format!("/api/v1/sessions/{sid}/chats/100@s.whatsapp.net");
    assert_eq!(app.get(&uri).await.json()["unreadCount"], 3);
    let first = app.post(&format!("{uri}/read"), json!(null)).await;
    first.expect(200);
    let first = first.json();
    assert_eq!(first["unreadCount"], 0);
    let again = app.post(&format!("{uri}/read"), json!(null)).await;
    again.expect(200);
    assert_eq!(again.json(), first, "a second mark-read returns the same chat");
    app.post(&format!("/api/v1/sessions/{sid}/chats/9@s.whatsapp.net/read"), json!(null)).await.expect_error(404, "not_found");
    let reader = app.key("org-a", "read").await;
    app.call(axum::http::Method::POST, &format!("{uri}/read"), Some(&reader), None).await.expect_error(403, "forbidden");
});

dual!(async fn presence_needs_a_client_and_a_valid_state(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let uri = format!("/api/v1/sessions/{sid}/chats/6281234567890@s.whatsapp.net/presence");
    app.put(&uri, json!({"state": "composing"})).await.expect_error(501, "not_implemented");
    let e = app.put(&uri, json!({})).await.expect_error(422, "validation_error");
    assert!(e["error"]["details"]["state"].is_string(), "{e}");
    app.put(&uri, json!({"state": "typing"})).await.expect_error(422, "validation_error");
    let client = app.engine.connect(&sid);
    for state in ["composing", "recording", "paused"] {
        let r = app.put(&uri, json!({"state": state})).await;
        r.expect(204);
        assert!(r.body.is_empty());
    }
    let sent: Vec<String> = client.presences.lock().unwrap().iter().map(|(j, s)| format!("{j} {s:?}")).collect();
    assert_eq!(sent, [
        "6281234567890@s.whatsapp.net Composing",
        "6281234567890@s.whatsapp.net Recording",
        "6281234567890@s.whatsapp.net Paused",
    ]);
    // Presence needs no stored chat, but a valid JID.
    app.put(&format!("/api/v1/sessions/{sid}/chats/abc/presence"), json!({"state": "paused"})).await.expect_error(400, "validation_error");
    let reader = app.key("org-a", "read").await;
    app.call(axum::http::Method::PUT, &uri, Some(&reader), Some(json!({"state": "paused"}))).await.expect_error(403, "forbidden");
});

dual!(async fn another_orgs_session_is_404_everywhere(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    app.msg(&sid, "100@s.whatsapp.net", "a", false, 1_000).await;
    app.engine.connect(&sid);
    let other = app.key("org-b", "read,send,manage,events").await;
    use axum::http::Method;
    let chat = format!("/api/v1/sessions/{sid}/chats/100@s.whatsapp.net");
    for (m, uri, body) in [
        (Method::GET, format!("/api/v1/sessions/{sid}"), None),
        (Method::GET, format!("/api/v1/sessions/{sid}/chats"), None),
        (Method::GET, chat.clone(), None),
        (Method::PATCH, chat.clone(), Some(json!({"pinned": true}))),
        (Method::DELETE, chat.clone(), None),
        (Method::POST, format!("{chat}/read"), None),
        (Method::PUT, format!("{chat}/presence"), Some(json!({"state": "paused"}))),
        (Method::GET, format!("{chat}/messages"), None),
        (Method::GET, format!("/api/v1/sessions/{sid}/contacts"), None),
        (Method::GET, format!("/api/v1/sessions/{sid}/contacts/check?phone=6281234567890"), None),
        (Method::POST, format!("/api/v1/sessions/{sid}:stop"), None),
        (Method::DELETE, format!("/api/v1/sessions/{sid}"), None),
    ] {
        let r = app.call(m.clone(), &uri, Some(&other), body).await;
        let v = r.expect_error(404, "not_found");
        assert_eq!(v["error"]["message"], "session not found", "{m} {uri}");
    }
    // Nothing was changed by the other org.
    assert_eq!(app.get(&chat).await.json()["pinned"], false);
});

dual!(async fn chat_settings_changed_through_the_api_reach_the_phone(backend) {
    use wagate::engine::ChatSettingChange as C;
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let dm = jid("6281234567890@s.whatsapp.net");
    app.store.record_chat(&sid, &ChatSettings { chat_alt: Some(jid("777@lid")), ..ChatSettings::new(dm.clone()) }).await.unwrap();
    // Offline: stored at once, queued for the phone (under the chat's own JID, even when
    // addressed by the person's LID).
    let r = app.patch(&format!("/api/v1/sessions/{sid}/chats/777@lid"), json!({"archived": true, "mutedUntil": 4102444800000_i64})).await;
    r.expect(200);
    assert_eq!(r.json()["archived"], true);
    let pending = app.store.pending_chat_settings(&sid, 10).await.unwrap();
    assert_eq!(pending.iter().map(|p| (p.chat_jid.as_str(), p.setting.as_str(), p.value)).collect::<Vec<_>>(),
        [("6281234567890@s.whatsapp.net", "archived", 1), ("6281234567890@s.whatsapp.net", "muted_until", 4102444800000)]);
    // A second change of the same setting replaces the first: the phone gets the final state.
    app.patch(&format!("/api/v1/sessions/{sid}/chats/{dm}"), json!({"archived": false})).await.expect(200);
    // The session connects: the queue is sent, then empty.
    let client = app.engine.connect(&sid);
    crate::support::eventually(10, "the sender pushes the queue on connect", || async {
        app.store.pending_chat_settings(&sid, 10).await.unwrap().is_empty()
    }).await;
    let got = client.settings.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert!(got.contains(&(dm.to_string(), C::Archived(false))));
    assert!(got.contains(&(dm.to_string(), C::MutedUntil(Some(4102444800000)))));
    assert!(app.store.pending_chat_settings(&sid, 10).await.unwrap().is_empty());
    // Connected: a PATCH is sent right away.
    app.patch(&format!("/api/v1/sessions/{sid}/chats/{dm}"), json!({"pinned": true, "unmute": true})).await.expect(200);
    crate::support::eventually(10, "pin and unmute sent", || async {
        let got = client.settings.lock().unwrap().clone();
        got.contains(&(dm.to_string(), C::Pinned(true))) && got.contains(&(dm.to_string(), C::MutedUntil(None)))
    }).await;
    crate::support::eventually(10, "queue settled", || async { app.store.pending_chat_settings(&sid, 10).await.unwrap().is_empty() }).await;
    // WhatsApp refuses: the change stays queued with its attempts counted.
    *client.refuse_settings.lock().unwrap() = true;
    app.patch(&format!("/api/v1/sessions/{sid}/chats/{dm}"), json!({"pinned": false})).await.expect(200);
    crate::support::eventually(10, "refusal counted", || async {
        app.store.pending_chat_settings(&sid, 10).await.unwrap().first().is_some_and(|p| p.attempts >= 1)
    }).await;
    // A newer change made on the phone wins over the queued one; an older one does not.
    let far = wagate::domain::now_ms() + 60_000;
    app.store.record_chat(&sid, &ChatSettings { pinned: Some(true), changed_at: Some(1), ..ChatSettings::new(dm.clone()) }).await.unwrap();
    assert_eq!(app.store.pending_chat_settings(&sid, 10).await.unwrap().len(), 1);
    app.store.record_chat(&sid, &ChatSettings { pinned: Some(true), changed_at: Some(far), ..ChatSettings::new(dm.clone()) }).await.unwrap();
    assert!(app.store.pending_chat_settings(&sid, 10).await.unwrap().is_empty());
    // Deleting the session leaves nothing queued.
    app.patch(&format!("/api/v1/sessions/{sid}/chats/{dm}"), json!({"archived": true})).await.expect(200);
    app.delete(&format!("/api/v1/sessions/{sid}")).await.expect(204);
    assert!(app.store.pending_chat_settings(&sid, 10).await.unwrap().is_empty());
});

dual!(async fn a_direct_chat_without_a_name_is_called_what_its_person_is(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let alice = "6281234567890@s.whatsapp.net";
    let mut m = crate::support::text(alice, "N1", false, 1_000);
    m.sender = Some(jid(alice));
    m.sender_name = Some("Alice".into());
    app.store.record_message(&sid, m, wagate::store::RecordOptions::default()).await.unwrap();
    let chat = app.get(&format!("/api/v1/sessions/{sid}/chats/{alice}")).await.json();
    assert_eq!(chat["name"], "Alice", "{chat}");
    assert_eq!(app.get(&format!("/api/v1/sessions/{sid}/chats")).await.json()["data"][0]["name"], "Alice");
    let after = app.get("/api/v1/events?limit=200").await.json()["next"].as_i64().unwrap();
    // The push name changes: the chat follows, and says so.
    app.store.record_push_name(&sid, &jid(alice), "Alicia").await.unwrap();
    let chat = app.get(&format!("/api/v1/sessions/{sid}/chats/{alice}")).await.json();
    assert_eq!(chat["name"], "Alicia");
    let ev = app.get(&format!("/api/v1/events?after={after}&event=chat.update")).await.json();
    let names: Vec<&str> = ev["data"].as_array().unwrap().iter().filter_map(|e| e["payload"]["name"].as_str()).collect();
    assert_eq!(names, ["Alicia"], "{ev}");
    // The address-book name wins over the push name.
    app.store.record_saved_name(&sid, &jid(alice), Some("Alice (work)")).await.unwrap();
    let chat = app.get(&format!("/api/v1/sessions/{sid}/chats/{alice}")).await.json();
    assert_eq!(chat["name"], "Alice (work)");
    // A name of the chat's own is kept as it is.
    app.store.record_chat(&sid, &ChatSettings { name: Some("Project A".into()), ..ChatSettings::new(jid(alice)) }).await.unwrap();
    app.store.record_push_name(&sid, &jid(alice), "Al").await.unwrap();
    let chat = app.get(&format!("/api/v1/sessions/{sid}/chats/{alice}")).await.json();
    assert_eq!(chat["name"], "Project A");
    // A group has no person to be named after.
    app.msg(&sid, "120363-1@g.us", "G1", false, 2_000).await;
    let g = app.get(&format!("/api/v1/sessions/{sid}/chats/120363-1@g.us")).await.json();
    assert!(g["name"].is_null(), "{g}");
});
