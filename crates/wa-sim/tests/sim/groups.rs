//! Groups: created by a client or over the control API; metadata, member
//! changes, subject and description as notifications; group messages with
//! sender keys to every member device; LID addressing mode.

use crate::common::*;
use serde_json::json;
use whatsapp_rust::features::GroupCreateOptions;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::Jid;

const ALICE: &str = "15557000001";
const BOB: &str = "15557000002";
const PAT: &str = "15557000099";
const QUINN: &str = "15557000098";

fn group_update(e: &Event, group: &Jid, what: &str) -> bool {
    match e {
        Event::GroupUpdate(u) => {
            u.group_jid == *group && format!("{:?}", u.action).to_lowercase().starts_with(what)
        }
        _ => false,
    }
}

/// A client creates a group and manages it; the other member's client gets
/// each change as a `GroupUpdate`; metadata and participating groups agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_creates_and_manages_a_group() {
    use whatsapp_rust::features::{
        GroupDescription, GroupParticipantOptions, GroupSubject, PreviousDescription,
    };
    let sim = sim().await;
    person(&sim, PAT, "Pat").await;
    person(&sim, QUINN, "Quinn").await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let bob = paired_client(&sim, BOB, "Bob").await;
    let groups = alice.client.groups();
    let created = groups
        .create_group(GroupCreateOptions {
            subject: "Lunch".into(),
            participants: vec![
                GroupParticipantOptions::new(Jid::pn(BOB)),
                GroupParticipantOptions::new(Jid::pn(PAT)),
            ],
            ..Default::default()
        })
        .await
        .expect("create");
    let gjid = created.metadata.id.clone();
    assert_eq!(created.metadata.subject, "Lunch");
    assert_eq!(created.metadata.participants.len(), 3);
    bob.events
        .wait("create notification", WAIT, |e| {
            group_update(e, &gjid, "create")
        })
        .await;

    let meta = bob
        .client
        .groups()
        .get_metadata(&gjid)
        .await
        .expect("metadata");
    assert_eq!(meta.subject, "Lunch");
    let creator = meta
        .participants
        .iter()
        .find(|p| p.jid.user == ALICE)
        .expect("alice is in");
    assert!(format!("{:?}", creator.participant_type)
        .to_lowercase()
        .contains("superadmin"));
    let mine = bob
        .client
        .groups()
        .get_participating()
        .await
        .expect("participating");
    assert!(mine.contains_key(&gjid), "{mine:?}");

    groups
        .add_participants(&gjid, &[Jid::pn(QUINN)])
        .await
        .expect("add");
    bob.events
        .wait("add", WAIT, |e| group_update(e, &gjid, "add"))
        .await;
    groups
        .promote_participants(&gjid, &[Jid::pn(BOB)])
        .await
        .expect("promote");
    bob.events
        .wait("promote", WAIT, |e| group_update(e, &gjid, "promote"))
        .await;
    groups
        .demote_participants(&gjid, &[Jid::pn(BOB)])
        .await
        .expect("demote");
    bob.events
        .wait("demote", WAIT, |e| group_update(e, &gjid, "demote"))
        .await;
    groups
        .remove_participants(&gjid, &[Jid::pn(QUINN)])
        .await
        .expect("remove");
    bob.events
        .wait("remove", WAIT, |e| group_update(e, &gjid, "remove"))
        .await;
    groups
        .set_subject(gjid.clone(), GroupSubject::new("Dinner").unwrap())
        .await
        .expect("subject");
    bob.events
        .wait("subject", WAIT, |e| group_update(e, &gjid, "subject"))
        .await;
    groups
        .set_description(
            gjid.clone(),
            Some(GroupDescription::new("at eight").unwrap()),
            PreviousDescription::Resolve,
        )
        .await
        .expect("description");
    bob.events
        .wait("description", WAIT, |e| {
            group_update(e, &gjid, "description")
        })
        .await;
    let meta = alice.client.groups().get_metadata(&gjid).await.unwrap();
    assert_eq!(meta.subject, "Dinner");
    assert_eq!(meta.participants.len(), 3, "quinn added then removed");
    let link = groups
        .get_invite_link(gjid.clone(), false)
        .await
        .expect("invite");
    assert!(link.starts_with("https://chat.whatsapp.com/"), "{link}");
    assert_eq!(
        groups.get_invite_link(gjid.clone(), false).await.unwrap(),
        link,
        "stable"
    );
    assert_ne!(
        groups.get_invite_link(gjid.clone(), true).await.unwrap(),
        link,
        "reset"
    );
    // Bob is not an admin any more: he cannot add.
    assert!(bob
        .client
        .groups()
        .add_participants(&gjid, &[Jid::pn(QUINN)])
        .await
        .is_err());
    alice.shutdown().await;
    bob.shutdown().await;
}

