-- cdcsync 内部状态：迁移记录、各目的地的确认位点、投递统计、隔离区。
-- Internal state of cdcsync (schema cdcsync). Applied by `cdcsync db init`.

CREATE SCHEMA IF NOT EXISTS cdcsync;
COMMENT ON SCHEMA cdcsync IS 'cdcsync 前置软件内部状态';

CREATE TABLE IF NOT EXISTS cdcsync.schema_migrations (
    filename   text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdcsync.schema_migrations IS '已执行的数据库迁移文件';
COMMENT ON COLUMN cdcsync.schema_migrations.filename IS '迁移文件名';
COMMENT ON COLUMN cdcsync.schema_migrations.checksum IS '文件内容 SHA-256';
COMMENT ON COLUMN cdcsync.schema_migrations.applied_at IS '执行时间';

CREATE TABLE IF NOT EXISTS cdcsync.checkpoint (
    destination   text PRIMARY KEY,
    slot_name     text NOT NULL,
    acked_lsn     pg_lsn NOT NULL DEFAULT '0/0',
    last_event_at timestamptz,
    last_ack_at   timestamptz,
    snapshot_done boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdcsync.checkpoint IS '各上报目的地已确认的复制位点';
COMMENT ON COLUMN cdcsync.checkpoint.destination IS '目的地名称（如 national、provincial）';
COMMENT ON COLUMN cdcsync.checkpoint.slot_name IS '逻辑复制槽名称';
COMMENT ON COLUMN cdcsync.checkpoint.acked_lsn IS '目的地已确认（或已隔离）的最高提交位点';
COMMENT ON COLUMN cdcsync.checkpoint.last_event_at IS '最近一条已确认事件的提交时间';
COMMENT ON COLUMN cdcsync.checkpoint.last_ack_at IS '最近一次确认的时间';
COMMENT ON COLUMN cdcsync.checkpoint.snapshot_done IS '初始快照是否已完成';
COMMENT ON COLUMN cdcsync.checkpoint.updated_at IS '更新时间';

CREATE TABLE IF NOT EXISTS cdcsync.delivery_stats (
    destination   text NOT NULL,
    table_name    text NOT NULL,
    business_date date NOT NULL,
    delivered     bigint NOT NULL DEFAULT 0,
    quarantined   bigint NOT NULL DEFAULT 0,
    batches       bigint NOT NULL DEFAULT 0,
    first_ack_at  timestamptz NOT NULL DEFAULT now(),
    last_ack_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (destination, table_name, business_date)
);
COMMENT ON TABLE cdcsync.delivery_stats IS '按目的地、表、业务日期汇总的投递统计（与位点同一事务写入）';
COMMENT ON COLUMN cdcsync.delivery_stats.destination IS '目的地名称';
COMMENT ON COLUMN cdcsync.delivery_stats.table_name IS '镜像表名';
COMMENT ON COLUMN cdcsync.delivery_stats.business_date IS '业务日期';
COMMENT ON COLUMN cdcsync.delivery_stats.delivered IS '已被目的地接收的事件数';
COMMENT ON COLUMN cdcsync.delivery_stats.quarantined IS '进入隔离区的事件数';
COMMENT ON COLUMN cdcsync.delivery_stats.batches IS '批次数';
COMMENT ON COLUMN cdcsync.delivery_stats.first_ack_at IS '首次确认时间';
COMMENT ON COLUMN cdcsync.delivery_stats.last_ack_at IS '最近确认时间';

CREATE TABLE IF NOT EXISTS cdcsync.quarantine (
    event_id      text NOT NULL,
    destination   text NOT NULL,
    table_name    text NOT NULL,
    primary_key   jsonb NOT NULL,
    lsn           pg_lsn NOT NULL,
    rule_id       text NOT NULL,
    field         text,
    message       text NOT NULL,
    raw_row       jsonb,
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 1,
    status        text NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'released', 'discarded')),
    PRIMARY KEY (destination, event_id)
);
CREATE INDEX IF NOT EXISTS quarantine_status_idx ON cdcsync.quarantine (status, table_name, rule_id);
COMMENT ON TABLE cdcsync.quarantine IS '隔离区：未通过校验、代码映射或被平台拒收的记录，可在修正后重试';
COMMENT ON COLUMN cdcsync.quarantine.event_id IS '事件标识（确定性，重放不变）';
COMMENT ON COLUMN cdcsync.quarantine.destination IS '目的地名称';
COMMENT ON COLUMN cdcsync.quarantine.table_name IS '镜像表名';
COMMENT ON COLUMN cdcsync.quarantine.primary_key IS '记录主键';
COMMENT ON COLUMN cdcsync.quarantine.lsn IS '变更的提交位点';
COMMENT ON COLUMN cdcsync.quarantine.rule_id IS '未通过的规则编号';
COMMENT ON COLUMN cdcsync.quarantine.field IS '出错字段';
COMMENT ON COLUMN cdcsync.quarantine.message IS '错误说明';
COMMENT ON COLUMN cdcsync.quarantine.raw_row IS '原始记录';
COMMENT ON COLUMN cdcsync.quarantine.first_seen IS '首次发现时间';
COMMENT ON COLUMN cdcsync.quarantine.last_seen IS '最近一次发现时间';
COMMENT ON COLUMN cdcsync.quarantine.attempts IS '处理次数';
COMMENT ON COLUMN cdcsync.quarantine.status IS '状态：held 待处理，released 已重发，discarded 已放弃';
