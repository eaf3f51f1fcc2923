//! The server's routing of `<message>` and `<receipt>` stanzas: fan-out to
//! every addressed device (live socket, the simulated phone, or the offline
//! queue), server acks, receipts back to the sender, offline delivery at
//! login.

use tracing::debug;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::Node;

use crate::nodes::{attr, child, children, now_secs, split_jid, SERVER};
use crate::phone::PhoneInput;
use crate::state::{Outbound, World};

/// Hands `node` to device `dev` of `phone`: the phone's task for device 0,
/// the socket when connected (messages are kept until acknowledged), or the
/// offline queue. Returns whether the device exists.
pub fn deliver(w: &mut World, phone: &str, dev: u16, node: Node) -> bool {
    if dev == 0 {
        return match w.accounts.get(phone) {
            Some(a) => {
                let _ = a.phone_tx.send(PhoneInput::Stanza(node));
                true
            }
            None => false,
        };
    }
    let exists = w
        .accounts
        .get(phone)
        .is_some_and(|a| a.devices.contains_key(&dev));
    if !exists {
        return false;
    }
    let key = (phone.to_string(), dev);
    let mut node = node;
    if node.tag == "message" {
        if let Some(f) = w.faults.get_mut(&key).filter(|f| f.corrupt_messages > 0) {
            f.corrupt_messages -= 1;
            corrupt(&mut node);
        }
        let id = attr(&node, "id").unwrap_or_default();
        w.unacked
            .entry(key.clone())
            .or_default()
            .push((id, node.clone()));
    }
    match w.conn_of_device(phone, dev) {
        Some(conn) if w.send(conn, Outbound::Node(node.clone())) => {}
        _ => {
            if node.tag != "message" {
                w.offline.entry(key).or_default().push(node);
            }
        }
    }
    true
}

/// Flips the last byte of the first `<enc>` (its MAC): undecryptable.
fn corrupt(node: &mut Node) {
    if let Some(wacore_binary::NodeContent::Nodes(kids)) = node.content.as_mut() {
        if let Some(enc) = kids.iter_mut().find(|k| k.tag == "enc") {
            if let Some(wacore_binary::NodeContent::Bytes(b)) = enc.content.as_mut() {
                if let Some(last) = b.last_mut() {
                    *last ^= 0x55;
                }
            }
        }
    }
}

/// The client acknowledged a stanza we delivered: stop keeping it.
pub fn acked(w: &mut World, phone: &str, dev: u16, id: &str) {
    if let Some(list) = w.unacked.get_mut(&(phone.to_string(), dev)) {
        list.retain(|(i, _)| i != id);
    }
}

/// Everything waiting for `phone:dev` at login: unacknowledged messages
/// and queued stanzas, each marked `offline`.
pub fn take_offline(w: &mut World, phone: &str, dev: u16) -> Vec<Node> {
    let key = (phone.to_string(), dev);
    let mut out: Vec<Node> = w
        .unacked
        .get(&key)
        .map(|l| l.iter().map(|(_, n)| n.clone()).collect())
        .unwrap_or_default();
    out.extend(w.offline.remove(&key).unwrap_or_default());
    out.sort_by_key(|n| {
        attr(n, "t")
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0)
    });
    out.into_iter()
        .map(|mut n| {
            n.attrs.insert("offline", "1");
            n
        })
        .collect()
}

/// The `<ib>` stanzas around an offline batch.
pub fn offline_preview(items: &[Node]) -> Node {
    let count = |tag: &str| items.iter().filter(|n| n.tag == tag).count().to_string();
    NodeBuilder::new("ib")
        .attr("from", SERVER)
        .children([NodeBuilder::new("offline_preview")
            .attr("count", items.len().to_string())
            .attr("message", count("message"))
            .attr("receipt", count("receipt"))
            .attr("notification", count("notification"))
            .attr("call", "0")
            .attr("appdata", "0")
            .build()])
        .build()
}

pub fn offline_end(count: usize) -> Node {
    NodeBuilder::new("ib")
        .attr("from", SERVER)
        .children([NodeBuilder::new("offline")
            .attr("count", count.to_string())
            .build()])
        .build()
}

