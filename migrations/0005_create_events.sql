-- Server instructions that are not chat messages (DESIGN §3, docs/schema.md#events).
-- Identity: (tenant, staff_id, event_id); stored once by the writer, folded by the sort key.
CREATE TABLE IF NOT EXISTS events
(
    tenant      LowCardinality(String),
    source      LowCardinality(String),
    source_type LowCardinality(String),
    staff_id    LowCardinality(String),
    event_id    String,
    event_type  LowCardinality(String),
    event_time  DateTime64(3, 'UTC'),
    session_id  String,
    payload     String,
    raw         String,
    ingested_at DateTime64(3, 'UTC'),
    INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (tenant, staff_id, event_type, event_time, event_id)
SETTINGS non_replicated_deduplication_window = 1000
