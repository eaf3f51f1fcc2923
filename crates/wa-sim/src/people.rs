//! Simulated people: accounts whose phone the simulator drives, with their
//! own identity and Signal keys, reachable like any account. The control
//! API makes them send, read, type, and shows what they received.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use wacore_binary::builder::NodeBuilder;
use waproto::buffa::MessageField;
use waproto::whatsapp::{self as wa, message as wm};

use crate::control::{bad_request, not_found, valid_phone, ApiError};
use crate::nodes::{now_secs, split_jid, SERVER};
use crate::state::Sim;

#[derive(Deserialize)]
pub struct NewPerson {
    pub phone: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// Creates (or returns) the person `phone` with push name `name`.
pub fn create_person(sim: &Sim, phone: &str, name: Option<&str>) -> Value {
    let mut w = sim.world();
    let a = w.account_mut(phone);
    if a.devices.is_empty() {
        a.person = true;
    }
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        a.push_name = n.to_string();
    }
    let lid = a.lid.clone();
    json!({"phone": phone, "jid": format!("{phone}@{SERVER}"), "lid": format!("{lid}@lid")})
}

/// `POST /control/people {"phone", "name"}` → 201 `{"phone", "jid", "lid"}`.
pub async fn create(
    State(sim): State<Sim>,
    Json(req): Json<NewPerson>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    valid_phone(&req.phone)?;
    Ok((
        StatusCode::CREATED,
        Json(create_person(&sim, &req.phone, req.name.as_deref())),
    ))
}

#[derive(Deserialize, Default, Clone)]
pub struct MediaBody {
    pub base64: String,
    #[serde(default)]
    pub mimetype: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default, rename = "fileName")]
    pub file_name: Option<String>,
}

#[derive(Deserialize, Clone)]
pub struct LocationBody {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Deserialize, Clone)]
pub struct ReactBody {
    pub id: String,
    pub emoji: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    pub to: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub image: Option<MediaBody>,
    #[serde(default)]
    pub document: Option<MediaBody>,
    #[serde(default)]
    pub location: Option<LocationBody>,
    #[serde(default, rename = "reactTo")]
    pub react_to: Option<ReactBody>,
    #[serde(default, rename = "replyTo")]
    pub reply_to: Option<String>,
    #[serde(default, rename = "editOf")]
    pub edit_of: Option<String>,
    #[serde(default)]
    pub revoke: Option<String>,
}

/// `to` as a chat JID: digits become a phone JID.
pub fn chat_jid(to: &str) -> String {
    if to.contains('@') {
        to.to_string()
    } else {
        format!("{}@{SERVER}", to.trim_start_matches('+'))
    }
}

/// Who sent message `id` as `phone` knows it: `Some(sender JID)` when it
/// was received, `None` when `phone` sent it (or it is unknown).
fn author_of(sim: &Sim, phone: &str, id: &str) -> Option<String> {
    let w = sim.world();
    w.accounts.get(phone).and_then(|a| {
        a.received
            .iter()
            .rev()
            .find(|m| m["id"] == id && m["from_me"] != true)
            .and_then(|m| m["from"].as_str().map(str::to_string))
    })
}

fn key_for(sim: &Sim, phone: &str, chat: &str, id: &str) -> wa::MessageKey {
    let author = author_of(sim, phone, id);
    wa::MessageKey {
        remote_jid: Some(chat.to_string()),
        from_me: Some(author.is_none()),
        id: Some(id.to_string()),
        participant: author.filter(|_| split_jid(chat).2 == "g.us"),
    }
}

