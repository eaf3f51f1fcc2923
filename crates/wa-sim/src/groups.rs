//! Groups: membership, metadata, and the fan-out of group messages.

use serde::Serialize;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::Node;

use crate::nodes::{attr, child, children, SERVER};
use crate::route::{deliver, devices_of, Routed};
use crate::state::World;

#[derive(Clone, Debug, Serialize)]
pub struct Participant {
    pub phone: String,
    /// `None`, `admin` or `superadmin`.
    pub admin: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Group {
    /// The user part of the group JID (`120363...`).
    pub id: String,
    pub subject: String,
    pub subject_owner: String,
    pub subject_time: u64,
    pub description: Option<String>,
    pub description_id: Option<String>,
    pub creator: String,
    pub created: u64,
    pub participants: Vec<Participant>,
    /// LID addressing mode: members see each other by LID.
    pub lid_mode: bool,
    pub invite_code: Option<String>,
}

impl Group {
    pub fn jid(&self) -> String {
        format!("{}@g.us", self.id)
    }

    pub fn is_member(&self, phone: &str) -> bool {
        self.participants.iter().any(|p| p.phone == phone)
    }
}

/// Fans a group `<message>` out to every member device but the sender's:
/// the skmsg for all, plus the pairwise `<enc>` (sender key distribution)
/// addressed to that device, if any.
pub fn route_group_message(
    w: &mut World,
    sender: (&str, u16),
    node: &Node,
    id: &str,
    to: &str,
    t: u64,
) -> Routed {
    let gid = crate::nodes::split_jid(to).0.to_string();
    let ack = |error: Option<&str>| {
        let mut b = NodeBuilder::new("ack")
            .attr("class", "message")
            .attr("id", id.to_string())
            .attr("from", to.to_string())
            .attr("t", t.to_string());
        if let Some(e) = error {
            b = b.attr("error", e.to_string());
        }
        b.build()
    };
    let Some(group) = w.groups.get(&gid).cloned() else {
        return Routed {
            ack: ack(Some("404")),
            delivered: 0,
            t,
        };
    };
    let (sphone, sdev) = sender;
    if !group.is_member(sphone) {
        return Routed {
            ack: ack(Some("403")),
            delivered: 0,
            t,
        };
    }
    let mut pairwise: Vec<((String, u16), Vec<Node>)> = Vec::new();
    if let Some(parts) = child(node, "participants") {
        for to_node in children(parts).iter().filter(|n| n.tag == "to") {
            let Some(jid) = attr(to_node, "jid") else {
                continue;
            };
            if let Some((p, d, _)) = w.resolve_jid(&jid) {
                pairwise.push((
                    (p, d),
                    children(to_node)
                        .iter()
                        .filter(|n| n.tag == "enc")
                        .cloned()
                        .collect(),
                ));
            }
        }
    }
    let skmsg: Vec<Node> = children(node)
        .iter()
        .filter(|n| n.tag == "enc")
        .cloned()
        .collect();
    let identity = child(node, "device-identity").cloned();
    let push_name = w
        .accounts
        .get(sphone)
        .map(|a| a.push_name.clone())
        .unwrap_or_default();
    let lid = group.lid_mode;
    let mut delivered = 0;
    for member in &group.participants {
        for d in devices_of(w, &member.phone) {
            if member.phone == sphone && d == sdev {
                continue;
            }
            let mut encs: Vec<Node> = pairwise
                .iter()
                .filter(|((p, dd), _)| *p == member.phone && *dd == d)
                .flat_map(|(_, e)| e.clone())
                .collect();
            encs.extend(skmsg.iter().cloned());
            if encs.is_empty() {
                continue;
            }
            let mut b = NodeBuilder::new("message")
                .attr("from", group.jid())
                .attr("participant", w.jid_of(sphone, sdev, lid))
                .attr("id", id.to_string())
                .attr("t", t.to_string())
                .attr("addressing_mode", if lid { "lid" } else { "pn" });
            b = if lid {
                b.attr("participant_pn", w.jid_of(sphone, 0, false))
            } else {
                b.attr("participant_lid", w.jid_of(sphone, 0, true))
            };
            for a in ["type", "edit", "mediatype"] {
                if let Some(v) = attr(node, a) {
                    b = b.attr(a, v);
                }
            }
            if !push_name.is_empty() && member.phone != sphone {
                b = b.attr("notify", push_name.clone());
            }
            if let Some(i) = &identity {
                encs.push(i.clone());
            }
            if deliver(w, &member.phone, d, b.children(encs).build()) {
                delivered += 1;
            }
        }
    }
    w.routed += 1;
    let _ = SERVER;
    Routed {
        ack: ack(None),
        delivered,
        t,
    }
}
