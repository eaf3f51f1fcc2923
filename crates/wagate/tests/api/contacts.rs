use serde_json::{json, Value};

use crate::dual;
use crate::support::{jid, text, TestApp};
use wagate::store::{GroupInfo, GroupMember, ParticipantChange, RecordOptions};

fn lids(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["lid"].as_str().unwrap_or("-").to_owned())
        .collect()
}

/// Seeds: Alice (DM, linked LID↔phone, business), Bob (group member only), Carol (both, group 1),
/// Dave (group 2 only).
async fn seed(app: &TestApp, sid: &str) {
    let s = &app.store;
    s.link_lid_pn(sid, &jid("1001@lid"), &jid("6281111111111@s.whatsapp.net"))
        .await
        .unwrap();
    let mut m = text("6281111111111@s.whatsapp.net", "a1", false, 1_000);
    m.sender_name = Some("Alice Ávila".into());
    s.record_message(sid, m, RecordOptions::default())
        .await
        .unwrap();
    s.record_business_name(sid, &jid("1001@lid"), "Acme Corp")
        .await
        .unwrap();
    s.link_lid_pn(sid, &jid("1002@lid"), &jid("6282222222222@s.whatsapp.net"))
        .await
        .unwrap();
    s.record_push_name(sid, &jid("1002@lid"), "Bob")
        .await
        .unwrap();
    s.link_lid_pn(sid, &jid("1003@lid"), &jid("6283333333333@s.whatsapp.net"))
        .await
        .unwrap();
    s.record_push_name(sid, &jid("1003@lid"), "Carol")
        .await
        .unwrap();
    let member = |j: &str, role: &str| GroupMember {
        jid: jid(j),
        alt: None,
        role: role.into(),
    };
    s.record_group(
        sid,
        &GroupInfo {
            jid: jid("111-1@g.us"),
            subject: Some("Group one".into()),
            members: Some(vec![
                member("1002@lid", "admin"),
                member("1003@lid", "member"),
            ]),
        },
    )
    .await
    .unwrap();
    s.record_group(
        sid,
        &GroupInfo {
            jid: jid("222-2@g.us"),
            subject: None,
            members: Some(vec![member("1004@lid", "member")]),
        },
    )
    .await
    .unwrap();
    s.record_push_name(sid, &jid("1004@lid"), "Dave")
        .await
        .unwrap();
    s.record_message(
        sid,
        text("1003@lid", "c1", false, 2_000),
        RecordOptions::default(),
    )
    .await
    .unwrap();
}

dual!(async fn contacts_list_and_every_filter(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    seed(&app, &sid).await;
    let base = format!("/api/v1/sessions/{sid}/contacts");
    let all = app.get(&base).await;
    all.expect(200);
    let all = all.json();
    assert_eq!(lids(&all), ["1001@lid", "1002@lid", "1003@lid", "1004@lid"]);
    assert_eq!(all["nextCursor"], "", "contacts end with an empty nextCursor");
    let alice = &all["data"][0];
    assert_eq!(alice, &json!({"lid": "1001@lid", "source": "dm", "name": "Alice Ávila", "phoneNumber": "6281111111111", "businessName": "Acme Corp"}));
    assert_eq!(all["data"][1]["source"], "group");
    assert_eq!(all["data"][2]["source"], "dm", "Carol has a DM and is in a group");

    assert_eq!(lids(&app.get(&format!("{base}?source=dm")).await.json()), ["1001@lid", "1003@lid"]);
    assert_eq!(lids(&app.get(&format!("{base}?source=group")).await.json()), ["1002@lid", "1003@lid", "1004@lid"]);
    assert_eq!(lids(&app.get(&format!("{base}?group=111-1@g.us")).await.json()), ["1002@lid", "1003@lid"]);
    assert_eq!(lids(&app.get(&format!("{base}?group=222-2%40g.us")).await.json()), ["1004@lid"]);
    assert_eq!(lids(&app.get(&format!("{base}?group=999-9@g.us")).await.json()), Vec::<String>::new());
    assert_eq!(lids(&app.get(&format!("{base}?source=dm&group=111-1@g.us")).await.json()), ["1003@lid"]);
    // q: case-insensitive over name and number, Unicode included.
    assert_eq!(lids(&app.get(&format!("{base}?q=ALICE")).await.json()), ["1001@lid"]);
    assert_eq!(lids(&app.get(&format!("{base}?q=%C3%A1vila")).await.json()), ["1001@lid"], "á matches Á");
    assert_eq!(lids(&app.get(&format!("{base}?q=2222")).await.json()), ["1002@lid"]);
    assert_eq!(lids(&app.get(&format!("{base}?q=acme")).await.json()), ["1001@lid"], "business names are searched");
    assert_eq!(lids(&app.get(&format!("{base}?q=o&source=group")).await.json()), ["1002@lid", "1003@lid"]);
    assert_eq!(lids(&app.get(&format!("{base}?q=%25")).await.json()), Vec::<String>::new(), "% is literal");
    let none = app.get(&format!("{base}?q=zzz")).await.json();
    assert_eq!(none["data"], json!([]));
    assert_eq!(none["nextCursor"], "");
});

