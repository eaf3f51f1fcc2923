//! Stanzas a logged-in (or pairing) client sends, and the answers.

use anyhow::Result;
use base64::prelude::*;
use rand::RngExt;
use tracing::{debug, info, warn};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::Node;

use crate::conn::{close, keep, Conn, HandleFlow};
use crate::nodes::{
    self, attr, bytes, child, children, iq_error, iq_result, jid_server, jid_user, now_secs, text,
    SERVER,
};
use crate::state::{ChatStateRecord, DeviceInfo, Outbound, PresenceRecord};

pub fn random_id() -> String {
    let n: u64 = rand::rng().random();
    format!("{n:016X}")
}

/// A QR ref in WhatsApp's shape (`2@` + base64).
pub fn random_ref() -> String {
    let mut b = [0u8; 48];
    rand::rng().fill(&mut b[..]);
    format!("2@{}", BASE64_STANDARD.encode(b))
}

pub(crate) async fn handle(c: &mut Conn, node: Node) -> Result<HandleFlow> {
    match node.tag.as_ref() {
        "iq" => handle_iq(c, node).await,
        "presence" => {
            presence(c, &node);
            Ok(keep())
        }
        "chatstate" => {
            if let Some((phone, _)) = c.device.clone() {
                route_chatstate(&mut c.sim.world(), &phone, &node);
            }
            Ok(keep())
        }
        "ack" => {
            if let (Some((phone, dev)), Some(id)) = (c.device.clone(), attr(&node, "id")) {
                crate::route::acked(&mut c.sim.world(), &phone, dev, &id);
            }
            Ok(keep())
        }
        // Unified-session beacons and offline batch requests need no answer
        // (the whole offline queue is sent at once).
        "ib" => Ok(keep()),
        "message" => {
            let Some((phone, dev)) = c.device.clone() else {
                return Ok(keep());
            };
            let ack = crate::route::route_message(&mut c.sim.world(), (&phone, dev), &node).ack;
            c.send_node(&ack).await?;
            Ok(keep())
        }
        // Receipts are acknowledged, then routed to the original sender.
        "receipt" => {
            let mut b = NodeBuilder::new("ack")
                .attr("class", "receipt")
                .attr("id", attr(&node, "id").unwrap_or_default());
            if let Some(to) = attr(&node, "to") {
                b = b.attr("from", to);
            }
            if let Some(t) = attr(&node, "type") {
                b = b.attr("type", t);
            }
            c.send_node(&b.build()).await?;
            if let Some((phone, dev)) = c.device.clone() {
                crate::route::route_receipt(&mut c.sim.world(), (&phone, dev), &node);
            }
            Ok(keep())
        }
        _ => {
            let who = c.device.as_ref().map(|(p, d)| format!("{p}:{d}"));
            c.sim.world().record_unhandled(who, nodes::render(&node));
            Ok(keep())
        }
    }
}

