-- 运行监测：守护进程运行记录、各目的地每日运行情况、故障记录（含告警发送情况）、动态评价历史、平台公告。
-- Operations state (cdcsync/ops): written by the daemon's ops loop (heartbeats, faults, alerts)
-- and by `cdcsync evaluate`. Days are Beijing days, like cdcsync.transmission_daily.

CREATE TABLE IF NOT EXISTS cdcsync.daemon_run (
    run_id       text PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    stopped_at   timestamptz,
    version      text NOT NULL,
    hostname     text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS daemon_run_started_idx ON cdcsync.daemon_run (started_at);
COMMENT ON TABLE cdcsync.daemon_run IS '前置软件守护进程的每次运行（启动、最近一次存活、正常停止时间），用于计算在线率、重启次数与最长中断';
COMMENT ON COLUMN cdcsync.daemon_run.run_id IS '运行标识';
COMMENT ON COLUMN cdcsync.daemon_run.started_at IS '启动时间';
COMMENT ON COLUMN cdcsync.daemon_run.last_seen_at IS '最近一次确认存活的时间（每个心跳周期更新）';
COMMENT ON COLUMN cdcsync.daemon_run.stopped_at IS '正常停止时间；为空表示仍在运行或异常终止';
COMMENT ON COLUMN cdcsync.daemon_run.version IS '软件版本';
COMMENT ON COLUMN cdcsync.daemon_run.hostname IS '主机名';

CREATE TABLE IF NOT EXISTS cdcsync.stream_daily (
    destination       text NOT NULL,
    day               date NOT NULL,
    observed_s        double precision NOT NULL DEFAULT 0,
    healthy_s         double precision NOT NULL DEFAULT 0,
    backlog_max_bytes bigint NOT NULL DEFAULT 0,
    lag_max_s         double precision NOT NULL DEFAULT 0,
    queue_max         bigint NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (destination, day)
);
COMMENT ON TABLE cdcsync.stream_daily IS '各目的地每日运行情况：观测时长、正常运行时长、积压高水位（每个心跳周期累加）';
COMMENT ON COLUMN cdcsync.stream_daily.destination IS '目的地名称';
COMMENT ON COLUMN cdcsync.stream_daily.day IS '日期（北京时间）';
COMMENT ON COLUMN cdcsync.stream_daily.observed_s IS '守护进程运行并观测该目的地的秒数';
COMMENT ON COLUMN cdcsync.stream_daily.healthy_s IS '其中数据流正常（复制槽在读、无持续发送失败）的秒数';
COMMENT ON COLUMN cdcsync.stream_daily.backlog_max_bytes IS '积压高水位：当日复制滞后（未确认 WAL）的最大字节数';
COMMENT ON COLUMN cdcsync.stream_daily.lag_max_s IS '当日复制滞后的最大秒数';
COMMENT ON COLUMN cdcsync.stream_daily.queue_max IS '当日隔离区待处理记录数的最大值';
COMMENT ON COLUMN cdcsync.stream_daily.updated_at IS '更新时间';

CREATE TABLE IF NOT EXISTS cdcsync.fault (
    fault_id    text PRIMARY KEY,
    code        text NOT NULL,
    subject     text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('warning', 'error')),
    message     text NOT NULL,
    resolution  text NOT NULL,
    opened_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    alerts_sent text[] NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS fault_open_idx ON cdcsync.fault (code, subject) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS fault_opened_idx ON cdcsync.fault (opened_at);
COMMENT ON TABLE cdcsync.fault IS '故障记录：目的地停止、证书将到期、备份失败、WAL 保留风险等，含处理建议、恢复时间与告警发送情况（不含患者信息）';
COMMENT ON COLUMN cdcsync.fault.fault_id IS '故障标识（随心跳上报平台）';
COMMENT ON COLUMN cdcsync.fault.code IS '故障代码，如 DEST_STOPPED、CERT_EXPIRING、BACKUP_FAILED、WAL_RETENTION_RISK';
COMMENT ON COLUMN cdcsync.fault.subject IS '故障对象：目的地名称、证书文件、备份等';
COMMENT ON COLUMN cdcsync.fault.severity IS '级别：warning 警告，error 故障';
COMMENT ON COLUMN cdcsync.fault.message IS '故障说明';
COMMENT ON COLUMN cdcsync.fault.resolution IS '处理建议';
COMMENT ON COLUMN cdcsync.fault.opened_at IS '发现时间';
COMMENT ON COLUMN cdcsync.fault.last_seen_at IS '最近一次仍存在的时间';
COMMENT ON COLUMN cdcsync.fault.resolved_at IS '恢复时间；为空表示未恢复';
COMMENT ON COLUMN cdcsync.fault.alerts_sent IS '已发送的告警（通道:open / 通道:resolved），用于去重';

CREATE TABLE IF NOT EXISTS cdcsync.evaluation_daily (
    day          date NOT NULL,
    destination  text NOT NULL,
    environment  text NOT NULL DEFAULT 'production',
    correctness  numeric(5, 1),
    timeliness   numeric(5, 1),
    stability    numeric(5, 1),
    adaptability numeric(5, 1),
    overall      numeric(5, 1),
    details      jsonb NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, destination)
);
COMMENT ON TABLE cdcsync.evaluation_daily IS '动态评价历史：每日、每个目的地的正确性、及时性、稳定性、适应性得分（0～100，计算方法见 docs/evaluation.md）';
COMMENT ON COLUMN cdcsync.evaluation_daily.day IS '评价日期（北京时间）';
COMMENT ON COLUMN cdcsync.evaluation_daily.destination IS '目的地名称';
COMMENT ON COLUMN cdcsync.evaluation_daily.environment IS '目的地环境：production 正式，test 大疫情测试网（试运行）';
COMMENT ON COLUMN cdcsync.evaluation_daily.correctness IS '正确性得分；为空表示当日无数据';
COMMENT ON COLUMN cdcsync.evaluation_daily.timeliness IS '及时性得分';
COMMENT ON COLUMN cdcsync.evaluation_daily.stability IS '稳定性得分';
COMMENT ON COLUMN cdcsync.evaluation_daily.adaptability IS '适应性得分';
COMMENT ON COLUMN cdcsync.evaluation_daily.overall IS '综合得分（已测量各维度的平均）';
COMMENT ON COLUMN cdcsync.evaluation_daily.details IS '各项指标与计算依据';
COMMENT ON COLUMN cdcsync.evaluation_daily.computed_at IS '计算时间';

CREATE TABLE IF NOT EXISTS cdcsync.platform_notice (
    destination text PRIMARY KEY,
    announced   jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdcsync.platform_notice IS '平台在心跳应答中公布的最新版本（软件、值域代码、规则包），用于适应性评价';
COMMENT ON COLUMN cdcsync.platform_notice.destination IS '目的地名称';
COMMENT ON COLUMN cdcsync.platform_notice.announced IS '平台公布的最新版本';
COMMENT ON COLUMN cdcsync.platform_notice.received_at IS '收到时间';
