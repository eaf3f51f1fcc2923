"""Uses a client generated from the gateway's OpenAPI document (by openapi-python-client) the
way a user would: a breaking change to the document breaks this script.

Usage: client_test.py <package dir> <base url> <api key>
"""

import sys

sys.path.insert(0, sys.argv[1])

from wagate_client import AuthenticatedClient  # noqa: E402
from wagate_client.api.api_keys import list_keys  # noqa: E402
from wagate_client.api.chats import get_chat, list_chats  # noqa: E402
from wagate_client.api.sessions import create_session, get_session, list_sessions  # noqa: E402
from wagate_client.models import CreateSession, ErrorEnvelope, Session  # noqa: E402
from wagate_client.models import ChatPage, SessionList  # noqa: E402

base, key = sys.argv[2], sys.argv[3]
client = AuthenticatedClient(base_url=base, token=key, raise_on_unexpected_status=True)


def check(cond, what):
    if not cond:
        raise SystemExit(f"client test failed: {what}")


with client as c:
    created = create_session.sync(client=c, body=CreateSession(label="from the generated client", rate_per_min=20))
    check(isinstance(created, Session), f"create_session returned {created!r}")
    check(created.label == "from the generated client", "the label round-trips")
    check(created.rate_per_min == 20, "the rate round-trips")
    check(created.status.value == "stopped", f"a new session is stopped, not {created.status}")

    listed = list_sessions.sync(client=c)
    check(isinstance(listed, SessionList), f"list_sessions returned {listed!r}")
    check(created.id in [s.id for s in listed.data], "the new session is listed")

    again = get_session.sync(client=c, sid=created.id)
    check(isinstance(again, Session) and again.id == created.id, "get_session finds it")

    chats = list_chats.sync(client=c, sid=created.id, limit=10)
    check(isinstance(chats, ChatPage), f"list_chats returned {chats!r}")
    check(chats.data == [] and chats.next_cursor is None, "a new session has no chats")

    missing = get_chat.sync_detailed(client=c, sid=created.id, cid="6281234567890@s.whatsapp.net")
    check(missing.status_code == 404, f"an unknown chat is 404, not {missing.status_code}")
    check(isinstance(missing.parsed, ErrorEnvelope), f"the error is parsed as the envelope: {missing.parsed!r}")
    check(missing.parsed.error.code == "not_found", f"error code {missing.parsed.error.code}")

    keys = list_keys.sync(client=c)
    check(keys is not None and len(keys.data) >= 1, "the admin key is listed")

anonymous = AuthenticatedClient(base_url=base, token="wag_not-a-real-key")
with anonymous as c:
    denied = list_sessions.sync_detailed(client=c)
    check(denied.status_code == 401, f"a forged key is 401, not {denied.status_code}")
    check(isinstance(denied.parsed, ErrorEnvelope) and denied.parsed.error.code == "unauthorized", "401 envelope")

print("generated Python client: create, list, get, list chats, 404 and 401 envelopes: ok")