async fn handle_iq(c: &mut Conn, node: Node) -> Result<HandleFlow> {
    let id = attr(&node, "id").unwrap_or_default();
    let ty = attr(&node, "type").unwrap_or_default();
    if ty == "result" || ty == "error" {
        return iq_response(c, &id, &node).await;
    }
    let xmlns = attr(&node, "xmlns").unwrap_or_default();
    let first = children(&node).first();
    let first_tag = first.map(|n| n.tag.to_string()).unwrap_or_default();

    let reply = match (xmlns.as_str(), first_tag.as_str()) {
        ("w:p", "ping") | ("w:p", "") => {
            if c.device.is_some() && ignores_pings(c) {
                debug!(conn = c.id, "fault: not answering ping");
                return Ok(keep());
            }
            if let Some(e) = c.sim.world().conns.get_mut(&c.id) {
                e.pings += 1;
            }
            Some(iq_result(&id, vec![]))
        }
        ("passive", "active") | ("passive", "passive") => {
            c.send_node(&iq_result(&id, vec![])).await?;
            if first_tag == "active" {
                // Everything queued while the device was away, then the end
                // marker with the count the client waits for.
                let items = match c.device.clone() {
                    Some((phone, dev)) => {
                        crate::route::take_offline(&mut c.sim.world(), &phone, dev)
                    }
                    None => Vec::new(),
                };
                if !items.is_empty() {
                    c.send_node(&crate::route::offline_preview(&items)).await?;
                }
                let n = items.len();
                for item in items {
                    c.send_node(&item).await?;
                }
                c.send_node(&crate::route::offline_end(n)).await?;
            }
            None
        }
        ("encrypt", "count") => {
            let n = own_device(c, |d| d.prekeys).unwrap_or(c.sim.config().initial_prekey_count);
            Some(iq_result(
                &id,
                vec![NodeBuilder::new("count")
                    .attr("value", n.to_string())
                    .build()],
            ))
        }
        ("encrypt", "digest") => Some(iq_error(&id, 503, "service-unavailable")),
        ("encrypt", _) if child(&node, "list").is_some() => {
            let uploaded = store_upload(c, &node);
            debug!(conn = c.id, "pre-key upload: {uploaded} keys");
            c.send_node(&iq_result(&id, vec![])).await?;
            share_app_state_key(c).await?;
            None
        }
        ("encrypt", "key") => Some(fetch_prekeys(c, &id, first.expect("first child exists"))),
        ("encrypt", "rotate") | ("encrypt", "skey") => Some(iq_result(&id, vec![])),
        ("w", "props") => Some(iq_result(
            &id,
            vec![NodeBuilder::new("props")
                .attr("protocol", "2")
                .attr("hash", "sim")
                .build()],
        )),
        ("abt", _) => Some(iq_result(
            &id,
            vec![NodeBuilder::new("props")
                .attr("protocol", "1")
                .attr("hash", "sim")
                .build()],
        )),
        ("w:g2", _) if c.device.is_some() => {
            let (phone, dev) = c.device.clone().expect("checked");
            Some(crate::groups::handle_iq(
                &mut c.sim.world(),
                &phone,
                dev,
                &id,
                &node,
            ))
        }
        ("w:m", "media_conn") => Some(crate::media::media_conn(&c.sim, &id)),
        ("blocklist", _) => Some(iq_result(&id, vec![NodeBuilder::new("list").build()])),
        ("privacy", "privacy") => Some(iq_result(&id, vec![privacy_settings()])),
        // Trusted-contact tokens the client issues after messaging someone.
        ("privacy", "tokens") => Some(iq_result(&id, vec![])),
        ("usync", "usync") => Some(usync(c, &id, first.expect("first child exists"))),
        ("w:sync:app:state", "sync") => Some(match c.device.clone() {
            Some((phone, dev)) => crate::appstate::sync(
                &mut c.sim.world(),
                &phone,
                dev,
                &id,
                first.expect("first child exists"),
            ),
            None => app_state(&id, first.expect("first child exists")),
        }),
        ("md", "remove-companion-device") => {
            remove_own_device(c);
            Some(iq_result(&id, vec![]))
        }
        ("md", "link_code_companion_reg") => {
            return crate::control::pair_code_request(c, &id, &node).await;
        }
        _ => None::<Node>.or_else(|| {
            let who = c.device.as_ref().map(|(p, d)| format!("{p}:{d}"));
            c.sim.world().record_unhandled(who, nodes::render(&node));
            Some(iq_error(&id, 501, "feature-not-implemented"))
        }),
    };
    if let Some(r) = reply {
        c.send_node(&r).await?;
    }
    Ok(keep())
}

fn ignores_pings(c: &Conn) -> bool {
    c.sim
        .world()
        .conns
        .get(&c.id)
        .is_some_and(|e| e.ignore_pings)
}

fn own_device<T>(c: &Conn, f: impl FnOnce(&DeviceInfo) -> T) -> Option<T> {
    let (phone, dev) = c.device.as_ref()?;
    let w = c.sim.world();
    w.accounts.get(phone)?.devices.get(dev).map(f)
}

fn own_device_mut(c: &Conn, f: impl FnOnce(&mut DeviceInfo)) {
    if let Some((phone, dev)) = c.device.as_ref() {
        let mut w = c.sim.world();
        if let Some(d) = w
            .accounts
            .get_mut(phone)
            .and_then(|a| a.devices.get_mut(dev))
        {
            f(d);
        }
    }
}

fn field(node: &Node, tag: &str) -> Vec<u8> {
    child(node, tag)
        .and_then(bytes)
        .unwrap_or_default()
        .to_vec()
}

