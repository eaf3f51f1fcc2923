//! Small helpers around `wacore-binary` nodes.

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, NodeContent};

pub const SERVER: &str = "s.whatsapp.net";

pub fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

pub fn child<'a>(node: &'a Node, tag: &str) -> Option<&'a Node> {
    node.get_optional_child(tag)
}

pub fn children(node: &Node) -> &[Node] {
    node.children().unwrap_or(&[])
}

pub fn bytes(node: &Node) -> Option<&[u8]> {
    match &node.content {
        Some(NodeContent::Bytes(b)) => Some(b),
        _ => None,
    }
}

pub fn text(node: &Node) -> Option<String> {
    match &node.content {
        Some(NodeContent::Bytes(b)) => String::from_utf8(b.clone()).ok(),
        Some(NodeContent::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// `<iq type="result" id=.. from="s.whatsapp.net">children</iq>`
pub fn iq_result(id: &str, children: Vec<Node>) -> Node {
    let b = NodeBuilder::new("iq")
        .attr("type", "result")
        .attr("id", id.to_string())
        .attr("from", SERVER);
    if children.is_empty() {
        b.build()
    } else {
        b.children(children).build()
    }
}

/// `<iq type="error" id=..><error code=.. text=../></iq>`
pub fn iq_error(id: &str, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attr("type", "error")
        .attr("id", id.to_string())
        .attr("from", SERVER)
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", text.to_string())
            .build()])
        .build()
}

/// `<stream:error code=../>` or with a `<conflict type=../>` child.
pub fn stream_error(code: Option<&str>, conflict: Option<&str>) -> Node {
    let mut b = NodeBuilder::new("stream:error");
    if let Some(code) = code {
        b = b.attr("code", code.to_string());
    }
    if let Some(kind) = conflict {
        b = b.children([NodeBuilder::new("conflict")
            .attr("type", kind.to_string())
            .build()]);
    }
    b.build()
}

/// A compact XML-ish rendering for logs and the unhandled-query list.
pub fn render(node: &Node) -> String {
    let mut s = String::new();
    render_into(node, &mut s, 0);
    s
}

fn render_into(node: &Node, out: &mut String, depth: usize) {
    out.push('<');
    out.push_str(&node.tag);
    for (k, v) in node.attrs.iter() {
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        out.push_str(&v.as_str());
        out.push('"');
    }
    match &node.content {
        None => out.push_str("/>"),
        Some(NodeContent::Nodes(kids)) => {
            out.push('>');
            if depth < 4 {
                for k in kids {
                    render_into(k, out, depth + 1);
                }
            } else {
                out.push_str("...");
            }
            out.push_str("</");
            out.push_str(&node.tag);
            out.push('>');
        }
        Some(NodeContent::Bytes(b)) => {
            out.push_str(&format!(">[{} bytes]</{}>", b.len(), node.tag));
        }
        Some(NodeContent::String(t)) => {
            out.push_str(&format!(">{t}</{}>", node.tag));
        }
    }
}

/// Phone-number user part of a JID string (`123:4@s.whatsapp.net` → `123`).
pub fn jid_user(jid: &str) -> &str {
    let user = jid.split('@').next().unwrap_or("");
    user.split(':').next().unwrap_or("")
}

/// `(user, device, server)` of `user[.agent][:device]@server`.
pub fn split_jid(jid: &str) -> (&str, u16, &str) {
    let (left, server) = jid.split_once('@').unwrap_or((jid, ""));
    let (user, device) = match left.split_once(':') {
        Some((u, d)) => (u, d.parse().unwrap_or(0)),
        None => (left, 0),
    };
    let user = user.split('.').next().unwrap_or(user);
    (user, device, server)
}

pub fn jid_server(jid: &str) -> &str {
    jid.split('@').nth(1).unwrap_or("")
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jid_parts() {
        assert_eq!(jid_user("15550001:3@s.whatsapp.net"), "15550001");
        assert_eq!(jid_user("999@lid"), "999");
        assert_eq!(jid_server("999@lid"), "lid");
    }

    #[test]
    fn render_is_readable() {
        let n = iq_error("1", 404, "item-not-found");
        assert_eq!(
            render(&n),
            "<iq type=\"error\" id=\"1\" from=\"s.whatsapp.net\"><error code=\"404\" text=\"item-not-found\"/></iq>"
        );
    }
}