dual!(async fn contacts_paging_and_bad_parameters(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    seed(&app, &sid).await;
    let base = format!("/api/v1/sessions/{sid}/contacts");
    let p1 = app.get(&format!("{base}?limit=3")).await.json();
    assert_eq!(lids(&p1), ["1001@lid", "1002@lid", "1003@lid"]);
    let c = p1["nextCursor"].as_str().unwrap();
    assert!(!c.is_empty());
    let p2 = app.get(&format!("{base}?limit=3&cursor={c}")).await.json();
    assert_eq!(lids(&p2), ["1004@lid"]);
    assert_eq!(p2["nextCursor"], "");
    for bad in ["source=phone", "limit=many", "group=not-a-group", "group=6281111111111@s.whatsapp.net", "cursor=%%%"] {
        app.get(&format!("{base}?{bad}")).await.expect_error(400, "validation_error");
    }
    assert_eq!(app.get(&format!("{base}?limit=0")).await.json()["data"].as_array().unwrap().len(), 4);
});

dual!(async fn lid_and_phone_merge_into_one_person_and_one_dm(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    // The same person writes first as a LID, then by phone number; WhatsApp later links them.
    app.msg(&sid, "777@lid", "l1", false, 1_000).await;
    app.msg(&sid, "777@lid", "dup", false, 1_500).await;
    app.msg(&sid, "6287777777777@s.whatsapp.net", "p1", false, 2_000).await;
    app.msg(&sid, "6287777777777@s.whatsapp.net", "dup", false, 1_500).await;
    app.store.record_push_name(&sid, &jid("777@lid"), "Eve").await.unwrap();
    let before = app.get(&format!("/api/v1/sessions/{sid}/contacts")).await.json();
    assert_eq!(before["data"].as_array().unwrap().len(), 2, "two views before the link: {before}");
    app.store.link_lid_pn(&sid, &jid("777@lid"), &jid("6287777777777@s.whatsapp.net")).await.unwrap();

    let contacts = app.get(&format!("/api/v1/sessions/{sid}/contacts")).await.json();
    assert_eq!(contacts["data"], json!([{"lid": "777@lid", "source": "dm", "name": "Eve", "phoneNumber": "6287777777777"}]));
    let chats = app.get(&format!("/api/v1/sessions/{sid}/chats")).await.json();
    assert_eq!(chats["data"].as_array().unwrap().len(), 1, "{chats}");
    let chat = &chats["data"][0];
    assert_eq!(chat["jid"], "6287777777777@s.whatsapp.net");
    assert_eq!(chat["aliases"], json!(["777@lid"]));
    assert_eq!(chat["unreadCount"], 3, "2 + 2 incoming, the message both held counted once");
    assert_eq!(chat["lastMessageAt"], 2_000);
    let by_lid = app.get(&format!("/api/v1/sessions/{sid}/chats/777@lid/messages")).await.json();
    let ids: Vec<&str> = by_lid["data"].as_array().unwrap().iter().map(|m| m["waMessageId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["p1", "dup", "l1"], "merged, the duplicate kept once");
    // Later traffic to either address lands in the one chat.
    app.msg(&sid, "777@lid", "l2", false, 3_000).await;
    let chats = app.get(&format!("/api/v1/sessions/{sid}/chats")).await.json();
    assert_eq!(chats["data"].as_array().unwrap().len(), 1);
    assert_eq!(chats["data"][0]["lastMessageAt"], 3_000);
    // Linking again is harmless.
    app.store.link_lid_pn(&sid, &jid("777@lid"), &jid("6287777777777@s.whatsapp.net")).await.unwrap();
    assert_eq!(app.get(&format!("/api/v1/sessions/{sid}/chats")).await.json()["data"].as_array().unwrap().len(), 1);
});

dual!(async fn number_check_is_live(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let base = format!("/api/v1/sessions/{sid}/contacts/check");
    app.get(&format!("{base}?phone=6281234567890")).await.expect_error(501, "not_implemented");
    app.get(&base).await.expect_error(400, "validation_error");
    app.get(&format!("{base}?phone=")).await.expect_error(400, "validation_error");
    app.get(&format!("{base}?phone=0812")).await.expect_error(400, "validation_error");
    app.get(&format!("{base}?phone=abc")).await.expect_error(400, "validation_error");
    let client = app.engine.connect(&sid);
    client.directory.lock().unwrap().push("6281234567890".into());
    let yes = app.get(&format!("{base}?phone=%2B62%20812-3456-7890")).await;
    yes.expect(200);
    assert_eq!(yes.json(), json!({"query": "+62 812-3456-7890", "isOnWhatsApp": true, "jid": "6281234567890@s.whatsapp.net"}));
    let no = app.get(&format!("{base}?phone=6289999999999")).await.json();
    assert_eq!(no, json!({"query": "6289999999999", "isOnWhatsApp": false}));
    // Read-only: nothing was stored.
    assert_eq!(app.get(&format!("/api/v1/sessions/{sid}/contacts")).await.json()["data"], json!([]));
    let sender = app.key("org-a", "send").await;
    app.call(axum::http::Method::GET, &format!("{base}?phone=6281234567890"), Some(&sender), None).await.expect_error(403, "forbidden");
    // Both numbers were asked once; asking again within five minutes is answered from memory.
    assert_eq!(client.lookups.lock().unwrap().len(), 2);
    app.get(&format!("{base}?phone=6281234567890")).await.expect(200);
    assert_eq!(client.lookups.lock().unwrap().len(), 2);
});

dual!(async fn batch_number_check_asks_whatsapp_once_for_what_it_does_not_know(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let url = format!("/api/v1/sessions/{sid}/contacts/check");
    app.post(&url, json!({"phones": ["6281234567890"]})).await.expect_error(501, "not_implemented");
    let client = app.engine.connect(&sid);
    client.directory.lock().unwrap().extend(["6281111111111".to_owned(), "6283333333333".to_owned()]);
    app.get(&format!("{url}?phone=6283333333333")).await.expect(200);
    let r = app.post(&url, json!({"phones": ["+62 811-1111-1111", "6282222222222", "6283333333333", "6281111111111"]})).await;
    r.expect(200);
    assert_eq!(r.json(), json!({"data": [
        {"query": "+62 811-1111-1111", "isOnWhatsApp": true, "jid": "6281111111111@s.whatsapp.net"},
        {"query": "6282222222222", "isOnWhatsApp": false},
        {"query": "6283333333333", "isOnWhatsApp": true, "jid": "6283333333333@s.whatsapp.net"},
        {"query": "6281111111111", "isOnWhatsApp": true, "jid": "6281111111111@s.whatsapp.net"},
    ]}));
    // One query for the two numbers not asked before (the repeated one counted once).
    assert_eq!(client.lookups.lock().unwrap().last().unwrap(), &vec!["6281111111111".to_owned(), "6282222222222".to_owned()]);
    assert_eq!(client.lookups.lock().unwrap().len(), 2);
    let many: Vec<String> = (0..51).map(|i| format!("62811111{i:05}")).collect();
    app.post(&url, json!({"phones": many})).await.expect_error(422, "validation_error");
    app.post(&url, json!({"phones": []})).await.expect_error(422, "validation_error");
    let bad = app.post(&url, json!({"phones": ["6281111111111", "12"]})).await;
    bad.expect_error(422, "validation_error");
    assert!(bad.json()["error"]["details"]["phones[1]"].is_string());
});

dual!(async fn picture_about_and_account_presence_are_live(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let base = format!("/api/v1/sessions/{sid}");
    app.get(&format!("{base}/contacts/6281111111111@s.whatsapp.net/picture")).await.expect_error(501, "not_implemented");
    app.get(&format!("{base}/contacts/1@lid/about")).await.expect_error(501, "not_implemented");
    app.call(axum::http::Method::PUT, &format!("{base}/presence"), Some(&app.admin_key), Some(json!({"state": "online"}))).await.expect_error(501, "not_implemented");
    let client = app.engine.connect(&sid);
    client.directory.lock().unwrap().push("6281111111111".into());
    let pic = app.get(&format!("{base}/contacts/6281111111111@s.whatsapp.net/picture")).await;
    pic.expect(200);
    assert_eq!(pic.json(), json!({"url": "https://pps.example/6281111111111.jpg", "id": "1700000000"}));
    assert_eq!(app.get(&format!("{base}/contacts/999@lid/picture")).await.json(), json!({"url": null, "id": null}));
    let about = app.get(&format!("{base}/contacts/6281111111111@s.whatsapp.net/about")).await.json();
    assert_eq!(about, json!({"about": "about 6281111111111", "setAt": 1_700_000_000_000_i64}));
    app.get(&format!("{base}/contacts/123-456@g.us/about")).await.expect_error(400, "validation_error");
    for state in ["online", "offline"] {
        let r = app.call(axum::http::Method::PUT, &format!("{base}/presence"), Some(&app.admin_key), Some(json!({"state": state}))).await;
        r.expect(204);
    }
    assert_eq!(*client.available.lock().unwrap(), vec![true, false]);
    app.call(axum::http::Method::PUT, &format!("{base}/presence"), Some(&app.admin_key), Some(json!({"state": "away"}))).await.expect_error(422, "validation_error");
});

dual!(async fn contacts_work_without_a_connection_and_group_membership_replaces(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let m = |j: &str| GroupMember { jid: jid(j), alt: None, role: "member".into() };
    let g = jid("333-3@g.us");
    let full = |members: Vec<GroupMember>| GroupInfo { jid: g.clone(), subject: None, members: Some(members) };
    app.store.record_group(&sid, &full(vec![m("1@lid"), m("2@lid"), m("3@lid")])).await.unwrap();
    app.store.record_group(&sid, &full(vec![m("2@lid"), m("3@lid")])).await.unwrap();
    app.store.record_participants(&sid, &g, ParticipantChange::Remove, &[m("3@lid")]).await.unwrap();
    // A member given with both addresses is one person with a phone number.
    let both = GroupMember { jid: jid("4@lid"), alt: Some(jid("6284444444444@s.whatsapp.net")), role: "admin".into() };
    app.store.record_participants(&sid, &g, ParticipantChange::Add, &[both]).await.unwrap();
    let v = app.get(&format!("/api/v1/sessions/{sid}/contacts?group=333-3@g.us")).await.json();
    assert_eq!(lids(&v), ["2@lid", "4@lid"]);
    assert_eq!(v["data"][1]["phoneNumber"], "6284444444444");
});