/// Stores a pre-key upload on the device; returns how many one-time keys came.
fn store_upload(c: &Conn, node: &Node) -> u32 {
    let one_time: std::collections::VecDeque<(Vec<u8>, Vec<u8>)> = child(node, "list")
        .map(children)
        .unwrap_or(&[])
        .iter()
        .filter(|k| k.tag == "key")
        .map(|k| (field(k, "id"), field(k, "value")))
        .collect();
    let n = one_time.len() as u32;
    let signed = child(node, "skey")
        .map(|s| (field(s, "id"), field(s, "value"), field(s, "signature")))
        .unwrap_or_default();
    let registration = field(node, "registration");
    let identity = field(node, "identity");
    own_device_mut(c, move |d| {
        let keys = d.keys.get_or_insert_with(Default::default);
        keys.registration = registration;
        keys.identity = identity;
        if !signed.0.is_empty() {
            keys.signed = signed;
        }
        keys.one_time.extend(one_time);
        d.prekeys = keys.one_time.len() as u32;
    });
    n
}

/// `<key><user jid=../>..</key>`: one bundle per device, consuming one
/// one-time pre-key each; devices without keys (the simulated phone, device
/// 0, has none) are rejected with 404 as WhatsApp does for unknown devices.
fn fetch_prekeys(c: &Conn, id: &str, key: &Node) -> Node {
    let mut w = c.sim.world();
    let mut users = Vec::new();
    for u in children(key).iter().filter(|u| u.tag == "user") {
        let Some(jid) = attr(u, "jid") else { continue };
        let user = jid_user(&jid).to_string();
        let device: u16 = jid
            .split('@')
            .next()
            .and_then(|p| p.split_once(':'))
            .and_then(|(_, d)| d.parse().ok())
            .unwrap_or(0);
        let phone = if jid_server(&jid) == "lid" {
            w.phone_for_lid(&user)
        } else {
            Some(user.clone())
        };
        let account = phone.as_ref().and_then(|p| w.accounts.get_mut(p));
        let mut b = NodeBuilder::new("user").attr("jid", jid.clone());
        let (keys, signed_identity) = match account {
            Some(a) if device == 0 => (Some(&mut a.phone_keys), None),
            Some(a) => match a.devices.get_mut(&device) {
                Some(d) => (d.keys.as_mut(), Some(d.signed_identity.clone())),
                None => (None, None),
            },
            None => (None, None),
        };
        match keys {
            Some(keys) => {
                let mut kids = vec![
                    NodeBuilder::new("registration")
                        .bytes(keys.registration.clone())
                        .build(),
                    NodeBuilder::new("type").bytes(vec![5u8]).build(),
                    NodeBuilder::new("identity")
                        .bytes(keys.identity.clone())
                        .build(),
                    NodeBuilder::new("skey")
                        .children([
                            NodeBuilder::new("id").bytes(keys.signed.0.clone()).build(),
                            NodeBuilder::new("value")
                                .bytes(keys.signed.1.clone())
                                .build(),
                            NodeBuilder::new("signature")
                                .bytes(keys.signed.2.clone())
                                .build(),
                        ])
                        .build(),
                ];
                if let Some((kid, kval)) = keys.one_time.pop_front() {
                    kids.push(
                        NodeBuilder::new("key")
                            .children([
                                NodeBuilder::new("id").bytes(kid).build(),
                                NodeBuilder::new("value").bytes(kval).build(),
                            ])
                            .build(),
                    );
                }
                let left = keys.one_time.len() as u32;
                if let Some(si) = signed_identity.filter(|s| !s.is_empty()) {
                    kids.push(NodeBuilder::new("device-identity").bytes(si).build());
                }
                b = b.children(kids);
                if device != 0 {
                    if let Some(d) = phone
                        .as_ref()
                        .and_then(|p| w.accounts.get_mut(p))
                        .and_then(|a| a.devices.get_mut(&device))
                    {
                        d.prekeys = left;
                    }
                }
            }
            None => {
                b = b.children([NodeBuilder::new("error")
                    .attr("code", "404")
                    .attr("text", "item-not-found")
                    .build()]);
            }
        }
        users.push(b.build());
    }
    iq_result(id, vec![NodeBuilder::new("list").children(users).build()])
}

/// The phone shares the account's app-state key with a newly linked device
/// once its pre-keys are known (so the client need not wait for it).
async fn share_app_state_key(c: &mut Conn) -> Result<()> {
    let Some((phone, dev)) = c.device.clone() else {
        return Ok(());
    };
    let mut w = c.sim.world();
    let Some(account) = w.accounts.get_mut(&phone) else {
        return Ok(());
    };
    let tx = account.phone_tx.clone();
    if let Some(d) = account.devices.get_mut(&dev) {
        if !d.key_shared && d.keys.is_some() {
            d.key_shared = true;
            info!(
                conn = c.id,
                "phone shares the app-state key with {phone}:{dev}"
            );
            let _ = tx.send(crate::phone::PhoneInput::ShareKey { device: dev });
        }
    }
    Ok(())
}

