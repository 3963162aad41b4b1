-- Embedded-mode cursor storage (docs/schema.md#cursors): the latest cursor per (source, stream).
-- Every save appends a row; the one with the greatest updated_at wins (argMax when reading,
-- ReplacingMergeTree(updated_at) when merging).
CREATE TABLE IF NOT EXISTS cursors
(
    source     String,
    stream     String,
    cursor     String,
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (source, stream)
SETTINGS non_replicated_deduplication_window = 1000
