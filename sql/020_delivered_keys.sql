-- 各目的地已确认收到的记录主键的变更记录（只追加）。复制槽失效（wal_status=lost）后重做全量快照时，
-- 据此找出目的地持有、但镜像库中已不存在的记录，补发删除事件。
-- Per destination, an append-only log of the primary keys it acknowledged (present = true: an
-- insert or snapshot read; false: a delete; pk = '': the table was truncated). The latest entry
-- per key tells whether the destination holds the row. Appended by COPY in the checkpoint
-- transaction (no index: cheap on the hot path), read and compacted only when a snapshot
-- completes (cdcsync/checkpoint.py, cdcsync/source/snapshot.py).

CREATE TABLE IF NOT EXISTS cdcsync.delivered_keys (
    seq         bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000),
    destination text    NOT NULL,
    table_name  text    NOT NULL,
    pk          text    COLLATE "C" NOT NULL,
    present     boolean NOT NULL
);
COMMENT ON TABLE cdcsync.delivered_keys IS '各目的地已确认收到的记录主键变更记录（用于复制槽失效后重做快照时补发删除）';
COMMENT ON COLUMN cdcsync.delivered_keys.seq IS '追加顺序';
COMMENT ON COLUMN cdcsync.delivered_keys.destination IS '目的地名称';
COMMENT ON COLUMN cdcsync.delivered_keys.table_name IS '镜像表名（emr 模式下）';
COMMENT ON COLUMN cdcsync.delivered_keys.pk IS '主键列与值（JSON 文本）；空串表示该表被清空（TRUNCATE）';
COMMENT ON COLUMN cdcsync.delivered_keys.present IS 'true：目的地持有该记录；false：已发送删除';
