-- Per-session aggregate states fed by sessions_mv; read through the `sessions` view
-- (docs/schema.md#sessions). One logical row per (tenant, staff_id, session_type, session_id);
-- parts are merged eventually, so always read with the -Merge combinators / the view.
CREATE TABLE IF NOT EXISTS sessions_agg
(
    tenant         LowCardinality(String),
    staff_id       LowCardinality(String),
    session_type   LowCardinality(String),
    session_id     String,
    last_message   AggregateFunction(
                       argMax,
                       Tuple(
                           msgid String,
                           action String,
                           from_id String,
                           tolist Array(String),
                           room_id String,
                           peer_id String,
                           msg_type String,
                           content_text String,
                           seq UInt64,
                           source String),
                       Tuple(DateTime64(3, 'UTC'), String)),
    peer_name      AggregateFunction(argMax, String, Tuple(UInt8, DateTime64(3, 'UTC'))),
    peer_avatar    AggregateFunction(argMax, String, Tuple(UInt8, DateTime64(3, 'UTC'))),
    first_msg_time SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_msg_time  SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    msg_count      SimpleAggregateFunction(sum, UInt64),
    recall_count   SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (tenant, staff_id, session_type, session_id)
SETTINGS non_replicated_deduplication_window = 1000
