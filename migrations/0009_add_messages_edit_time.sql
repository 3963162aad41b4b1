-- When a message was last edited (Yunhu), null when never (docs/schema.md#messages). Set by the
-- writer's edit UPDATE together with the edited content; only a later edit_time replaces it.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS edit_time Nullable(DateTime64(3, 'UTC'))