/// Builds the message a send request describes, with its `edit` attribute.
pub async fn build_message(
    sim: &Sim,
    phone: &str,
    req: &SendBody,
) -> Result<(wa::Message, Option<&'static str>), ApiError> {
    let chat = chat_jid(&req.to);
    let context = |sim: &Sim| -> MessageField<wa::ContextInfo> {
        match &req.reply_to {
            Some(id) => {
                let participant =
                    author_of(sim, phone, id).unwrap_or_else(|| format!("{phone}@{SERVER}"));
                MessageField::some(wa::ContextInfo {
                    stanza_id: Some(id.clone()),
                    participant: Some(participant),
                    quoted_message: MessageField::some(wa::Message {
                        conversation: Some(String::new()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }
            None => MessageField::none(),
        }
    };
    if let Some(id) = &req.revoke {
        return Ok((
            wa::Message {
                protocol_message: MessageField::some(wm::ProtocolMessage {
                    r#type: Some(wm::protocol_message::Type::REVOKE),
                    key: MessageField::some(key_for(sim, phone, &chat, id)),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Some("7"),
        ));
    }
    if let Some(id) = &req.edit_of {
        let text = req
            .text
            .clone()
            .ok_or_else(|| bad_request("editOf needs the new text"))?;
        return Ok((
            wa::Message {
                protocol_message: MessageField::some(wm::ProtocolMessage {
                    r#type: Some(wm::protocol_message::Type::MESSAGE_EDIT),
                    key: MessageField::some(key_for(sim, phone, &chat, id)),
                    edited_message: MessageField::some(wa::Message {
                        conversation: Some(text),
                        ..Default::default()
                    }),
                    timestamp_ms: Some(crate::state::now_ms() as i64),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Some("1"),
        ));
    }
    if let Some(r) = &req.react_to {
        return Ok((
            wa::Message {
                reaction_message: MessageField::some(wm::ReactionMessage {
                    key: MessageField::some(key_for(sim, phone, &chat, &r.id)),
                    text: Some(r.emoji.clone()),
                    sender_timestamp_ms: Some(crate::state::now_ms() as i64),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None,
        ));
    }
    if let Some(l) = &req.location {
        return Ok((
            wa::Message {
                location_message: MessageField::some(wm::LocationMessage {
                    degrees_latitude: Some(l.latitude),
                    degrees_longitude: Some(l.longitude),
                    name: l.name.clone(),
                    address: l.address.clone(),
                    context_info: context(sim),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None,
        ));
    }
    if let Some(m) = &req.image {
        let mut img = crate::media::image_message(sim, m).map_err(bad_request)?;
        img.context_info = context(sim);
        return Ok((
            wa::Message {
                image_message: MessageField::some(img),
                ..Default::default()
            },
            None,
        ));
    }
    if let Some(m) = &req.document {
        let mut doc = crate::media::document_message(sim, m).map_err(bad_request)?;
        doc.context_info = context(sim);
        return Ok((
            wa::Message {
                document_message: MessageField::some(doc),
                ..Default::default()
            },
            None,
        ));
    }
    let text = req.text.clone().ok_or_else(|| {
        bad_request(
            "nothing to send: give text, image, document, location, reactTo, editOf or revoke",
        )
    })?;
    if req.reply_to.is_some() {
        return Ok((
            wa::Message {
                extended_text_message: MessageField::some(wm::ExtendedTextMessage {
                    text: Some(text),
                    context_info: context(sim),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None,
        ));
    }
    Ok((
        wa::Message {
            conversation: Some(text),
            ..Default::default()
        },
        None,
    ))
}

fn require_account(sim: &Sim, phone: &str) -> Result<(), ApiError> {
    if sim.world().accounts.contains_key(phone) {
        Ok(())
    } else {
        Err(not_found(format!("no person or account {phone}")))
    }
}

/// Sends as `phone`: `{"id", "timestamp"}`.
pub async fn send_as_person(sim: &Sim, phone: &str, req: &SendBody) -> Result<Value, ApiError> {
    require_account(sim, phone)?;
    let (message, edit) = build_message(sim, phone, req).await?;
    let (id, t) = crate::phone::send_as(sim, phone, &chat_jid(&req.to), message, edit)
        .await
        .map_err(|e| bad_request(format!("{e:#}")))?;
    Ok(json!({"id": id, "timestamp": t}))
}

/// `POST /control/people/{phone}/send`
pub async fn send(
    State(sim): State<Sim>,
    Path(phone): Path<String>,
    Json(req): Json<SendBody>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(send_as_person(&sim, &phone, &req).await?))
}

#[derive(Deserialize)]
pub struct BurstBody {
    pub to: String,
    pub count: u32,
    #[serde(default)]
    pub prefix: Option<String>,
}

/// `POST /control/people/{phone}/burst {"to", "count", "prefix"?}`: sends `count` texts
/// (`<prefix><n>`) one after another, as fast as the person's device can, for load tests.
/// Answers `{"sent", "ms"}` once all were routed.
pub async fn burst(
    State(sim): State<Sim>,
    Path(phone): Path<String>,
    Json(req): Json<BurstBody>,
) -> Result<Json<Value>, ApiError> {
    require_account(&sim, &phone)?;
    let started = std::time::Instant::now();
    let prefix = req.prefix.unwrap_or_else(|| "burst ".into());
    for i in 0..req.count {
        let body = SendBody {
            to: req.to.clone(),
            text: Some(format!("{prefix}{i}")),
            ..Default::default()
        };
        send_as_person(&sim, &phone, &body).await?;
    }
    Ok(Json(
        json!({"sent": req.count, "ms": started.elapsed().as_millis() as u64}),
    ))
}

/// `GET /control/people/{phone}/received`: decrypted, oldest first.
pub async fn received(
    State(sim): State<Sim>,
    Path(phone): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let w = sim.world();
    let a = w
        .accounts
        .get(&phone)
        .ok_or_else(|| not_found(format!("no person or account {phone}")))?;
    Ok(Json(Value::Array(a.received.clone())))
}

/// `GET /control/people/{phone}/receipts`: receipts for what it sent.
pub async fn receipts(
    State(sim): State<Sim>,
    Path(phone): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let w = sim.world();
    let a = w
        .accounts
        .get(&phone)
        .ok_or_else(|| not_found(format!("no person or account {phone}")))?;
    Ok(Json(Value::Array(a.receipts.clone())))
}

#[derive(Deserialize)]
pub struct ReadBody {
    pub chat: String,
    pub ids: Vec<String>,
}

/// `POST /control/people/{phone}/read {"chat", "ids"}`: read receipts.
pub async fn read(
    State(sim): State<Sim>,
    Path(phone): Path<String>,
    Json(req): Json<ReadBody>,
) -> Result<Json<Value>, ApiError> {
    require_account(&sim, &phone)?;
    if req.ids.is_empty() {
        return Err(bad_request("ids is empty"));
    }
    let chat = chat_jid(&req.chat);
    let is_group = split_jid(&chat).2 == "g.us";
    // One receipt per author (groups), all ids of that author in a list.
    let mut by_author: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for id in &req.ids {
        let author = if is_group {
            author_of(&sim, &phone, id)
        } else {
            None
        };
        match by_author.iter_mut().find(|(a, _)| *a == author) {
            Some((_, ids)) => ids.push(id.clone()),
            None => by_author.push((author, vec![id.clone()])),
        }
    }
    let mut w = sim.world();
    for (author, ids) in by_author {
        let mut b = NodeBuilder::new("receipt")
            .attr("to", chat.clone())
            .attr("id", ids[0].clone())
            .attr("type", "read")
            .attr("t", now_secs().to_string());
        if let Some(a) = author {
            b = b.attr("participant", a);
        }
        if ids.len() > 1 {
            b = b.children([NodeBuilder::new("list")
                .children(
                    ids[1..]
                        .iter()
                        .map(|i| NodeBuilder::new("item").attr("id", i.clone()).build()),
                )
                .build()]);
        }
        crate::route::route_receipt(&mut w, (&phone, 0), &b.build());
    }
    Ok(Json(json!({"read": req.ids.len()})))
}

#[derive(Deserialize)]
pub struct ChatStateBody {
    pub to: String,
    pub state: String,
}

/// `POST /control/people/{phone}/chatstate {"to", "state"}`.
pub async fn chatstate(
    State(sim): State<Sim>,
    Path(phone): Path<String>,
    Json(req): Json<ChatStateBody>,
) -> Result<Json<Value>, ApiError> {
    require_account(&sim, &phone)?;
    let child = match req.state.as_str() {
        "composing" => NodeBuilder::new("composing").build(),
        "recording" => NodeBuilder::new("composing").attr("media", "audio").build(),
        "paused" => NodeBuilder::new("paused").build(),
        other => return Err(bad_request(format!("unknown state {other:?}"))),
    };
    let node = NodeBuilder::new("chatstate")
        .attr("to", chat_jid(&req.to))
        .children([child])
        .build();
    let mut w = sim.world();
    crate::iq::route_chatstate(&mut w, &phone, &node);
    let delivered = w.chatstates.last().map_or(0, |c| c.delivered_to);
    Ok(Json(json!({"delivered_to": delivered})))
}

#[derive(Deserialize)]
pub struct NewGroup {
    pub creator: String,
    pub subject: String,
    #[serde(default)]
    pub participants: Vec<String>,
    /// `pn` (default) or `lid`.
    #[serde(default)]
    pub addressing: Option<String>,
}

/// `POST /control/groups {"creator", "subject", "participants", "addressing"}`
/// → 201 `{"jid"}`: a group created by a person or an account.
pub async fn create_group(
    State(sim): State<Sim>,
    Json(req): Json<NewGroup>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let phone_of = |s: &str| split_jid(&chat_jid(s)).0.to_string();
    let creator = phone_of(&req.creator);
    valid_phone(&creator)?;
    let lid_mode = match req.addressing.as_deref() {
        None | Some("pn") => false,
        Some("lid") => true,
        Some(other) => {
            return Err(bad_request(format!(
                "addressing must be pn or lid, not {other:?}"
            )))
        }
    };
    let mut w = sim.world();
    if !w.accounts.contains_key(&creator) {
        return Err(not_found(format!("no person or account {creator}")));
    }
    let mut members = Vec::new();
    for p in &req.participants {
        let jid = chat_jid(p);
        let phone = w
            .resolve_jid(&jid)
            .map(|(p, _, _)| p)
            .ok_or_else(|| bad_request(format!("unknown participant {p}")))?;
        valid_phone(&phone)?;
        if !w.directory.contains_key(&phone) {
            return Err(bad_request(format!("{phone} is not on WhatsApp")));
        }
        members.push(phone);
    }
    let g = crate::groups::create(
        &mut w,
        &creator,
        None,
        &req.subject,
        &members,
        lid_mode,
        None,
    );
    Ok((StatusCode::CREATED, Json(json!({"jid": g.jid()}))))
}
