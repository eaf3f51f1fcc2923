//! App state: chat settings done on the phone reach linked devices as
//! mutations; a linked device's own mutations are stored, passed to the
//! account's other devices and readable over the control API.

use crate::common::*;
use serde_json::json;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::Jid;

const ALICE: &str = "15556000001";
const BOB: &str = "15556000002";

fn bob() -> String {
    format!("{BOB}@s.whatsapp.net")
}

/// Archive, pin, mute, mark read and delete on the phone arrive as
/// `ArchiveUpdate`, `PinUpdate`, `MuteUpdate`, `MarkChatAsReadUpdate` and
/// `DeleteChatUpdate`, and the control API lists the resulting settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_chat_settings_reach_the_linked_device() {
    let sim = sim().await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let path = format!("/control/accounts/{ALICE}/chat-settings");
    let (status, body) = post(
        &sim,
        &path,
        json!({"chat": BOB, "archived": true, "pinned": true, "mutedUntil": 1900000000000i64, "read": false}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mutations"], 4);
    let on_bob = |j: &Jid| j.user == BOB;
    let ev = alice
        .events
        .wait(
            "ArchiveUpdate",
            WAIT,
            |e| matches!(e, Event::ArchiveUpdate(u) if on_bob(&u.jid)),
        )
        .await;
    let Event::ArchiveUpdate(u) = &*ev else {
        unreachable!()
    };
    assert_eq!(u.action.archived, Some(true));
    let ev = alice
        .events
        .wait(
            "PinUpdate",
            WAIT,
            |e| matches!(e, Event::PinUpdate(u) if on_bob(&u.jid)),
        )
        .await;
    let Event::PinUpdate(u) = &*ev else {
        unreachable!()
    };
    assert_eq!(u.action.pinned, Some(true));
    let ev = alice
        .events
        .wait(
            "MuteUpdate",
            WAIT,
            |e| matches!(e, Event::MuteUpdate(u) if on_bob(&u.jid)),
        )
        .await;
    let Event::MuteUpdate(u) = &*ev else {
        unreachable!()
    };
    assert_eq!(u.action.muted, Some(true));
    assert_eq!(u.action.mute_end_timestamp, Some(1900000000000));
    let ev = alice
        .events
        .wait(
            "MarkChatAsReadUpdate",
            WAIT,
            |e| matches!(e, Event::MarkChatAsReadUpdate(u) if on_bob(&u.jid)),
        )
        .await;
    let Event::MarkChatAsReadUpdate(u) = &*ev else {
        unreachable!()
    };
    assert_eq!(u.action.read, Some(false));

    let (status, _) = post(&sim, &path, json!({"chat": BOB, "deleted": true})).await;
    assert_eq!(status, 200);
    alice
        .events
        .wait(
            "DeleteChatUpdate",
            WAIT,
            |e| matches!(e, Event::DeleteChatUpdate(u) if on_bob(&u.jid)),
        )
        .await;

    let listed = get(&sim, &path).await;
    let chat = &listed["chats"][bob()];
    assert_eq!(chat["archived"], true, "{listed}");
    assert_eq!(chat["pinned"], true);
    assert_eq!(chat["mutedUntil"], 1900000000000i64);
    assert_eq!(chat["read"], false);
    assert_eq!(chat["deleted"], true);

    let (status, _) = post(&sim, &path, json!({"chat": BOB})).await;
    assert_eq!(status, 400, "nothing to change");
    let (status, _) = post(
        &sim,
        "/control/accounts/15556000999/chat-settings",
        json!({"chat": BOB, "pinned": true}),
    )
    .await;
    assert_eq!(status, 404);
    alice.shutdown().await;
}

/// A linked device archives and pins a chat: the server stores its patch,
/// the account's other device gets the updates, and the control API shows
/// the new settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_mutations_are_stored_and_passed_on() {
    let sim = sim().await;
    let first = paired_client(&sim, ALICE, "Alice").await;
    let second = paired_client(&sim, ALICE, "Alice").await;
    let chat = Jid::pn(BOB);
    first
        .client
        .chat_actions()
        .archive_chat(&chat, None)
        .await
        .expect("archive");
    // The other device must have applied the first patch before the second is
    // written: whatsapp-rust skips a server_sync notification while a sync of
    // the same collection is in flight, so a second patch that lands while the
    // first is being fetched is only picked up by a later notification.
    let ev = second
        .events
        .wait(
            "ArchiveUpdate on the other device",
            WAIT,
            |e| matches!(e, Event::ArchiveUpdate(u) if u.jid.user == BOB),
        )
        .await;
    let Event::ArchiveUpdate(u) = &*ev else {
        unreachable!()
    };
    assert_eq!(u.action.archived, Some(true));
    first
        .client
        .chat_actions()
        .pin_chat(&chat)
        .await
        .expect("pin");
    second
        .events
        .wait("PinUpdate on the other device", WAIT, |e| {
            matches!(e, Event::PinUpdate(u) if u.jid.user == BOB && u.action.pinned == Some(true))
        })
        .await;
    let listed = wait_json(
        &sim,
        &format!("/control/accounts/{ALICE}/chat-settings"),
        "settings from the device",
        |v| v["chats"][bob()]["pinned"] == true,
    )
    .await;
    assert_eq!(listed["chats"][bob()]["archived"], true, "{listed}");
    // The phone's own later change builds on the device's patches.
    let (status, body) = post(
        &sim,
        &format!("/control/accounts/{ALICE}/chat-settings"),
        json!({"chat": BOB, "archived": false}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for c in [&first, &second] {
        c.events
            .wait("unarchive from the phone", WAIT, |e| {
                matches!(e, Event::ArchiveUpdate(u) if u.jid.user == BOB && u.action.archived == Some(false))
            })
            .await;
    }
    first.shutdown().await;
    second.shutdown().await;
}