/// A group made over the control API (by a person) carries messages with
/// sender keys: a client's text reaches the other client and the person;
/// the person's text reaches both clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_reach_every_member() {
    let sim = sim().await;
    person(&sim, PAT, "Pat").await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let bob = paired_client(&sim, BOB, "Bob").await;
    let (status, body) = post(
        &sim,
        "/control/groups",
        json!({"creator": PAT, "subject": "Team", "participants": [ALICE, BOB], "addressing": "pn"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let gjid: Jid = body["jid"].as_str().unwrap().parse().unwrap();
    alice
        .events
        .wait("create", WAIT, |e| group_update(e, &gjid, "create"))
        .await;

    alice
        .client
        .send_text(gjid.clone(), "hello team")
        .await
        .expect("send");
    let m = wait_text(&bob, "hello team").await;
    assert_eq!(m.info.source.chat, gjid);
    assert!(m.info.source.is_group);
    assert_eq!(m.info.source.sender.user, ALICE);
    let got = person_received(&sim, PAT, "group text", |m| m["text"] == "hello team").await;
    assert_eq!(got["chat"], gjid.to_string());
    assert_eq!(got["from"], format!("{ALICE}@s.whatsapp.net"));

    person_send(
        &sim,
        PAT,
        json!({"to": gjid.to_string(), "text": "pat here"}),
    )
    .await;
    for c in [&alice, &bob] {
        let m = wait_text(c, "pat here").await;
        assert_eq!(m.info.source.chat, gjid);
        assert_eq!(m.info.source.sender.user, PAT);
    }
    // A second message reuses the distributed sender key.
    bob.client.send_text(gjid.clone(), "bob too").await.unwrap();
    wait_text(&alice, "bob too").await;
    person_received(&sim, PAT, "bob's group text", |m| m["text"] == "bob too").await;
    alice.client.send_text(gjid.clone(), "again").await.unwrap();
    wait_text(&bob, "again").await;

    let (status, _) = post(
        &sim,
        "/control/groups",
        json!({"creator": "15557000097", "subject": "x"}),
    )
    .await;
    assert_eq!(status, 404, "unknown creator");
    alice.shutdown().await;
    bob.shutdown().await;
}

/// In LID addressing mode members see each other by LID: metadata lists
/// LIDs (a phone number only for oneself) and messages name the sender by
/// LID without the phone number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lid_group_members_see_each_other_by_lid() {
    let sim = sim().await;
    person(&sim, PAT, "Pat").await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let bob = paired_client(&sim, BOB, "Bob").await;
    let (status, body) = post(
        &sim,
        "/control/groups",
        json!({"creator": PAT, "subject": "Private", "participants": [ALICE, BOB], "addressing": "lid"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let gjid: Jid = body["jid"].as_str().unwrap().parse().unwrap();
    let meta = bob
        .client
        .groups()
        .get_metadata(&gjid)
        .await
        .expect("metadata");
    assert_eq!(format!("{:?}", meta.addressing_mode).to_lowercase(), "lid");
    let alice_lid = sim.sim.world().directory[ALICE].clone();
    let bob_lid = sim.sim.world().directory[BOB].clone();
    for p in &meta.participants {
        assert_eq!(p.jid.server, whatsapp_rust::Server::Lid, "{p:?}");
        if p.jid.user == bob_lid {
            assert_eq!(
                p.phone_number.as_ref().map(|j| j.user.to_string()),
                Some(BOB.into())
            );
        } else {
            assert!(p.phone_number.is_none(), "others' numbers hidden: {p:?}");
        }
    }
    alice
        .client
        .send_text(gjid.clone(), "lid hello")
        .await
        .expect("send");
    let m = wait_text(&bob, "lid hello").await;
    assert_eq!(m.info.source.sender.user, alice_lid);
    assert_eq!(m.info.source.sender.server, whatsapp_rust::Server::Lid);
    assert!(
        m.info.source.sender_alt.is_none(),
        "no phone number for the sender"
    );
    person_received(&sim, PAT, "lid group text", |m| m["text"] == "lid hello").await;
    person_send(
        &sim,
        PAT,
        json!({"to": gjid.to_string(), "text": "pat by lid"}),
    )
    .await;
    wait_text(&alice, "pat by lid").await;
    alice.shutdown().await;
    bob.shutdown().await;
}