fn remove_own_device(c: &Conn) {
    if let Some((phone, dev)) = c.device.as_ref() {
        let mut w = c.sim.world();
        if let Some(a) = w.accounts.get_mut(phone) {
            a.devices.remove(dev);
        }
        crate::route::device_notification(&mut w, phone, *dev, false);
        info!(conn = c.id, "device {phone}:{dev} logged out by the client");
    }
}

/// Answers to our own IQs: the pairing handshake's `pair-device-sign`.
async fn iq_response(c: &mut Conn, id: &str, node: &Node) -> Result<HandleFlow> {
    let pending = {
        let w = c.sim.world();
        w.pending_pairs
            .get(&c.id)
            .filter(|p| p.iq_id == id)
            .cloned()
    };
    let Some(p) = pending else {
        return Ok(keep());
    };
    let signed = child(node, "pair-device-sign")
        .and_then(|s| child(s, "device-identity"))
        .and_then(bytes)
        .map(<[u8]>::to_vec);
    let Some(signed) = signed else {
        warn!(
            conn = c.id,
            "pairing refused by the client: {}",
            nodes::render(node)
        );
        c.sim.world().pending_pairs.remove(&c.id);
        return Ok(keep());
    };
    let ok = {
        let mut w = c.sim.world();
        w.pending_pairs.remove(&c.id);
        let account = w.account_mut(&p.phone);
        match crate::pairing::verify_device_sign(
            &signed,
            &account.account_key,
            &p.registration.identity_pub,
        ) {
            Ok(_) => {
                account.devices.insert(
                    p.device,
                    DeviceInfo {
                        id: p.device,
                        noise_pub: p.registration.noise_pub,
                        identity_pub: p.registration.identity_pub,
                        registration_id: p.registration.registration_id,
                        key_index: p.key_index,
                        platform: p.registration.platform.clone(),
                        prekeys: 0,
                        paired_at: now_secs(),
                        signed_identity: signed.clone(),
                        keys: None,
                        key_shared: false,
                    },
                );
                true
            }
            Err(e) => {
                warn!(conn = c.id, "pair-device-sign rejected: {e:#}");
                false
            }
        }
    };
    if ok {
        info!(
            conn = c.id,
            "paired {}:{}; restarting stream", p.phone, p.device
        );
        crate::route::device_notification(&mut c.sim.world(), &p.phone, p.device, true);
        c.send_node(&nodes::stream_error(Some("515"), None)).await?;
        return Ok(close());
    }
    // Refused: the device is not linked; tell it instead of going silent
    // (a client would otherwise wait until its QR rotates).
    c.send_node(&nodes::stream_error(Some("401"), None)).await?;
    Ok(close())
}

fn privacy_settings() -> Node {
    let cats = [
        ("last", "all"),
        ("online", "all"),
        ("profile", "all"),
        ("status", "contacts"),
        ("groupadd", "all"),
        ("readreceipts", "all"),
        ("calladd", "all"),
    ];
    NodeBuilder::new("privacy")
        .children(cats.iter().map(|(n, v)| {
            NodeBuilder::new("category")
                .attr("name", *n)
                .attr("value", *v)
                .build()
        }))
        .build()
}

/// Empty app-state collections: no patches, version 0. Enough for the
/// critical sync that gates `Connected`.
fn app_state(id: &str, sync: &Node) -> Node {
    let cols = children(sync)
        .iter()
        .filter(|n| n.tag == "collection")
        .filter_map(|n| attr(n, "name"))
        .map(|name| {
            NodeBuilder::new("collection")
                .attr("name", name)
                .attr("version", "0")
                .build()
        });
    iq_result(id, vec![NodeBuilder::new("sync").children(cols).build()])
}

