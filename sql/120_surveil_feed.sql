-- 提醒推送（8881 /api/v1/reminders/stream）的断点续传：处理记录按“提交顺序”读取。
-- Developer notes: history_id comes from an identity sequence, allocated when a row is inserted,
-- not when its transaction commits, so a reader following history_id alone can step over a row of
-- a transaction that commits later (and never see it). Each row therefore records the id of the
-- transaction that wrote it (xid8). A reader takes only rows whose transaction is older than the
-- oldest transaction still running (pg_snapshot_xmin(pg_current_snapshot())), ordered by
-- (xid, history_id): every transaction below that horizon has ended, so nothing can appear behind
-- the cursor later (cdcsync/surveil/feed.py). Adding the column rewrites the table without firing
-- the append-only triggers; existing rows get the migrating transaction's id.

ALTER TABLE cdcsync.surveil_case_history
    ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT pg_current_xact_id();
COMMENT ON COLUMN cdcsync.surveil_case_history.xid IS '写入该记录的事务号（提醒推送按提交顺序续传用）';
CREATE INDEX IF NOT EXISTS surveil_case_history_xid_idx ON cdcsync.surveil_case_history (xid, history_id);