/// The server ack for a message stanza.
fn message_ack(id: &str, to: &str, t: u64, error: Option<&str>) -> Node {
    let mut b = NodeBuilder::new("ack")
        .attr("class", "message")
        .attr("id", id.to_string())
        .attr("from", to.to_string())
        .attr("t", t.to_string());
    if let Some(e) = error {
        b = b.attr("error", e.to_string());
    }
    b.build()
}

/// What the routing of one message did.
pub struct Routed {
    pub ack: Node,
    pub delivered: usize,
    pub t: u64,
}

/// Routes a `<message>` stanza sent by `sender` (`phone`, `device`): each
/// `<participants><to jid>` entry (or a direct `<enc>` for retries) goes to
/// that device with the sender's address in the addressing the sender used
/// and the alternate address (`sender_lid` / `sender_pn`); the sender's other
/// devices get theirs with `recipient`. Groups fan out to every member device.
pub fn route_message(w: &mut World, sender: (&str, u16), node: &Node) -> Routed {
    let id = attr(node, "id").unwrap_or_default();
    let to = attr(node, "to").unwrap_or_default();
    let t = now_secs();
    if split_jid(&to).2 == "g.us" {
        return crate::groups::route_group_message(w, sender, node, &id, &to, t);
    }
    let Some((target, target_dev, to_lid)) = w.resolve_jid(&to) else {
        return Routed {
            ack: message_ack(&id, &to, t, Some("479")),
            delivered: 0,
            t,
        };
    };
    if !w.directory.contains_key(&target) {
        return Routed {
            ack: message_ack(&id, &to, t, Some("404")),
            delivered: 0,
            t,
        };
    }
    let (sphone, sdev) = sender;
    let push_name = w
        .accounts
        .get(sphone)
        .map(|a| a.push_name.clone())
        .unwrap_or_default();
    let identity = child(node, "device-identity").cloned();
    let mut targets: Vec<(String, u16, bool, Vec<Node>)> = Vec::new();
    if let Some(parts) = child(node, "participants") {
        for to_node in children(parts).iter().filter(|n| n.tag == "to") {
            let Some(jid) = attr(to_node, "jid") else {
                continue;
            };
            let Some((p, d, lid)) = w.resolve_jid(&jid) else {
                continue;
            };
            let encs: Vec<Node> = children(to_node)
                .iter()
                .filter(|n| n.tag == "enc")
                .cloned()
                .collect();
            targets.push((p, d, lid, encs));
        }
    }
    let direct: Vec<Node> = children(node)
        .iter()
        .filter(|n| n.tag == "enc")
        .cloned()
        .collect();
    if !direct.is_empty() {
        // A retry (or bare single-device send) addresses one device by `to`.
        targets.push((target.clone(), target_dev, to_lid, direct));
    }
    let recipient = w.jid_of(&target, 0, to_lid);
    if target != sender.0 {
        // A 1:1 exchange: each side now has a reason to know the other's number.
        w.knows.insert((target.clone(), sender.0.to_string()));
        w.knows.insert((sender.0.to_string(), target.clone()));
    }
    let mut delivered = 0;
    for (p, d, lid, encs) in targets {
        if p == sphone && d == sdev {
            continue;
        }
        let own = p == sphone;
        let mut b = NodeBuilder::new("message")
            .attr("from", w.jid_of(sphone, sdev, lid))
            .attr("id", id.clone())
            .attr("t", t.to_string());
        for a in ["type", "edit", "category", "mediatype"] {
            if let Some(v) = attr(node, a) {
                b = b.attr(a, v);
            }
        }
        if own {
            if target != sphone {
                b = b.attr("recipient", recipient.clone());
            }
        } else {
            if !push_name.is_empty() {
                b = b.attr("notify", push_name.clone());
            }
            if lid {
                b = b.attr("sender_pn", w.jid_of(sphone, 0, false));
            } else {
                b = b.attr("sender_lid", w.jid_of(sphone, 0, true));
            }
        }
        let mut kids = encs;
        if let Some(i) = &identity {
            kids.push(i.clone());
        }
        if deliver(w, &p, d, b.children(kids).build()) {
            delivered += 1;
        }
    }
    w.routed += 1;
    debug!("message {id} from {sphone}:{sdev} to {to}: {delivered} device(s)");
    Routed {
        ack: message_ack(&id, &to, t, None),
        delivered,
        t,
    }
}

