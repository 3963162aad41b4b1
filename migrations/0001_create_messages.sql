-- One row per chat message (DESIGN §5, docs/schema.md#messages).
-- Identity of a message: (tenant, staff_id, msgid). The writer stores it once (lookup before
-- insert); ReplacingMergeTree on the sort key is the backstop that folds a re-delivered copy
-- into the original at merge time. msg_time is immutable per message, so a copy always lands
-- in the same partition and the same sort position.
CREATE TABLE IF NOT EXISTS messages
(
    tenant        LowCardinality(String),
    source        LowCardinality(String),
    source_type   LowCardinality(String),
    staff_id      LowCardinality(String),
    msgid         String,
    legacy_msgid  String,
    session_id    String,
    session_type  LowCardinality(String),
    room_id       String,
    action        LowCardinality(String),
    from_id       String,
    tolist        Array(String),
    peer_id       String,
    is_sender     UInt8,
    msg_time      DateTime64(3, 'UTC'),
    seq           UInt64,
    msg_seq       Int64,
    msg_type      LowCardinality(String),
    wx_msg_type   Int32,
    app_type      Int32,
    sys_type      LowCardinality(String),
    content_text  String,
    content       String,
    raw_content   String,
    msg_source    String,
    at_user_list  Array(String),
    pre_msgid     String,
    sync_key_type Int64,
    item_type     Int64,
    sub_type      Int64,
    status        Int64,
    img_status    Int64,
    extinfo       String,
    peer_name     String,
    peer_avatar   String,
    ingested_at   DateTime64(3, 'UTC'),
    recalled      UInt8 DEFAULT 0,
    recall_time   Nullable(DateTime64(3, 'UTC')),
    INDEX idx_msgid msgid TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_peer_id peer_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_pre_msgid pre_msgid TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_content_text content_text TYPE text(tokenizer = ngrams(2))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(msg_time)
ORDER BY (tenant, staff_id, session_id, msg_time, msgid)
SETTINGS
    non_replicated_deduplication_window = 1000,
    enable_block_number_column = 1,
    enable_block_offset_column = 1
