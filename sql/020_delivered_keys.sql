-- 各目的地已确认收到、且尚未收到其删除的记录主键。复制槽失效（wal_status=lost）后重做全量快照时，
-- 对比此表与快照中的记录，为期间已被删除的记录补发删除事件。
-- Per destination, the primary keys of rows it acknowledged and has not acknowledged a delete
-- for (a superset is harmless: a delete of a key the destination never had is a no-op). Kept by
-- the checkpointer, a set-based write per checkpoint (cdcsync/checkpoint.py); read by the
-- snapshot reader to send deletes for rows gone while a lost slot could not stream them.

CREATE TABLE IF NOT EXISTS cdcsync.delivered_keys (
    destination text  NOT NULL,
    table_name  text  NOT NULL,
    pk          jsonb NOT NULL,
    PRIMARY KEY (destination, table_name, pk)
);
COMMENT ON TABLE cdcsync.delivered_keys IS '各目的地已确认收到的记录主键（用于复制槽失效后重做快照时补发删除）';
COMMENT ON COLUMN cdcsync.delivered_keys.destination IS '目的地名称';
COMMENT ON COLUMN cdcsync.delivered_keys.table_name IS '镜像表名（emr 模式下）';
COMMENT ON COLUMN cdcsync.delivered_keys.pk IS '主键列与值（JSON）';