/// The account's signed list of valid companion key indexes
/// (`ADVSignedKeyIndexList`), which clients require next to companions.
pub(crate) fn key_index_list(a: &crate::state::Account) -> Node {
    use waproto::buffa::Message as _;
    let indexes: Vec<u32> = a.devices.values().map(|d| d.key_index).collect();
    let ts = now_secs();
    let details = waproto::whatsapp::ADVKeyIndexList {
        raw_id: Some(1),
        timestamp: Some(ts),
        current_index: indexes.iter().copied().max(),
        valid_indexes: indexes,
        account_type: Some(waproto::whatsapp::ADVEncryptionType::E2EE),
    }
    .encode_to_vec();
    let mut msg = vec![6u8, 2];
    msg.extend_from_slice(&details);
    let signature = a
        .account_key
        .private_key
        .calculate_signature(&msg, &mut rand::rng())
        .map(|s| s.to_vec())
        .unwrap_or_default();
    let signed = waproto::whatsapp::ADVSignedKeyIndexList {
        details: Some(details),
        account_signature: Some(signature),
        account_signature_key: Some(a.account_key.public_key.public_key_bytes().to_vec()),
    }
    .encode_to_vec();
    NodeBuilder::new("key-index-list")
        .attr("ts", ts.to_string())
        .bytes(signed)
        .build()
}

/// One queried user in a usync request: `jid` attr or `<contact>+phone</contact>`.
fn usync_target(user: &Node) -> Option<(String, bool)> {
    if let Some(jid) = attr(user, "jid") {
        return Some((jid, false));
    }
    let contact = child(user, "contact").and_then(text)?;
    let digits: String = contact.chars().filter(|c| c.is_ascii_digit()).collect();
    Some((format!("{digits}@{SERVER}"), true))
}

fn usync(c: &Conn, id: &str, usync: &Node) -> Node {
    let query = child(usync, "query");
    let wants = |tag: &str| query.is_some_and(|q| child(q, tag).is_some());
    let users = child(usync, "list").map(children).unwrap_or(&[]);
    let mut w = c.sim.world();
    let mut out = Vec::new();
    for u in users {
        let Some((jid, by_contact)) = usync_target(u) else {
            continue;
        };
        let user = jid_user(&jid).to_string();
        let (phone, lid) = if jid_server(&jid) == "lid" {
            (w.phone_for_lid(&user), Some(user.clone()))
        } else {
            let lid = w.directory.get(&user).cloned();
            (lid.as_ref().map(|_| user.clone()), lid)
        };
        let registered = phone.is_some();
        let mut kids = Vec::new();
        if wants("contact") {
            let mut b =
                NodeBuilder::new("contact").attr("type", if registered { "in" } else { "out" });
            if by_contact {
                if let Some(t) = child(u, "contact").and_then(text) {
                    b = b.string_content(t);
                }
            }
            kids.push(b.build());
        }
        if wants("lid") {
            let mut b = NodeBuilder::new("lid");
            if let Some(l) = lid.as_ref().filter(|_| registered) {
                b = b.attr("val", format!("{l}@lid"));
            }
            kids.push(b.build());
        }
        if wants("devices") {
            let ids: Vec<u16> = phone
                .as_ref()
                .and_then(|p| w.accounts.get(p))
                .map(|a| {
                    std::iter::once(0)
                        .chain(a.devices.keys().copied())
                        .collect()
                })
                .unwrap_or_else(|| if registered { vec![0] } else { vec![] });
            let list = NodeBuilder::new("device-list")
                .children(ids.iter().map(|d| {
                    let mut b = NodeBuilder::new("device").attr("id", d.to_string());
                    if let Some(ki) = phone
                        .as_ref()
                        .and_then(|p| w.accounts.get(p))
                        .and_then(|a| a.devices.get(d))
                    {
                        b = b.attr("key-index", ki.key_index.to_string());
                    }
                    b.build()
                }))
                .build();
            let mut dkids = vec![list];
            if let Some(a) = phone.as_ref().and_then(|p| w.accounts.get(p)) {
                if !a.devices.is_empty() {
                    dkids.push(key_index_list(a));
                }
            }
            kids.push(NodeBuilder::new("devices").children(dkids).build());
        }
        if wants("business") {
            kids.push(NodeBuilder::new("business").build());
        }
        if wants("status") {
            kids.push(NodeBuilder::new("status").build());
        }
        let user_jid = if jid_server(&jid) == "lid" {
            format!("{user}@lid")
        } else {
            format!("{user}@{SERVER}")
        };
        let mut ub = NodeBuilder::new("user").attr("jid", user_jid);
        if jid_server(&jid) == "lid" {
            if let Some(p) = &phone {
                ub = ub.attr("pn_jid", format!("{p}@{SERVER}"));
            }
        }
        out.push(ub.children(kids).build());
        if let Some(q) = query {
            for p in children(q) {
                if !["contact", "lid", "devices", "business", "status", "picture"]
                    .contains(&p.tag.as_ref())
                {
                    w.record_unhandled(None, format!("usync protocol <{}>", p.tag));
                }
            }
        }
    }
    let sid = attr(usync, "sid").unwrap_or_default();
    iq_result(
        id,
        vec![NodeBuilder::new("usync")
            .attr("sid", sid)
            .attr(
                "mode",
                attr(usync, "mode").unwrap_or_else(|| "query".into()),
            )
            .attr("last", "true")
            .attr("index", "0")
            .children([NodeBuilder::new("list").children(out).build()])
            .build()],
    )
}

