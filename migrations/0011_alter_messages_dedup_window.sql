-- Remember the last 10 000 insert tokens of `messages` instead of 1000 (docs/schema.md, ADR 0019).
-- The writer sends a failed insert again with its token so that `sessions_mv` counts what it
-- missed; the table must still know the token then, or the rows would be inserted twice. An
-- insert makes one block per month it touches, so a backfill with several writers can pass 1000
-- blocks within one retry backoff. Metadata only; the log is a few hundred kilobytes.
ALTER TABLE messages MODIFY SETTING non_replicated_deduplication_window = 10000
