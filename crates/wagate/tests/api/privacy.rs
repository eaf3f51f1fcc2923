//! One organization never learns, through the gateway, what only another organization's
//! number was told.

use serde_json::{json, Value};

use crate::dual;
use crate::support::{jid, text, TestApp};
use wagate::store::{GroupInfo, GroupMember, RecordOptions};

const PHONE: &str = "6285550001";
const LID: &str = "5550001@lid";

async fn snapshot(app: &TestApp, key: &str, sid: &str) -> Value {
    let get = |uri: String| async move {
        let r = app
            .call(axum::http::Method::GET, &uri, Some(key), None)
            .await;
        r.expect(200);
        r.json()
    };
    json!({
        "contacts": get(format!("/api/v1/sessions/{sid}/contacts")).await,
        "chats": get(format!("/api/v1/sessions/{sid}/chats")).await,
        "dm": get(format!("/api/v1/sessions/{sid}/chats/{LID}/messages")).await,
        "group": get(format!("/api/v1/sessions/{sid}/chats/120363000000000001@g.us/messages")).await,
    })
}

dual!(async fn a_phone_number_learned_by_one_org_never_reaches_another(backend) {
    let app = TestApp::new(backend).await;
    let sa = app.session().await; // org-a
    let sb = app.session_of("org-b").await;
    let kb = app.key("org-b", "read,send").await;

    // A's number has a direct chat with the person, so WhatsApp tells A the number.
    let mut m = text(&format!("{PHONE}@s.whatsapp.net"), "a1", false, 1_000);
    m.chat_alt = Some(jid(LID));
    m.sender_name = Some("Zed".into());
    app.store.record_message(&sa, m, RecordOptions::default()).await.unwrap();
    app.store.link_lid_pn(&sa, &jid(LID), &jid(&format!("{PHONE}@s.whatsapp.net"))).await.unwrap();

    // B's number meets the same person only in a LID-addressed group, and in a DM by LID.
    let g = jid("120363000000000001@g.us");
    let member = GroupMember { jid: jid(LID), alt: None, role: "member".into() };
    app.store.record_group(&sb, &GroupInfo { jid: g.clone(), subject: Some("Club".into()), members: Some(vec![member]) }).await.unwrap();
    let mut gm = text(&g.to_string(), "g1", false, 2_000);
    gm.sender = Some(jid(LID));
    gm.sender_name = Some("Zed".into());
    app.store.record_message(&sb, gm, RecordOptions::default()).await.unwrap();
    app.store.record_message(&sb, text(LID, "b1", false, 3_000), RecordOptions::default()).await.unwrap();

    // A knows the number.
    let a = app.get(&format!("/api/v1/sessions/{sa}/contacts")).await.json();
    assert_eq!(a["data"], json!([{"lid": LID, "source": "dm", "name": "Zed", "phoneNumber": PHONE}]));

    // B never sees it: not in contacts, not through search, not in a chat JID or alias, not in messages.
    let before = snapshot(&app, &kb, &sb).await;
    assert!(!before.to_string().contains(PHONE), "B's stored copy shows A's knowledge: {before}");
    assert_eq!(before["contacts"]["data"], json!([{"lid": LID, "source": "dm", "name": "Zed"}]));
    let dm = before["chats"]["data"].as_array().unwrap().iter().find(|c| c["type"] == "dm").unwrap().clone();
    assert_eq!(dm["jid"], LID);
    for q in [PHONE, "555000", "62855"] {
        let r = app.call(axum::http::Method::GET, &format!("/api/v1/sessions/{sb}/contacts?q={q}"), Some(&kb), None).await.json();
        assert_eq!(r["data"], json!([]), "q={q} must not find the number in B");
    }
    app.call(axum::http::Method::GET, &format!("/api/v1/sessions/{sb}/chats/{PHONE}@s.whatsapp.net"), Some(&kb), None)
        .await
        .expect_error(404, "not_found");

    // Deleting A's session leaves no row of it anywhere, and changes nothing for B.
    app.delete(&format!("/api/v1/sessions/{sa}")).await.expect(204);
    for table in ["contacts", "chats", "chat_aliases", "messages", "groups"] {
        assert_eq!(app.rows_of(table, &sa).await, 0, "{table} keeps rows of the deleted session");
    }
    assert_eq!(snapshot(&app, &kb, &sb).await, before);
});

dual!(async fn a_number_given_to_a_new_account_does_not_merge_two_people(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let pn = format!("{PHONE}@s.whatsapp.net");
    app.store.link_lid_pn(&sid, &jid("1111@lid"), &jid(&pn)).await.unwrap();
    app.store.record_push_name(&sid, &jid("1111@lid"), "Old owner").await.unwrap();
    app.msg(&sid, &pn, "old-1", false, 1_000).await;
    // WhatsApp re-assigns the number to another account (a new LID).
    app.store.link_lid_pn(&sid, &jid("2222@lid"), &jid(&pn)).await.unwrap();
    app.store.record_push_name(&sid, &jid("2222@lid"), "New owner").await.unwrap();
    app.msg(&sid, &pn, "new-1", false, 2_000).await;

    let contacts = app.get(&format!("/api/v1/sessions/{sid}/contacts")).await.json();
    assert_eq!(contacts["data"], json!([
        {"lid": "1111@lid", "source": "dm", "name": "Old owner"},
        {"lid": "2222@lid", "source": "dm", "name": "New owner", "phoneNumber": PHONE},
    ]));
    let old = app.get(&format!("/api/v1/sessions/{sid}/chats/1111@lid/messages")).await.json();
    assert_eq!(old["data"].as_array().unwrap().iter().map(|m| m["waMessageId"].clone()).collect::<Vec<_>>(), [json!("old-1")]);
    let new = app.get(&format!("/api/v1/sessions/{sid}/chats/{pn}/messages")).await.json();
    assert_eq!(new["data"].as_array().unwrap().iter().map(|m| m["waMessageId"].clone()).collect::<Vec<_>>(), [json!("new-1")]);
    assert_eq!(app.get(&format!("/api/v1/sessions/{sid}/chats/{pn}")).await.json()["aliases"], json!(["2222@lid"]));
});