/// Routes a `<chatstate>` from `phone` to the addressee's sockets (and
/// records it).
pub fn route_chatstate(w: &mut crate::state::World, phone: &str, node: &Node) {
    let Some(to) = attr(node, "to") else { return };
    let Some(state_node) = children(node).first() else {
        return;
    };
    let state = match (
        state_node.tag.as_ref(),
        attr(state_node, "media").as_deref(),
    ) {
        ("composing", Some("audio")) => "recording",
        ("composing", _) => "composing",
        ("paused", _) => "paused",
        (other, _) => other,
    }
    .to_string();
    let Some((target, _, by_lid)) = w.resolve_jid(&to) else {
        return;
    };
    let from = w.jid_of(phone, 0, by_lid);
    let fwd = NodeBuilder::new("chatstate")
        .attr("from", from.clone())
        .children([state_node.clone()])
        .build();
    let targets: Vec<u64> = w.conns_of(&target).into_iter().map(|(id, _)| id).collect();
    let delivered = targets
        .iter()
        .filter(|id| w.send(**id, Outbound::Node(fwd.clone())))
        .count();
    w.chatstates.push(ChatStateRecord {
        at: now_secs(),
        from,
        to,
        state,
        delivered_to: delivered,
    });
}

fn presence(c: &Conn, node: &Node) {
    let kind = attr(node, "type").unwrap_or_else(|| "available".into());
    let Some((phone, _)) = c.device.clone() else {
        return;
    };
    let mut w = c.sim.world();
    match kind.as_str() {
        "subscribe" | "unsubscribe" => {
            let Some(to) = attr(node, "to") else { return };
            let target = if jid_server(&to) == "lid" {
                w.phone_for_lid(jid_user(&to))
            } else {
                Some(jid_user(&to).to_string())
            };
            let Some(target) = target else { return };
            if let Some(e) = w.conns.get_mut(&c.id) {
                e.subscribed.retain(|p| p != &target);
                if kind == "subscribe" {
                    e.subscribed.push(target.clone());
                }
            }
            if kind == "subscribe" {
                // The server answers a subscription with the current state.
                let online = w.conns_of(&target).iter().any(|(_, e)| e.available);
                let mut b = NodeBuilder::new("presence").attr("from", to.clone());
                b = if online {
                    b.attr("type", "available")
                } else {
                    b.attr("type", "unavailable")
                        .attr("last", now_secs().to_string())
                };
                w.send(c.id, Outbound::Node(b.build()));
            }
            w.presences.push(PresenceRecord {
                at: now_secs(),
                from: format!("{phone}@{SERVER}"),
                kind: format!("{kind}:{}", jid_user(&to)),
                name: None,
                delivered_to: 0,
            });
        }
        "available" | "unavailable" => {
            let name = attr(node, "name");
            if let Some(e) = w.conns.get_mut(&c.id) {
                e.available = kind == "available";
            }
            if let (Some(n), Some(a)) = (name.as_ref(), w.accounts.get_mut(&phone)) {
                if !n.is_empty() {
                    a.push_name = n.clone();
                }
            }
            let lid = w.directory.get(&phone).cloned();
            let subscribers: Vec<(u64, bool)> = w
                .conns
                .iter()
                .filter(|(id, e)| **id != c.id && e.subscribed.contains(&phone))
                .map(|(id, _)| (*id, false))
                .collect();
            let mut delivered = 0;
            for (id, _) in subscribers {
                let mut b = NodeBuilder::new("presence")
                    .attr("from", format!("{phone}@{SERVER}"))
                    .attr("type", kind.clone());
                if kind == "unavailable" {
                    b = b.attr("last", now_secs().to_string());
                }
                if w.send(id, Outbound::Node(b.build())) {
                    delivered += 1;
                }
            }
            let _ = lid;
            w.presences.push(PresenceRecord {
                at: now_secs(),
                from: format!("{phone}@{SERVER}"),
                kind,
                name,
                delivered_to: delivered,
            });
        }
        _ => {
            w.record_unhandled(Some(phone), nodes::render(node));
        }
    }
}
