//! Pairing, receiving, sending, receipts and a restart, end to end.

use serde_json::{json, Value};

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
    // Mark-read through the API: the gateway's counter only (the person gets no read receipt).
    assert_eq!(
        w.get(&format!("/api/v1/sessions/{sid}/chats/{cid}")).await["unreadCount"],
        1
    );
    let (s, v) = w
        .post(
            &format!("/api/v1/sessions/{sid}/chats/{cid}/read"),
            json!({}),
        )
        .await;
    assert!(s == 200 || s == 204, "{s} {v}");
    assert_eq!(
        w.get(&format!("/api/v1/sessions/{sid}/chats/{cid}")).await["unreadCount"],
        0
    );
    // Deleted from the stored copy; the next message brings the chat back with only itself.
    let (s, v) = w
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/sessions/{sid}/chats/{cid}"),
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (s, _) = w
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/sessions/{sid}/chats/{cid}"),
            None,
        )
        .await;
    assert_eq!(s, 404);
    w.sim_post(
        "/control/people/6281200000006/send",
        json!({"to": "6281100000005", "text": "me again"}),
    )
    .await;
    let back = eventually("the chat comes back", || async {
        let (s, v) = w
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/sessions/{sid}/chats/{cid}/messages"),
                None,
            )
            .await;
        (s == 200).then_some(v)
    })
    .await;
    let bodies: Vec<&str> = back["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["me again"]);
    assert_eq!(
        w.get(&format!("/api/v1/sessions/{sid}/chats/{cid}")).await["unreadCount"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_end_in_the_right_status() {
    let w = World::new().await;
    let a = w.paired_session("6281100000007", "A").await;
    let b = w.paired_session("6281100000008", "B").await;
    let c = w.paired_session("6281100000009", "C").await;
    // A dropped connection comes back by itself.
    w.fault_then(&a, "6281100000007", "close", "working", "")
        .await;
    // WhatsApp unlinks the device: logged out, with the reason.
    w.fault_then(&b, "6281100000008", "logout", "logged_out", "unlinked")
        .await;
    // Another connection replaces this one: failed, and no fight back.
    w.fault_then(&c, "6281100000009", "replaced", "failed", "replaced")
        .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_revokes_reactions_polls_and_forwards_both_ways() {
    let w = World::new().await;
    let sid = w.paired_session("6281100000021", "Desk").await;
    let (pjid, _) = w.person("6281200000022", "Budi").await;
    let person = "/control/people/6281200000022";
    let msg = |id: String| {
        let w = &w;
        let sid = sid.clone();
        async move {
            w.call(
                reqwest::Method::GET,
                &format!("/api/v1/sessions/{sid}/messages/{id}"),
                None,
            )
            .await
            .1
        }
    };
    let received = |pred: Box<dyn Fn(&Value) -> bool + Send + Sync>| {
        let w = &w;
        async move {
            eventually("the person receives it", || async {
                let v = w.sim_get(&format!("{person}/received")).await;
                v.as_array().unwrap().iter().find(|m| pred(m)).cloned()
            })
            .await
        }
    };

    // From the person: a message, then its edit, a reaction and a revoke of another.
    let (_, a) = w
        .sim_post(
            &format!("{person}/send"),
            json!({"to": "6281100000021", "text": "helo"}),
        )
        .await;
    let (_, b) = w
        .sim_post(
            &format!("{person}/send"),
            json!({"to": "6281100000021", "text": "oops"}),
        )
        .await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    let b_id = b["id"].as_str().unwrap().to_owned();
    eventually("both stored", || async {
        (msg(b_id.clone()).await["body"] == "oops").then_some(())
    })
    .await;
    let (s, v) = w
        .sim_post(
            &format!("{person}/send"),
            json!({"to": "6281100000021", "text": "hello", "editOf": a_id}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = w
        .sim_post(
            &format!("{person}/send"),
            json!({"to": "6281100000021", "revoke": b_id}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let edited = eventually("the edit is applied", || async {
        let m = msg(a_id.clone()).await;
        (m["body"] == "hello").then_some(m)
    })
    .await;
    assert_eq!(edited["edited"], true, "{edited}");
    let revoked = eventually("the revoke is applied", || async {
        let m = msg(b_id.clone()).await;
        (m["deleted"] == true).then_some(m)
    })
    .await;
    assert!(revoked.get("body").is_none_or(|b| b.is_null()), "{revoked}");

    // From the gateway: send, edit, react, forward, poll, revoke; the person sees each.
    let (s, sent) = w
        .post(
            &format!("/api/v1/sessions/{sid}/messages"),
            json!({"to": pjid, "type": "text", "text": "see you at 9"}),
        )
        .await;
    assert_eq!(s, 201, "{sent}");
    let sent_id = sent["waMessageId"].as_str().unwrap().to_owned();
    let (s, v) = w
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/sessions/{sid}/messages/{sent_id}"),
            Some(json!({"text": "see you at 10"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["body"].as_str(), v["edited"].as_bool()),
        (Some("see you at 10"), Some(true)),
        "{v}"
    );
    let target = sent_id.clone();
    let e = received(Box::new(move |m| {
        m["type"] == "edit" && m["editOf"] == target.as_str()
    }))
    .await;
    assert_eq!(e["text"], "see you at 10", "{e}");

    let (s, v) = w
        .post(
            &format!("/api/v1/sessions/{sid}/messages/{a_id}/reaction"),
            json!({"emoji": "❤"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let target = a_id.clone();
    received(Box::new(move |m| {
        m["type"] == "reaction"
            && m["reactTo"]["id"] == target.as_str()
            && m["reactTo"]["emoji"] == "❤"
    }))
    .await;

    let (s, v) = w
        .post(
            &format!("/api/v1/sessions/{sid}/messages/{a_id}/forward"),
            json!({"to": "6281200000022"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    received(Box::new(|m| {
        m["type"] == "text" && m["text"] == "hello" && m["forwarded"] == true
    }))
    .await;

    let (s, v) = w.post(&format!("/api/v1/sessions/{sid}/messages"), json!({"to": pjid, "type": "poll", "poll": {"question": "Lunch?", "options": ["Rice", "Noodles"]}})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["type"], "poll", "{v}");
    // WhatsApp's server has it; the person's delivery receipt may already have come.
    assert!(
        ["sent", "delivered"].contains(&v["status"].as_str().unwrap()),
        "{v}"
    );
    let poll_id = v["waMessageId"].as_str().unwrap().to_owned();
    let p = received(Box::new(|m| m["type"] == "poll")).await;
    assert_eq!(p["poll"]["name"], "Lunch?", "{p}");
    assert_eq!(p["poll"]["options"], json!(["Rice", "Noodles"]), "{p}");
    assert_eq!(p["poll"]["hasSecret"], true, "{p}");
    // This account votes in its own poll; the person gets the (encrypted) vote for it.
    let (s, v) = w
        .post(
            &format!("/api/v1/sessions/{sid}/messages/{poll_id}/vote"),
            json!({"options": ["Noodles"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["waMessageId"], poll_id.as_str(), "{v}");
    let target = poll_id.clone();
    let vote = received(Box::new(move |m| {
        m["type"] == "poll_vote" && m["pollVote"]["pollId"] == target.as_str()
    }))
    .await;
    assert_eq!(vote["pollVote"]["encrypted"], true, "{vote}");
    let (s, v) = w
        .post(
            &format!("/api/v1/sessions/{sid}/messages/{poll_id}/vote"),
            json!({"options": ["Pizza"]}),
        )
        .await;
    assert_eq!(s, 422, "{v}");

    let (s, v) = w
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/sessions/{sid}/messages/{sent_id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["deleted"], true, "{v}");
    let target = sent_id.clone();
    received(Box::new(move |m| {
        m["type"] == "revoke" && m["revoke"] == target.as_str()
    }))
    .await;

    // The person reacts to the gateway's poll: a reaction row, announced as message.reaction.
    let (s, v) = w
        .sim_post(
            &format!("{person}/send"),
            json!({"to": "6281100000021", "reactTo": {"id": poll_id, "emoji": "👍"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let rid = v["id"].as_str().unwrap().to_owned();
    let r = eventually("the reaction is stored", || async {
        let m = msg(rid.clone()).await;
        (m["type"] == "reaction").then_some(m)
    })
    .await;
    assert_eq!(
        (r["body"].as_str(), r["quotedMessageId"].as_str()),
        (Some("👍"), Some(poll_id.as_str())),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_read_sends_read_receipts_for_incoming_messages() {
    let w = World::new().await;
    let sid = w.paired_session("6281100000031", "Reader").await;
    w.person("6281200000032", "Citra").await;
    let person = "/control/people/6281200000032";
    // Off (the default): a message stays unread and the person gets no read receipt.
    let (_, first) = w
        .sim_post(
            &format!("{person}/send"),
            json!({"to": "6281100000031", "text": "one"}),
        )
        .await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    eventually("the first message is stored", || async {
        let v = w.get(&format!("/api/v1/sessions/{sid}/chats")).await;
        (v["data"][0]["unreadCount"] == 1).then_some(())
    })
    .await;
    let (s, v) = w
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/sessions/{sid}"),
            Some(json!({"autoRead": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, second) = w
        .sim_post(
            &format!("{person}/send"),
            json!({"to": "6281100000031", "text": "two"}),
        )
        .await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    let receipts = eventually("a read receipt for the second message", || async {
        let v = w.sim_get(&format!("{person}/receipts")).await;
        v.as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == second_id.as_str() && r["type"] == "read")
            .then_some(v)
    })
    .await;
    assert!(
        !receipts
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == first_id.as_str() && r["type"] == "read"),
        "the message before autoRead was not marked read: {receipts}"
    );
    eventually("the chat is read", || async {
        let v = w.get(&format!("/api/v1/sessions/{sid}/chats")).await;
        (v["data"][0]["unreadCount"] == 0).then_some(())
    })
    .await;
}

/// The `session.status` events of `sid` after `after`, as (seq, status).
async fn statuses(w: &World, sid: &str, after: i64) -> Vec<(i64, String)> {
    let v = w
        .get(&format!(
            "/api/v1/events?after={after}&event=session.status&limit=1000"
        ))
        .await;
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["payload"]["id"] == sid)
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["payload"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_and_silent_pings_recover_and_the_feed_tells_each_status_once_in_order() {
    let w = World::new().await;
    let sid = w.paired_session("6281100000041", "Pings").await;
    let jid = "6281100000041:1@s.whatsapp.net";
    let after = w.get("/api/v1/events?limit=1000").await["next"]
        .as_i64()
        .unwrap();

    // 515: WhatsApp asks for a reconnect. The engine reconnects at once without an event of
    // its own; the gateway notices the closed connection: `starting`, then `working` again.
    let conn_of = || async {
        let v = w.sim_get("/control/connections").await;
        v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["jid"] == jid)
            .map(|c| c["id"].as_u64().unwrap())
    };
    let before = conn_of().await.expect("connected");
    let (s, v) = w
        .sim_post("/control/fault", json!({"jid": jid, "kind": "restart"}))
        .await;
    assert_eq!(s, 200, "{v}");
    eventually("a new connection after the 515", || async {
        conn_of().await.filter(|c| *c != before)
    })
    .await;
    w.person("6281200000042", "Dewi").await;
    w.sim_post(
        "/control/people/6281200000042/send",
        json!({"to": "6281100000041", "text": "still there?"}),
    )
    .await;
    eventually("a message after the 515", || async {
        let v = w.get(&format!("/api/v1/sessions/{sid}/chats")).await;
        (!v["data"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;
    eventually("starting then working after the 515", || async {
        let st = statuses(&w, &sid, after).await;
        let names: Vec<&str> = st.iter().map(|x| x.1.as_str()).collect();
        (names == ["starting", "working"]).then_some(())
    })
    .await;
    let after_restart = w.get("/api/v1/events?limit=1000").await["next"]
        .as_i64()
        .unwrap();

    // The server stops answering pings: the engine's keepalive notices (within a minute or so)
    // and the session says it is reconnecting; once pings are answered again it is working.
    let (s, v) = w
        .sim_post(
            "/control/fault",
            json!({"jid": jid, "kind": "ignore_pings"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(150);
    let lost = loop {
        let st = statuses(&w, &sid, after_restart).await;
        if let Some(x) = st.iter().find(|x| x.1 == "starting") {
            break x.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "silent pings were not noticed: {st:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let session = w.get(&format!("/api/v1/sessions/{sid}")).await;
    assert!(
        session["status"] == "starting" || session["status"] == "working",
        "{session}"
    );
    let (s, v) = w
        .sim_post(
            "/control/fault",
            json!({"jid": jid, "kind": "answer_pings"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    w.wait_status(&sid, "working").await;
    eventually("working again after the silent pings", || async {
        let st = statuses(&w, &sid, lost.0).await;
        (st.last().map(|x| x.1.as_str()) == Some("working")).then_some(())
    })
    .await;

    // The whole story, once each and in order: no status repeated back to back, seqs rising.
    let all = statuses(&w, &sid, after).await;
    assert!(all.windows(2).all(|p| p[0].0 < p[1].0), "{all:?}");
    assert!(
        all.windows(2).all(|p| p[0].1 != p[1].1),
        "a repeated status: {all:?}"
    );
    let names: Vec<&str> = all.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(
        names,
        ["starting", "working", "starting", "working"],
        "{all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_while_the_database_is_slow_is_stored_whole() {
    use futures::StreamExt;
    use sqlx::Connection;
    const N: usize = 1500;
    let w = World::new().await;
    let sid = w.paired_session("6281100000051", "Burst").await;
    w.person("6281200000052", "Eka").await;
    let after = w.get("/api/v1/events?limit=1000").await["next"]
        .as_i64()
        .unwrap();

    // Another process's write transaction holds SQLite's write lock: every write of the
    // gateway (messages, the engine's keys and its inbound buffer) waits behind it.
    let url = format!("sqlite://{}", w.db_path().display());
    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let sent = futures::stream::iter(0..N)
        .map(|i| {
            let w = &w;
            async move {
                let (s, v) = w
                    .sim_post(
                        "/control/people/6281200000052/send",
                        json!({"to": "6281100000051", "text": format!("burst {i}")}),
                    )
                    .await;
                assert_eq!(s, 200, "{v}");
            }
        })
        .buffer_unordered(16)
        .count()
        .await;
    assert_eq!(sent, N);
    // The whole burst is on its way while nothing could be written; now the database frees up.
    let stored_meanwhile: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE session_id = ?")
            .bind(&sid)
            .fetch_one(&mut blocker)
            .await
            .unwrap();
    assert_eq!(
        stored_meanwhile, 0,
        "nothing is committed while the lock is held"
    );
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    drop(blocker);

    // Every message arrives once: the chat counts N unread, and its pages hold N distinct texts.
    let chat = eventually("the whole burst is stored", || async {
        let v = w.get(&format!("/api/v1/sessions/{sid}/chats")).await;
        (v["data"][0]["unreadCount"] == N).then(|| v["data"][0]["jid"].as_str().unwrap().to_owned())
    })
    .await;
    let mut bodies = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let page = w
            .get(&format!(
                "/api/v1/sessions/{sid}/chats/{chat}/messages?limit=200{q}"
            ))
            .await;
        for m in page["data"].as_array().unwrap() {
            assert!(bodies.insert(m["body"].as_str().unwrap().to_owned()), "{m}");
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(bodies.len(), N);
    // And one `message` event each.
    let mut events = 0;
    let mut from = after;
    loop {
        let v = w
            .get(&format!(
                "/api/v1/events?after={from}&event=message&limit=1000"
            ))
            .await;
        let data = v["data"].as_array().unwrap();
        if data.is_empty() {
            break;
        }
        events += data.len();
        from = v["next"].as_i64().unwrap();
    }
    assert_eq!(events, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_can_be_downloaded_through_the_gateway_both_ways() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let w = World::new().await;
    let sid = w.paired_session("6281100000071", "Media").await;
    let (pjid, _) = w.person("6281200000072", "Gita").await;
    let media = |id: String| {
        let w = &w;
        let sid = sid.clone();
        async move {
            let gw = w.gw.as_ref().unwrap();
            let r = w
                .http
                .get(format!(
                    "{}/api/v1/sessions/{sid}/messages/{id}/media",
                    gw.base
                ))
                .bearer_auth(&gw.key)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let ctype = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, ctype, r.bytes().await.unwrap().to_vec())
        }
    };
    // From the person: a photo, fetched from the (simulated) media servers by the gateway.
    let photo: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (s, v) = w
        .sim_post(
            "/control/people/6281200000072/send",
            json!({"to": "6281100000071", "image": {"base64": b64.encode(&photo), "mimetype": "image/jpeg", "caption": "look"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (status, ctype, bytes) = eventually("the photo is stored and fetchable", || async {
        let got = media(id.clone()).await;
        (got.0 != 404).then_some(got)
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(ctype.as_deref(), Some("image/jpeg"));
    assert!(bytes == photo, "the photo arrives byte for byte");
    // Forwarded back to the person by reference: the same file arrives, nothing re-uploaded.
    let (s, fwd) = w
        .post(
            &format!("/api/v1/sessions/{sid}/messages/{id}/forward"),
            json!({"to": "6281200000072"}),
        )
        .await;
    assert_eq!(s, 201, "{fwd}");
    assert_eq!(
        (fwd["type"].as_str(), fwd["media"]["size"].as_i64()),
        (Some("image"), Some(photo.len() as i64)),
        "{fwd}"
    );
    let fwd_id = fwd["waMessageId"].as_str().unwrap().to_owned();
    let got = eventually("the forwarded photo arrives", || async {
        let v = w.sim_get("/control/people/6281200000072/received").await;
        v.as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == fwd_id.as_str())
            .cloned()
    })
    .await;
    assert_eq!(got["type"], "image", "{got}");
    assert!(
        b64.decode(got["media"]["base64"].as_str().unwrap())
            .unwrap()
            == photo,
        "the forwarded photo is the same file"
    );

    // From the gateway: the uploaded file can be fetched again too.
    let doc = b"a small document".to_vec();
    let (s, sent) = w
        .post(
            &format!("/api/v1/sessions/{sid}/messages"),
            json!({"to": pjid, "type": "document", "media": {"data": b64.encode(&doc), "mimetype": "text/plain", "filename": "note.txt"}}),
        )
        .await;
    assert_eq!(s, 201, "{sent}");
    let (status, ctype, bytes) = media(sent["waMessageId"].as_str().unwrap().to_owned()).await;
    assert_eq!((status, ctype.as_deref()), (200, Some("text/plain")));
    assert_eq!(bytes, doc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_store_keeps_attachments_until_revoked_or_the_session_is_deleted() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let w = World::new().await;
    let sid = w.paired_session("6281100000081", "Keeper").await;
    w.person("6281200000082", "Hana").await;
    let (s, v) = w
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/sessions/{sid}"),
            Some(json!({"downloadMedia": true})),
        )
        .await;
    assert_eq!((s, v["downloadMedia"].as_bool()), (200, Some(true)), "{v}");
    let photo: Vec<u8> = (0..30_000u32).map(|i| (i * 13 % 241) as u8).collect();
    let (_, sent) = w
        .sim_post(
            "/control/people/6281200000082/send",
            json!({"to": "6281100000081", "image": {"base64": b64.encode(&photo), "mimetype": "image/jpeg"}}),
        )
        .await;
    let id = sent["id"].as_str().unwrap().to_owned();
    let m = eventually("the photo is in the media store", || async {
        let (s, m) = w
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/sessions/{sid}/messages/{id}"),
                None,
            )
            .await;
        (s == 200 && m["media"]["file"].is_string()).then_some(m)
    })
    .await;
    let file = w
        .dir
        .path()
        .join("data/media")
        .join(m["media"]["file"].as_str().unwrap());
    assert_eq!(std::fs::read(&file).unwrap(), photo);
    // Without a connection the copy is still served.
    let (s, v) = w
        .post(&format!("/api/v1/sessions/{sid}:stop"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let gw = w.gw.as_ref().unwrap();
    let r = w
        .http
        .get(format!(
            "{}/api/v1/sessions/{sid}/messages/{id}/media",
            gw.base
        ))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().await.unwrap().to_vec() == photo);
    let (s, v) = w
        .post(&format!("/api/v1/sessions/{sid}:start"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    w.wait_status(&sid, "working").await;
    // A copy cut short (as a crash before it reached the disk could leave it) is never served:
    // the attachment comes whole from WhatsApp instead.
    std::fs::write(&file, &photo[..1000]).unwrap();
    let r = w
        .http
        .get(format!(
            "{}/api/v1/sessions/{sid}/messages/{id}/media",
            gw.base
        ))
        .bearer_auth(&gw.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.bytes().await.unwrap().to_vec() == photo,
        "the whole photo"
    );
    // Revoked by the sender: the copy is gone with the content.
    let (s, v) = w
        .sim_post(
            "/control/people/6281200000082/send",
            json!({"to": "6281100000081", "revoke": id}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    eventually("the revoke removes the copy", || async {
        (!file.exists()).then_some(())
    })
    .await;
    // A second photo, then the session is deleted: its media folder goes with it.
    w.sim_post(
        "/control/people/6281200000082/send",
        json!({"to": "6281100000081", "image": {"base64": b64.encode(&photo[..1000]), "mimetype": "image/jpeg"}}),
    )
    .await;
    let folder = w.dir.path().join("data/media").join(&sid);
    eventually("the second photo is kept", || async {
        std::fs::read_dir(&folder)
            .ok()
            .map(|d| d.count())
            .filter(|n| *n > 0)
            .map(|_| ())
    })
    .await;
    let (s, v) = w
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/sessions/{sid}"),
            None,
        )
        .await;
    assert!(s == 200 || s == 204, "{s} {v}");
    assert!(!folder.exists(), "the session's media folder is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_kind_reaches_the_person_as_sent() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let w = World::new().await;
    let sid = w.paired_session("6281100000091", "Kinds").await;
    let (pjid, _) = w.person("6281200000092", "Intan").await;
    let file =
        |seed: u32, n: u32| -> Vec<u8> { (0..n).map(|i| ((i * seed) % 251) as u8).collect() };
    let (video, voice, sticker, doc) = (
        file(3, 50_000),
        file(5, 9_000),
        file(7, 4_000),
        file(11, 12_000),
    );
    let vcard = "BEGIN:VCARD\nVERSION:3.0\nFN:Joko\nTEL;type=CELL;waid=6281300000001:+62 813 0000 0001\nEND:VCARD";
    let sends = [
        json!({"to": pjid, "type": "video", "caption": "clip", "media": {"data": b64.encode(&video), "mimetype": "video/mp4"}}),
        json!({"to": pjid, "type": "audio", "voice": true, "media": {"data": b64.encode(&voice), "mimetype": "audio/ogg; codecs=opus"}}),
        json!({"to": pjid, "type": "sticker", "media": {"data": b64.encode(&sticker), "mimetype": "image/webp"}}),
        json!({"to": pjid, "type": "document", "caption": "the offer", "media": {"data": b64.encode(&doc), "mimetype": "application/pdf", "filename": "offer.pdf"}}),
        json!({"to": pjid, "type": "location", "location": {"latitude": -6.1754, "longitude": 106.8272, "name": "Monas"}}),
        json!({"to": pjid, "type": "contact", "contact": {"displayName": "Joko", "vcard": vcard}}),
    ];
    let mut ids = Vec::new();
    for body in sends {
        let (s, v) = w
            .post(&format!("/api/v1/sessions/{sid}/messages"), body)
            .await;
        assert_eq!(s, 201, "{v}");
        assert!(
            ["sent", "delivered", "read"].contains(&v["status"].as_str().unwrap()),
            "{v}"
        );
        ids.push(v["waMessageId"].as_str().unwrap().to_owned());
    }
    let inbox = eventually("all six arrive", || async {
        let v = w.sim_get("/control/people/6281200000092/received").await;
        let got: Vec<serde_json::Value> = ids
            .iter()
            .filter_map(|id| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["id"] == id.as_str())
                    .cloned()
            })
            .collect();
        (got.len() == ids.len()).then_some(got)
    })
    .await;
    let bytes = |m: &serde_json::Value| {
        b64.decode(m["media"]["base64"].as_str().unwrap_or_default())
            .unwrap()
    };
    assert_eq!(
        (inbox[0]["type"].as_str(), inbox[0]["caption"].as_str()),
        (Some("video"), Some("clip")),
        "{}",
        inbox[0]
    );
    assert!(bytes(&inbox[0]) == video, "the video arrives byte for byte");
    assert_eq!(
        (inbox[1]["type"].as_str(), inbox[1]["voice"].as_bool()),
        (Some("audio"), Some(true)),
        "{}",
        inbox[1]
    );
    assert!(bytes(&inbox[1]) == voice);
    assert_eq!(inbox[2]["type"], "sticker", "{}", inbox[2]);
    assert!(bytes(&inbox[2]) == sticker);
    assert_eq!(
        (
            inbox[3]["type"].as_str(),
            inbox[3]["fileName"].as_str(),
            inbox[3]["caption"].as_str()
        ),
        (Some("document"), Some("offer.pdf"), Some("the offer")),
        "{}",
        inbox[3]
    );
    assert!(bytes(&inbox[3]) == doc);
    assert_eq!(inbox[4]["type"], "location", "{}", inbox[4]);
    assert_eq!(
        (
            inbox[4]["location"]["latitude"].as_f64(),
            inbox[4]["location"]["longitude"].as_f64(),
            inbox[4]["location"]["name"].as_str()
        ),
        (Some(-6.1754), Some(106.8272), Some("Monas"))
    );
    assert_eq!(
        (
            inbox[5]["type"].as_str(),
            inbox[5]["contact"]["displayName"].as_str(),
            inbox[5]["contact"]["vcard"].as_str()
        ),
        (Some("contact"), Some("Joko"), Some(vcard)),
        "{}",
        inbox[5]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_sends_wait_retries_are_idempotent_and_rates_hold() {
    let w = World::new().await;
    let sid = w.paired_session("6281100000095", "Rules").await;
    let (pjid, _) = w.person("6281200000096", "Joko").await;
    let send = |q: &'static str, key: Option<&'static str>, text: &'static str| {
        let w = &w;
        let (sid, pjid) = (sid.clone(), pjid.clone());
        async move {
            let gw = w.gw.as_ref().unwrap();
            let mut r = w
                .http
                .post(format!("{}/api/v1/sessions/{sid}/messages{q}", gw.base))
                .bearer_auth(&gw.key)
                .json(&json!({"to": pjid, "type": "text", "text": text}));
            if let Some(k) = key {
                r = r.header("Idempotency-Key", k);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let inbox_count = |text: &'static str| {
        let w = &w;
        async move {
            let v = w.sim_get("/control/people/6281200000096/received").await;
            v.as_array()
                .unwrap()
                .iter()
                .filter(|m| m["text"] == text)
                .count()
        }
    };
    // Stopped: a synchronous send is 501, an asynchronous one waits and goes out after :start.
    let (s, v) = w
        .post(&format!("/api/v1/sessions/{sid}:stop"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _, v) = send("", None, "now").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (501, Some("not_implemented")),
        "{v}"
    );
    let (s, _, queued) = send("?async=true", None, "later").await;
    assert_eq!(
        (s, queued["status"].as_str()),
        (202, Some("pending")),
        "{queued}"
    );
    let (s, v) = w
        .post(&format!("/api/v1/sessions/{sid}:start"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    eventually("the queued message goes out", || async {
        (inbox_count("later").await == 1).then_some(())
    })
    .await;
    // The same Idempotency-Key twice: one message, the first answer again.
    let (s1, _, first) = send("", Some("order-42"), "once").await;
    let (s2, _, again) = send("", Some("order-42"), "once").await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(first["waMessageId"], again["waMessageId"]);
    eventually("the message arrives", || async {
        (inbox_count("once").await == 1).then_some(())
    })
    .await;
    // Two messages per minute, both used: the next synchronous send is 429 with Retry-After.
    let (s, v) = w
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/sessions/{sid}"),
            Some(json!({"ratePerMin": 2})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, retry, v) = send("", None, "too many").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{v}"
    );
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    assert_eq!(inbox_count("once").await, 1, "still one copy");
    assert_eq!(inbox_count("too many").await, 0);
}
