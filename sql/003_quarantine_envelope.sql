-- 隔离区保留原始变更的操作类型、事务号与提交时间，重试时按原信封重发。
-- Keeps the original change's op, transaction id and commit time on each quarantined row, so a
-- retry sends the same envelope (id, op, tx, commit time) the stream would have sent.

ALTER TABLE cdcsync.quarantine
    ADD COLUMN IF NOT EXISTS op        text,
    ADD COLUMN IF NOT EXISTS tx_id     bigint,
    ADD COLUMN IF NOT EXISTS commit_ts timestamptz;
COMMENT ON COLUMN cdcsync.quarantine.op IS '原始变更类型：c 新增，u 修改，d 删除，r 快照读取';
COMMENT ON COLUMN cdcsync.quarantine.tx_id IS '原始事务号';
COMMENT ON COLUMN cdcsync.quarantine.commit_ts IS '原始事务提交时间';