/// Devices of `phone` (0 = the phone, plus every linked device).
pub fn devices_of(w: &World, phone: &str) -> Vec<u16> {
    std::iter::once(0)
        .chain(
            w.accounts
                .get(phone)
                .map(|a| a.devices.keys().copied().collect::<Vec<_>>())
                .unwrap_or_default(),
        )
        .collect()
}

/// Routes a `<receipt>` from `sender` to the original sender's devices
/// (only the addressed device when `to` names one), with the receipt
/// sender as `from` in the addressing of `to`.
pub fn route_receipt(w: &mut World, sender: (&str, u16), node: &Node) {
    let Some(to) = attr(node, "to") else { return };
    let (sphone, sdev) = sender;
    let id = attr(node, "id").unwrap_or_default();
    let is_group = split_jid(&to).2 == "g.us";
    let target_jid = if is_group {
        match attr(node, "participant") {
            Some(p) => p,
            None => return,
        }
    } else {
        to.clone()
    };
    let Some((target, tdev, lid)) = w.resolve_jid(&target_jid) else {
        return;
    };
    // Retries go to the device that sent the message; other receipts reach
    // every device of the original sender (each shows the ticks).
    let kind = attr(node, "type").unwrap_or_default();
    let explicit_device = target_jid.contains(':') && kind.contains("retry");
    if kind == "retry" {
        w.retry_receipts += 1;
    }
    let mut b = NodeBuilder::new("receipt").attr("id", id).attr(
        "t",
        attr(node, "t").unwrap_or_else(|| now_secs().to_string()),
    );
    if is_group {
        b = b
            .attr("from", to.clone())
            .attr("participant", w.jid_of(sphone, sdev, lid));
    } else {
        b = b.attr("from", w.jid_of(sphone, sdev, lid));
    }
    for a in ["type", "recipient"] {
        if let Some(v) = attr(node, a) {
            b = b.attr(a, v);
        }
    }
    let kids = children(node).to_vec();
    let fwd = if kids.is_empty() {
        b.build()
    } else {
        b.children(kids).build()
    };
    let devices = if explicit_device {
        vec![tdev]
    } else {
        devices_of(w, &target)
    };
    for d in devices {
        if target == sphone && d == sdev {
            continue;
        }
        deliver(w, &target, d, fwd.clone());
    }
    // A receipt from a device settles what that device had not
    // acknowledged yet (the stanza id and every `<list><item id>`).
    acked(w, sphone, sdev, &attr(node, "id").unwrap_or_default());
    for list in children(node).iter().filter(|n| n.tag == "list") {
        for item in children(list) {
            if let Some(i) = attr(item, "id") {
                acked(w, sphone, sdev, &i);
            }
        }
    }
}

/// `<notification type="devices">`: `phone` linked (or removed) `device`.
/// Goes to the account's other devices and to every account that exchanged
/// messages with it, so their device lists (and fan-outs) stay current.
pub fn device_notification(w: &mut World, phone: &str, device: u16, added: bool) {
    let Some(a) = w.accounts.get(phone) else {
        return;
    };
    let kil = crate::iq::key_index_list(a);
    let mut dev = NodeBuilder::new("device").attr("jid", w.jid_of(phone, device, false));
    if let Some(d) = a.devices.get(&device) {
        dev = dev.attr("key-index", d.key_index.to_string());
    }
    let op = NodeBuilder::new(if added { "add" } else { "remove" })
        .children([dev.build(), kil])
        .build();
    let n = NodeBuilder::new("notification")
        .attr("from", w.jid_of(phone, 0, false))
        .attr("lid", w.jid_of(phone, 0, true))
        .attr("type", "devices")
        .attr("id", crate::iq::random_id())
        .attr("t", now_secs().to_string())
        .children([op])
        .build();
    let mut targets: Vec<String> = w
        .knows
        .iter()
        .filter(|(viewer, other)| other == phone && viewer != phone)
        .map(|(viewer, _)| viewer.clone())
        .collect();
    targets.sort();
    targets.dedup();
    targets.push(phone.to_string());
    for t in targets {
        let devices: Vec<u16> = w
            .accounts
            .get(&t)
            .map(|a| a.devices.keys().copied().collect())
            .unwrap_or_default();
        for d in devices {
            if t == phone && d == device {
                continue;
            }
            deliver(w, &t, d, n.clone());
        }
    }
}
