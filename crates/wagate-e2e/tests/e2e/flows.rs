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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_by_code_and_live_calls() {
    let w = World::new().await;
    let (s, created) = w.post("/api/v1/sessions", json!({})).await;
    assert_eq!(s, 201, "{created}");
    let sid = created["id"].as_str().unwrap().to_owned();
    let (s, v) = w
        .post(&format!("/api/v1/sessions/{sid}:start"), json!(null))
        .await;
    assert_eq!(s, 200, "{v}");
    w.wait_status(&sid, "scan_qr_code").await;
    let (s, code) = w
        .post(
            &format!("/api/v1/sessions/{sid}/pairing-code"),
            json!({"phone": "+62 811 0000 0003"}),
        )
        .await;
    assert_eq!(s, 200, "{code}");
    let code = code["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 8, "{code}");
    let (s, v) = w
        .sim_post(
            "/control/pair-code",
            json!({"phone": "6281100000003", "code": code, "name": "Sales"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    w.wait_status(&sid, "working").await;
    // The code was announced on the feed.
    let feed = w.get("/api/v1/events?event=auth.code").await;
    assert_eq!(feed["data"][0]["payload"]["code"], code.as_str(), "{feed}");

    // Number check through WhatsApp (and the batch form).
    w.person("6281200000004", "Bob").await;
    let one = w
        .get(&format!(
            "/api/v1/sessions/{sid}/contacts/check?phone=6281200000004"
        ))
        .await;
    assert_eq!(one["isOnWhatsApp"], true, "{one}");
    let (s, many) = w
        .post(
            &format!("/api/v1/sessions/{sid}/contacts/check"),
            json!({"phones": ["6281200000004", "6289999999999"]}),
        )
        .await;
    assert_eq!(s, 200, "{many}");
    assert_eq!(many["data"][0]["isOnWhatsApp"], true);
    assert_eq!(many["data"][1]["isOnWhatsApp"], false);
    // Typing reaches the person.
    let (s, v) = w
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/sessions/{sid}/chats/6281200000004@s.whatsapp.net/presence"),
            Some(json!({"state": "composing"})),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    eventually("the chat state at the simulator", || async {
        let v = w.sim_get("/control/chatstates").await;
        v.to_string().contains("composing").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_settings_travel_both_ways() {
    let w = World::new().await;
    let sid = w.paired_session("6281100000005", "Ops").await;
    w.person("6281200000006", "Carol").await;
    let (s, v) = w
        .sim_post(
            "/control/people/6281200000006/send",
            json!({"to": "6281100000005", "text": "hello"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let cid = "6281200000006@s.whatsapp.net";
    eventually("the chat", || async {
        let (s, _) = w
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/sessions/{sid}/chats/{cid}"),
                None,
            )
            .await;
        (s == 200).then_some(())
    })
    .await;
    // Archived and pinned through the API: the phone shows the same.
    let (s, v) = w
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/sessions/{sid}/chats/{cid}"),
            Some(json!({"archived": true, "pinned": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    eventually("the phone's chat settings", || async {
        let v = w
            .sim_get("/control/accounts/6281100000005/chat-settings")
            .await;
        let c = &v["chats"][cid];
        (c["archived"] == true && c["pinned"] == true).then_some(())
    })
    .await;
    // Muted on the phone: the stored copy follows.
    let until = 4_102_444_800_000_i64;
    let (s, v) = w
        .sim_post(
            "/control/accounts/6281100000005/chat-settings",
            json!({"chat": cid, "mutedUntil": until, "archived": false}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    eventually("the stored chat follows the phone", || async {
        let c = w.get(&format!("/api/v1/sessions/{sid}/chats/{cid}")).await;
        (c["mutedUntil"] == until && c["archived"] == false).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_end_in_the_right_status() {
    let w = World::new().await;
    let a = w.paired_session("6281100000007", "A").await;
    let b = w.paired_session("6281100000008", "B").await;
    let c = w.paired_session("6281100000009", "C").await;
    // A dropped connection comes back by itself.
    let (s, v) = w
        .sim_post(
            "/control/fault",
            json!({"jid": "6281100000007:1@s.whatsapp.net", "kind": "close"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    w.wait_status(&a, "working").await;
    // WhatsApp unlinks the device: logged out, with the reason.
    let (s, v) = w
        .sim_post(
            "/control/fault",
            json!({"jid": "6281100000008:1@s.whatsapp.net", "kind": "logout"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let out = w.wait_status(&b, "logged_out").await;
    assert!(
        out["statusReason"]
            .as_str()
            .unwrap_or_default()
            .contains("unlinked"),
        "{out}"
    );
    // Another connection replaces this one: failed, and no fight back.
    let (s, v) = w
        .sim_post(
            "/control/fault",
            json!({"jid": "6281100000009:1@s.whatsapp.net", "kind": "replaced"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let failed = w.wait_status(&c, "failed").await;
    assert!(
        failed["statusReason"]
            .as_str()
            .unwrap_or_default()
            .contains("replaced"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_sync_fills_the_stored_copy_as_the_scenario_says() {
    let w = World::new().await;
    let scenario = json!({
        "accounts": [{"phone": "6281100000010", "name": "Archive",
            "history": {
                "conversations": [
                    {"chat": "6281200000011", "name": "Dewi", "archived": true, "pinned": 1700000500,
                     "mutedUntil": 4102444800000_i64, "unreadCount": 2,
                     "messages": [
                        {"id": "H1", "from": "6281200000011", "text": "old hello", "timestamp": 1700000000, "pushName": "Dewi"},
                        {"id": "H2", "from": "me", "text": "old reply", "timestamp": 1700000060}
                     ]},
                    {"chat": "6281200000012", "name": "Eko", "messages": [
                        {"id": "H3", "from": "6281200000012", "text": "ping", "timestamp": 1700000100, "pushName": "Eko"}
                    ]}
                ],
                "pushNames": {"6281200000013": "Fajar"}
            }}],
        "people": [{"phone": "6281200000011", "name": "Dewi"}, {"phone": "6281200000012", "name": "Eko"}]
    });
    let (s, v) = w.sim_post("/control/scenario", scenario).await;
    assert_eq!(s, 200, "{v}");
    let sid = w.paired_session("6281100000010", "Archive").await;
    let chats = eventually("both chats from the history", || async {
        let v = w.get(&format!("/api/v1/sessions/{sid}/chats")).await;
        (v["data"].as_array().unwrap().len() == 2).then_some(v)
    })
    .await;
    let dewi = chats["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["jid"] == "6281200000011@s.whatsapp.net")
        .cloned()
        .expect("Dewi's chat");
    assert_eq!(
        (
            dewi["archived"].as_bool(),
            dewi["pinned"].as_bool(),
            dewi["unreadCount"].as_i64()
        ),
        (Some(true), Some(true), Some(2)),
        "{dewi}"
    );
    assert_eq!(dewi["mutedUntil"], 4102444800000_i64);
    // Pinned first.
    assert_eq!(chats["data"][0]["jid"], "6281200000011@s.whatsapp.net");
    let msgs = eventually("Dewi's two messages", || async {
        let v = w
            .get(&format!(
                "/api/v1/sessions/{sid}/chats/6281200000011@s.whatsapp.net/messages"
            ))
            .await;
        (v["data"].as_array().unwrap().len() == 2).then_some(v)
    })
    .await;
    assert_eq!(
        (
            msgs["data"][0]["body"].as_str(),
            msgs["data"][0]["fromMe"].as_bool()
        ),
        (Some("old reply"), Some(true)),
        "{msgs}"
    );
    assert_eq!(
        (
            msgs["data"][1]["waMessageId"].as_str(),
            msgs["data"][1]["senderName"].as_str()
        ),
        (Some("H1"), Some("Dewi"))
    );
    let contacts = w
        .get(&format!("/api/v1/sessions/{sid}/contacts?source=dm"))
        .await;
    let names: Vec<&str> = contacts["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains(&"Dewi") && names.contains(&"Eko"),
        "{contacts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_talk_media_arrives_whole_and_groups_fill_contacts() {
    use base64::Engine as _;
    let w = World::new().await;
    let a = w.paired_session("6281100000020", "Alpha").await;
    let b = w.paired_session("6281100000021", "Beta").await;
    // Alpha writes to Beta: both stored copies agree on the message.
    let (s, sent) = w
        .post(
            &format!("/api/v1/sessions/{a}/messages"),
            json!({"to": "6281100000021", "type": "text", "text": "hello Beta"}),
        )
        .await;
    assert_eq!(s, 201, "{sent}");
    let wa_id = sent["waMessageId"].as_str().unwrap().to_owned();
    let got = eventually("Beta's copy", || async {
        let v = w.get(&format!("/api/v1/sessions/{b}/chats")).await;
        let cid = v["data"][0]["jid"].as_str()?.to_owned();
        let m = w
            .get(&format!("/api/v1/sessions/{b}/chats/{cid}/messages"))
            .await;
        m["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["waMessageId"] == wa_id.as_str())
            .cloned()
    })
    .await;
    assert_eq!(
        (
            got["body"].as_str(),
            got["direction"].as_str(),
            got["senderName"].as_str()
        ),
        (Some("hello Beta"), Some("in"), Some("Alpha")),
        "{got}"
    );
    eventually("Alpha's copy shows it delivered", || async {
        let m = w
            .get(&format!(
                "/api/v1/sessions/{a}/chats/6281100000021@s.whatsapp.net/messages"
            ))
            .await;
        m["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["waMessageId"] == wa_id.as_str() && m["status"] == "delivered")
            .then_some(())
    })
    .await;

    // An image reaches a person byte for byte.
    w.person("6281200000022", "Gita").await;
    let bytes: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let (s, sent) = w.post(&format!("/api/v1/sessions/{a}/messages"), json!({"to": "6281200000022", "type": "image", "caption": "chart", "media": {"data": b64, "mimetype": "image/png"}})).await;
    assert_eq!(s, 201, "{sent}");
    let got = eventually("Gita's image", || async {
        let v = w.sim_get("/control/people/6281200000022/received").await;
        v.as_array()
            .unwrap()
            .iter()
            .find(|m| m["type"] == "image")
            .cloned()
    })
    .await;
    assert_eq!(got["caption"], "chart", "{got}");
    assert_eq!(
        got["media"]["base64"].as_str(),
        Some(b64.as_str()),
        "the image arrives byte for byte"
    );

    // A group with a person: its members become contacts with source `group`.
    let (s, g) = w.sim_post("/control/groups", json!({"creator": "6281200000022", "subject": "Team", "participants": ["6281100000020"], "addressing": "pn"})).await;
    assert_eq!(s, 201, "{g}");
    let gjid = g["jid"].as_str().unwrap().to_owned();
    let (s, v) = w
        .sim_post(
            "/control/people/6281200000022/send",
            json!({"to": gjid, "text": "welcome"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    eventually("the group chat", || async {
        let (s, c) = w
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/sessions/{a}/chats/{gjid}"),
                None,
            )
            .await;
        (s == 200 && c["type"] == "group").then_some(())
    })
    .await;
    let members = eventually("group contacts", || async {
        let v = w
            .get(&format!(
                "/api/v1/sessions/{a}/contacts?source=group&group={gjid}"
            ))
            .await;
        (!v["data"].as_array().unwrap().is_empty()).then_some(v)
    })
    .await;
    assert!(
        members["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "Gita"),
        "{members}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_number_one_organization_learned_never_reaches_another() {
    let w = World::new().await;
    // Org A's number has a direct chat with Hana: it learns her phone number.
    let a = w.paired_session("6281100000030", "A").await;
    let b_key = w.org_key("org-b").await;
    let b = w.paired_session_as(&b_key, "6281100000031", "B").await;
    w.person("6281200000032", "Hana").await;
    let (s, v) = w
        .sim_post(
            "/control/people/6281200000032/send",
            json!({"to": "6281100000030", "text": "hi A"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    eventually("A sees Hana's number", || async {
        let v = w
            .get(&format!("/api/v1/sessions/{a}/contacts?q=6281200000032"))
            .await;
        (v["data"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    // Org B's number meets Hana only in a group that hides numbers behind LIDs.
    let (s, g) = w.sim_post("/control/groups", json!({"creator": "6281200000032", "subject": "LID group", "participants": ["6281100000031"], "addressing": "lid"})).await;
    assert_eq!(s, 201, "{g}");
    let gjid = g["jid"].as_str().unwrap().to_owned();
    let (s, v) = w
        .sim_post(
            "/control/people/6281200000032/send",
            json!({"to": gjid, "text": "hi group"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let as_b = |path: String| {
        let key = b_key.clone();
        let w = &w;
        async move {
            let (s, v) = w.call_as(&key, reqwest::Method::GET, &path, None).await;
            assert_eq!(s, 200, "{path}: {v}");
            v
        }
    };
    let members = eventually("B sees Hana in the group", || {
        let f = as_b(format!("/api/v1/sessions/{b}/contacts?group={gjid}"));
        async move {
            let v = f.await;
            (!v["data"].as_array().unwrap().is_empty()).then_some(v)
        }
    })
    .await;
    let text = members.to_string();
    assert!(
        !text.contains("6281200000032"),
        "B must not see Hana's number: {text}"
    );
    let search = as_b(format!("/api/v1/sessions/{b}/contacts?q=6281200000032")).await;
    assert_eq!(search["data"], json!([]), "B cannot find her by number");
    let chats = as_b(format!("/api/v1/sessions/{b}/chats")).await;
    assert!(!chats.to_string().contains("6281200000032"), "{chats}");
    // And A's own view still has it.
    let mine = w
        .get(&format!("/api/v1/sessions/{a}/contacts?q=6281200000032"))
        .await;
    assert_eq!(mine["data"][0]["phoneNumber"], "6281200000032");
}
