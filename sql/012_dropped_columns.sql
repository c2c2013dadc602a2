-- 最小必要：数据集规范未定义、因而未发送的列（每个目的地、表、列出现过的记录数）。
CREATE TABLE IF NOT EXISTS cdcsync.dropped_columns (
    destination  text        NOT NULL,
    table_name   text        NOT NULL,
    column_name  text        NOT NULL,
    rows         bigint      NOT NULL DEFAULT 0,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (destination, table_name, column_name)
);
COMMENT ON TABLE cdcsync.dropped_columns IS '最小必要：镜像表中数据集规范未定义的列，未随事件发送；按目的地统计出现的记录数';
COMMENT ON COLUMN cdcsync.dropped_columns.destination IS '目的地名称';
COMMENT ON COLUMN cdcsync.dropped_columns.table_name IS 'emr 模式下的表名';
COMMENT ON COLUMN cdcsync.dropped_columns.column_name IS '未发送的列名（只记录列名，不记录值）';
COMMENT ON COLUMN cdcsync.dropped_columns.rows IS '含该列而该列被去除的记录数（重放可能重复计数）';
COMMENT ON COLUMN cdcsync.dropped_columns.first_seen IS '首次记录时间';
COMMENT ON COLUMN cdcsync.dropped_columns.last_seen IS '最近记录时间';
