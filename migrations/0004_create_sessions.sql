-- The session list: latest message per session per staff, with counts (docs/schema.md#sessions).
-- Filters on tenant / staff_id / session_type / session_id are pushed below the GROUP BY and use
-- the sort key of sessions_agg; nothing here reads messages.
CREATE VIEW IF NOT EXISTS sessions AS
SELECT
    tenant,
    staff_id,
    session_type,
    session_id,
    argMaxMerge(last_message) AS last,
    tupleElement(last, 'peer_id') AS peer_id,
    argMaxMerge(peer_name) AS peer_name,
    argMaxMerge(peer_avatar) AS peer_avatar,
    tupleElement(last, 'msgid') AS last_msgid,
    tupleElement(last, 'action') AS last_action,
    tupleElement(last, 'from_id') AS last_from_id,
    tupleElement(last, 'tolist') AS last_tolist,
    tupleElement(last, 'room_id') AS room_id,
    tupleElement(last, 'msg_type') AS last_msg_type,
    tupleElement(last, 'content_text') AS last_content_text,
    tupleElement(last, 'seq') AS last_seq,
    tupleElement(last, 'source') AS source,
    CAST(min(first_msg_time) AS DateTime64(3, 'UTC')) AS first_msg_time,
    CAST(max(last_msg_time) AS DateTime64(3, 'UTC')) AS last_msg_time,
    sum(msg_count) AS msg_count,
    sum(recall_count) AS recall_count
FROM sessions_agg
GROUP BY tenant, staff_id, session_type, session_id
