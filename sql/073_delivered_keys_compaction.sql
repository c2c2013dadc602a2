-- 已确认主键记录（cdcsync.delivered_keys）的定期压缩：守护进程在记录增长到远超目的地实际持有的主键数时，
-- 删除已被同一主键的更新记录取代、或早于该表清空标记的记录。本表记录各目的地最近一次压缩，用于判断下次压缩时机。
-- The state of the periodic compaction of cdcsync.delivered_keys (cdcsync/ops/compaction.py):
-- per destination, the log's sequence value when it was last compacted and the entries left
-- (about the keys it holds). A destination is compacted again when the log has grown by
-- max(ops.compaction.min_entries, growth_ratio × live_entries) since seq_mark.

CREATE TABLE IF NOT EXISTS cdcsync.delivered_keys_compaction (
    destination    text PRIMARY KEY,
    compacted_at   timestamptz NOT NULL DEFAULT now(),
    seq_mark       bigint NOT NULL,
    live_entries   bigint NOT NULL,
    entries_before bigint NOT NULL,
    seconds        double precision NOT NULL
);
COMMENT ON TABLE cdcsync.delivered_keys_compaction IS '已确认主键记录（delivered_keys）的定期压缩：各目的地最近一次压缩的时间与规模';
COMMENT ON COLUMN cdcsync.delivered_keys_compaction.destination IS '目的地名称';
COMMENT ON COLUMN cdcsync.delivered_keys_compaction.compacted_at IS '最近一次压缩完成时间';
COMMENT ON COLUMN cdcsync.delivered_keys_compaction.seq_mark IS '压缩开始时记录序号（seq）的当前值；此后新增的记录数用于判断下次压缩';
COMMENT ON COLUMN cdcsync.delivered_keys_compaction.live_entries IS '压缩后该目的地剩余的记录数（约等于目的地持有的主键数）';
COMMENT ON COLUMN cdcsync.delivered_keys_compaction.entries_before IS '压缩前该目的地的记录数';
COMMENT ON COLUMN cdcsync.delivered_keys_compaction.seconds IS '压缩耗时（秒）';
