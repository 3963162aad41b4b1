-- Earlier versions of edited messages (docs/schema.md#message_edits), one row per provider edit.
-- Identity: (tenant, staff_id, msgid, edit_id); stored once by the writer (lookup before insert),
-- folded by the sort key as a backstop.
CREATE TABLE IF NOT EXISTS message_edits
(
    tenant           LowCardinality(String),
    source           LowCardinality(String),
    source_type      LowCardinality(String),
    staff_id         LowCardinality(String),
    session_id       String,
    msgid            String,
    edit_id          String,
    content_type     Int32,
    content_old      String,
    content_text_old String,
    msg_time         DateTime64(3, 'UTC'),
    edit_time        DateTime64(3, 'UTC'),
    raw              String,
    ingested_at      DateTime64(3, 'UTC'),
    INDEX idx_msgid msgid TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, staff_id, msgid, edit_id)
SETTINGS non_replicated_deduplication_window = 1000
