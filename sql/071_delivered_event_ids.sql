-- 已确认记录的事件标识与内容摘要：从备份恢复（或复制槽失效）后重做全量快照时，内容未变的记录沿用平台
-- 已收到的事件标识，平台将其识别为重复、不会当作新事件（docs/operations.md「恢复与同步」）。
-- The id and content digest of the event that delivered each key's latest version, so a
-- re-snapshot (after a restore or a lost slot) re-sends an unchanged row under the id the platform
-- already holds: a duplicate it drops, not a new event. NULL in entries written before 071.

ALTER TABLE cdcsync.delivered_keys ADD COLUMN IF NOT EXISTS event_id text;
ALTER TABLE cdcsync.delivered_keys ADD COLUMN IF NOT EXISTS row_digest text;
COMMENT ON COLUMN cdcsync.delivered_keys.event_id IS '送达该记录当前版本的事件标识（删除与清空时为空）';
COMMENT ON COLUMN cdcsync.delivered_keys.row_digest IS '该版本记录内容（上报后的 after 映像）的摘要，用于判断恢复后记录是否未变';
