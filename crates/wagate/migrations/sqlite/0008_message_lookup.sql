-- 0008: a message can be addressed by its WhatsApp id within a session (the API's
-- /sessions/{sid}/messages/{mid}), not only within its chat.
CREATE INDEX messages_session_wa ON messages (session_id, wa_message_id);
