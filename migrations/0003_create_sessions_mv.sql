-- Feeds sessions_agg from every block inserted into messages. Deduplicated message inserts do
-- not reach it twice (deduplicate_blocks_in_dependent_materialized_views, default 1).
CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_mv TO sessions_agg AS
SELECT
    tenant,
    staff_id,
    session_type,
    session_id,
    argMaxState(
        CAST(
            (msgid, toString(action), from_id, tolist, room_id, peer_id, toString(msg_type), content_text, seq,
             toString(source)),
            'Tuple(msgid String, action String, from_id String, tolist Array(String), room_id String, peer_id String, msg_type String, content_text String, seq UInt64, source String)'),
        (msg_time, msgid)) AS last_message,
    argMaxState(peer_name, (toUInt8(peer_name != ''), msg_time)) AS peer_name,
    argMaxState(peer_avatar, (toUInt8(peer_avatar != ''), msg_time)) AS peer_avatar,
    min(msg_time) AS first_msg_time,
    max(msg_time) AS last_msg_time,
    toUInt64(count()) AS msg_count,
    toUInt64(countIf(action = 'recall')) AS recall_count
FROM messages
GROUP BY tenant, staff_id, session_type, session_id
