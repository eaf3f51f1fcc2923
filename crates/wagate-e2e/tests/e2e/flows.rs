//! Pairing, receiving, sending, receipts and a restart, end to end.

use serde_json::json;

use crate::support::{eventually, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_receive_send_and_survive_a_restart() {
    let mut w = World::new().await;
    let sid = w.paired_session("6281100000001", "Support").await;
    let me = w.get(&format!("/api/v1/sessions/{sid}/me")).await;
    assert_eq!(me["jid"], "6281100000001@s.whatsapp.net", "{me}");
    assert_eq!(me["connected"], true);

    // A person writes: chat, message (sender, push name) and contact appear.
    let (pjid, _plid) = w.person("6281200000002", "Alice").await;
    let (s, v) = w
        .sim_post(
            "/control/people/6281200000002/send",
            json!({"to": "6281100000001", "text": "hi there"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let chats = eventually("the chat", || async {
        let v = w.get(&format!("/api/v1/sessions/{sid}/chats")).await;
        (v["data"].as_array().unwrap().len() == 1).then_some(v)
    })
    .await;
    let chat = &chats["data"][0];
    assert_eq!(chat["unreadCount"], 1, "{chat}");
    assert!(chat["lastMessageAt"].as_i64().unwrap() > 0);
    let cid = chat["jid"].as_str().unwrap().to_owned();
    let msgs = w
        .get(&format!("/api/v1/sessions/{sid}/chats/{cid}/messages"))
        .await;
    let m = &msgs["data"][0];
    assert_eq!(
        (
            m["body"].as_str(),
            m["direction"].as_str(),
            m["senderName"].as_str()
        ),
        (Some("hi there"), Some("in"), Some("Alice")),
        "{m}"
    );
    let contacts = w.get(&format!("/api/v1/sessions/{sid}/contacts")).await;
    assert!(
        contacts["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "Alice"),
        "{contacts}"
    );

    // The gateway sends: the person's phone gets it, and their read receipt moves the status.
    let (s, sent) = w
        .post(
            &format!("/api/v1/sessions/{sid}/messages"),
            json!({"to": pjid, "type": "text", "text": "hello Alice"}),
        )
        .await;
    assert_eq!(s, 201, "{sent}");
    assert!(
        ["sent", "delivered"].contains(&sent["status"].as_str().unwrap()),
        "{sent}"
    );
    let wa_id = sent["waMessageId"].as_str().unwrap().to_owned();
    let got = eventually("Alice receives", || async {
        let v = w.sim_get("/control/people/6281200000002/received").await;
        v.as_array()
            .unwrap()
            .iter()
            .find(|m| m["text"] == "hello Alice")
            .cloned()
    })
    .await;
    assert_eq!(got["id"], wa_id.as_str());
    let (s, v) = w
        .sim_post(
            "/control/people/6281200000002/read",
            json!({"chat": "6281100000001", "ids": [wa_id]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    eventually("status read", || async {
        let v = w
            .get(&format!("/api/v1/sessions/{sid}/chats/{cid}/messages"))
            .await;
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["waMessageId"] == wa_id.as_str() && m["status"] == "read")
            .then_some(())
    })
    .await;

    // A restart keeps the session without pairing again.
    w.stop_gateway().await;
    w.start_gateway().await;
    w.wait_status(&sid, "working").await;
    let (s, v) = w
        .sim_post(
            "/control/people/6281200000002/send",
            json!({"to": "6281100000001", "text": "after restart"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    eventually("the message after the restart", || async {
        let v = w
            .get(&format!("/api/v1/sessions/{sid}/chats/{cid}/messages"))
            .await;
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["body"] == "after restart")
            .then_some(())
    })
    .await;
    w.stop_gateway().await;
}
