-- Merge `messages` parts column by column (the vertical algorithm) at every size, not only from
-- 131 072 rows on. A horizontal merge reads every column of every part at once: with about 40
-- columns, a text index and bloom filters that was the largest transient allocation of the
-- embedded pipeline (peak RSS about 60 MB lower with this, docs/benchmarks.md). Same parts, same
-- results; only how a merge reads them changes.
ALTER TABLE messages MODIFY SETTING
    vertical_merge_algorithm_min_rows_to_activate = 1,
    vertical_merge_algorithm_min_columns_to_activate = 1
