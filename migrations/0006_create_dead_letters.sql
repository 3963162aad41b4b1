-- Records that could not be processed, with their original bytes (docs/schema.md#dead_letters).
-- original_base64 keeps the bytes exactly (invalid UTF-8 included); `original` decodes them.
-- Identity: dead_letter_id = sha256(source, stage, origin_key, original bytes), set by the writer.
CREATE TABLE IF NOT EXISTS dead_letters
(
    dead_letter_id  String,
    tenant          LowCardinality(String),
    source          LowCardinality(String),
    source_type     LowCardinality(String),
    stage           LowCardinality(String),
    error_code      LowCardinality(String),
    error_message   String,
    original_base64 String CODEC(ZSTD(1)),
    original        String ALIAS base64Decode(original_base64),
    original_size   UInt64 MATERIALIZED length(base64Decode(original_base64)),
    origin_key      String,
    occurred_at     DateTime64(3, 'UTC'),
    INDEX idx_dead_letter_id dead_letter_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, source, dead_letter_id)
SETTINGS non_replicated_deduplication_window = 1000
