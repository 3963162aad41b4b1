-- The same window for `sessions_agg` (see 0011): the view's part of an insert sent again is
-- checked against it, and inserted only when it is not there.
ALTER TABLE sessions_agg MODIFY SETTING non_replicated_deduplication_window = 10000
