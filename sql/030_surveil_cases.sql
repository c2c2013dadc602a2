-- 传染病监测预警：待确认/待确诊/待核查病例（预警病例）、证据与处理记录。
-- 规则引擎（cdcsync/surveil）在其复制位点的同一事务中写入；医生、防保科的处理（确认、暂缓、排除、已报卡）
-- 由提醒接口（8881）与工作台（8884）写入。病例表中的任何记录都不删除：更正以新的处理记录体现。
-- Developer notes: cdcsync/surveil/cases.py is the only writer. One open case per
-- (org_code, patient_id, disease_code) is enforced by a partial unique index; evidence holds
-- event ids and row keys only (never other row values); history and evidence are append-only,
-- nothing is deleted (triggers, and sql/210_surveil_grants.sql revokes DELETE/TRUNCATE).

CREATE TABLE IF NOT EXISTS cdcsync.surveil_case (
    case_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status         text NOT NULL CHECK (status IN ('待确认', '待确诊', '待核查', '已报卡', '已排除', '已订正', '已过期')),
    kind           text NOT NULL CHECK (kind IN ('notifiable_diagnosis', 'suspected', 'positive_pathogen',
                                                 'special_drug', 'death', 'card_mismatch')),
    disease_code   text NOT NULL,
    disease_name   text NOT NULL,
    disease_class  text NOT NULL CHECK (disease_class IN ('甲', '乙', '丙', '其他')),
    org_code       text NOT NULL,
    patient_id     text NOT NULL,
    visit_id       text,
    doctor_id      text,
    doctor_name    text,
    dept_code      text,
    signal_at      timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    due_at         timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    snooze_until   timestamptz,
    acked_at       timestamptz,
    acked_by       text,
    closed_at      timestamptz,
    card_no        text,
    close_reason   text,
    pack_version   text NOT NULL,
    CONSTRAINT surveil_case_reported_has_card CHECK (status <> '已报卡' OR card_no IS NOT NULL),
    CONSTRAINT surveil_case_excluded_has_reason CHECK (status <> '已排除' OR length(btrim(close_reason)) > 0),
    CONSTRAINT surveil_case_closed_time CHECK ((status IN ('待确认', '待确诊', '待核查')) = (closed_at IS NULL))
);
COMMENT ON TABLE cdcsync.surveil_case IS '监测预警病例：规则发现的待确认、待确诊、待核查病例及其处理结果（只增不删）';
COMMENT ON COLUMN cdcsync.surveil_case.case_id IS '病例编号';
COMMENT ON COLUMN cdcsync.surveil_case.status IS '状态：待确认、待确诊、待核查（未结）；已报卡、已排除、已订正、已过期（已结）';
COMMENT ON COLUMN cdcsync.surveil_case.kind IS '发现途径：notifiable_diagnosis 法定传染病诊断，suspected 疑似待确诊，positive_pathogen 病原学阳性，special_drug 特殊用药，death 死亡，card_mismatch 报告卡与诊断不一致';
COMMENT ON COLUMN cdcsync.surveil_case.disease_code IS '法定传染病病种代码（国家值域）';
COMMENT ON COLUMN cdcsync.surveil_case.disease_name IS '法定传染病病种名称';
COMMENT ON COLUMN cdcsync.surveil_case.disease_class IS '传染病类别：甲、乙、丙、其他';
COMMENT ON COLUMN cdcsync.surveil_case.org_code IS '医疗机构代码';
COMMENT ON COLUMN cdcsync.surveil_case.patient_id IS '患者唯一标识';
COMMENT ON COLUMN cdcsync.surveil_case.visit_id IS '触发病例的就诊流水号';
COMMENT ON COLUMN cdcsync.surveil_case.doctor_id IS '责任医生工号（首诊责任制：触发诊断或医嘱的医生，否则为接诊医生）';
COMMENT ON COLUMN cdcsync.surveil_case.doctor_name IS '责任医生姓名';
COMMENT ON COLUMN cdcsync.surveil_case.dept_code IS '责任科室代码';
COMMENT ON COLUMN cdcsync.surveil_case.signal_at IS '触发信号的提交时间（HIS 写入镜像库的时间）';
COMMENT ON COLUMN cdcsync.surveil_case.created_at IS '病例生成时间';
COMMENT ON COLUMN cdcsync.surveil_case.due_at IS '应报告时限（甲类及按甲类管理的乙类 2 小时，其他 24 小时，自触发信号起算）';
COMMENT ON COLUMN cdcsync.surveil_case.updated_at IS '最近更新时间';
COMMENT ON COLUMN cdcsync.surveil_case.snooze_until IS '暂缓提醒至';
COMMENT ON COLUMN cdcsync.surveil_case.acked_at IS '医生首次确认已阅的时间';
COMMENT ON COLUMN cdcsync.surveil_case.acked_by IS '首次确认已阅的人员工号';
COMMENT ON COLUMN cdcsync.surveil_case.closed_at IS '结案时间';
COMMENT ON COLUMN cdcsync.surveil_case.card_no IS '报告卡编号（已报卡时必填）';
COMMENT ON COLUMN cdcsync.surveil_case.close_reason IS '结案说明（已排除时必填）';
COMMENT ON COLUMN cdcsync.surveil_case.pack_version IS '生成病例的规则包版本';

-- 同一机构、患者、病种只能有一个未结病例：新信号追加证据，不重复生成病例。
CREATE UNIQUE INDEX IF NOT EXISTS surveil_case_one_open
    ON cdcsync.surveil_case (org_code, patient_id, disease_code)
    WHERE status IN ('待确认', '待确诊', '待核查');
CREATE INDEX IF NOT EXISTS surveil_case_doctor_idx ON cdcsync.surveil_case (doctor_id, status, case_id);
CREATE INDEX IF NOT EXISTS surveil_case_dept_idx ON cdcsync.surveil_case (dept_code, status, case_id);
CREATE INDEX IF NOT EXISTS surveil_case_created_idx ON cdcsync.surveil_case (created_at);
CREATE INDEX IF NOT EXISTS surveil_case_open_due_idx ON cdcsync.surveil_case (due_at)
    WHERE status IN ('待确认', '待确诊', '待核查');

CREATE TABLE IF NOT EXISTS cdcsync.surveil_case_evidence (
    evidence_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id     bigint NOT NULL REFERENCES cdcsync.surveil_case (case_id),
    event_id    text NOT NULL,
    table_name  text NOT NULL,
    row_key     jsonb NOT NULL,
    rule_id     text NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (case_id, event_id, rule_id)
);
COMMENT ON TABLE cdcsync.surveil_case_evidence IS '病例证据：触发或补充病例的变更事件及其来源记录（只记表名与主键，不存其他字段）';
COMMENT ON COLUMN cdcsync.surveil_case_evidence.evidence_id IS '证据编号';
COMMENT ON COLUMN cdcsync.surveil_case_evidence.case_id IS '病例编号';
COMMENT ON COLUMN cdcsync.surveil_case_evidence.event_id IS '变更事件标识（与上报事件一致，确定性）';
COMMENT ON COLUMN cdcsync.surveil_case_evidence.table_name IS '来源镜像表名';
COMMENT ON COLUMN cdcsync.surveil_case_evidence.row_key IS '来源记录主键';
COMMENT ON COLUMN cdcsync.surveil_case_evidence.rule_id IS '命中的规则编号';
COMMENT ON COLUMN cdcsync.surveil_case_evidence.added_at IS '加入时间';

CREATE TABLE IF NOT EXISTS cdcsync.surveil_case_history (
    history_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id     bigint NOT NULL REFERENCES cdcsync.surveil_case (case_id),
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text NOT NULL CHECK (length(btrim(actor)) > 0),
    actor_role  text NOT NULL CHECK (actor_role IN ('rules', 'doctor', 'public_health', 'admin', 'his')),
    action      text NOT NULL CHECK (action IN ('open', 'evidence', 'upgrade', 'ack', 'snooze', 'exclude',
                                                'reported', 'correct', 'expire')),
    from_status text,
    to_status   text NOT NULL,
    reason      text,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS surveil_case_history_case_idx ON cdcsync.surveil_case_history (case_id, history_id);
COMMENT ON TABLE cdcsync.surveil_case_history IS '病例处理记录：每一次状态变化与操作（谁、何时、由何状态到何状态、原因），只追加';
COMMENT ON COLUMN cdcsync.surveil_case_history.history_id IS '记录编号（递增）';
COMMENT ON COLUMN cdcsync.surveil_case_history.case_id IS '病例编号';
COMMENT ON COLUMN cdcsync.surveil_case_history.at IS '操作时间';
COMMENT ON COLUMN cdcsync.surveil_case_history.actor IS '操作人（医生工号；规则引擎为 rules:规则包版本）';
COMMENT ON COLUMN cdcsync.surveil_case_history.actor_role IS '操作人角色：rules 规则引擎，doctor 医生，public_health 防保科，admin 管理员，his 院内系统';
COMMENT ON COLUMN cdcsync.surveil_case_history.action IS '操作：open 生成，evidence 追加证据，upgrade 升级，ack 已阅，snooze 暂缓，exclude 排除，reported 已报卡，correct 订正，expire 过期';
COMMENT ON COLUMN cdcsync.surveil_case_history.from_status IS '原状态（生成时为空）';
COMMENT ON COLUMN cdcsync.surveil_case_history.to_status IS '新状态';
COMMENT ON COLUMN cdcsync.surveil_case_history.reason IS '原因或说明';
COMMENT ON COLUMN cdcsync.surveil_case_history.detail IS '附加信息（报告卡编号、暂缓时限、事件标识等，不含患者信息）';

-- 只增不删：病例不可删除，证据与处理记录不可修改或删除，三张表均不可清空。
CREATE OR REPLACE FUNCTION cdcsync.surveil_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '监测预警病例记录不可%：% 只增不删，更正请追加处理记录', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
COMMENT ON FUNCTION cdcsync.surveil_refuse_change() IS '拒绝删除、清空病例表，拒绝修改证据与处理记录';

CREATE OR REPLACE FUNCTION cdcsync.surveil_case_keep_identity() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
BEGIN
    IF (NEW.case_id, NEW.kind, NEW.disease_code, NEW.org_code, NEW.patient_id, NEW.created_at, NEW.signal_at)
       IS DISTINCT FROM
       (OLD.case_id, OLD.kind, OLD.disease_code, OLD.org_code, OLD.patient_id, OLD.created_at, OLD.signal_at) THEN
        RAISE EXCEPTION '病例 % 的编号、发现途径、病种、机构、患者与生成时间不可修改', OLD.case_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.status NOT IN ('待确认', '待确诊', '待核查') AND NEW.status IS DISTINCT FROM OLD.status THEN
        RAISE EXCEPTION '病例 % 已结案（%），不可改为 %', OLD.case_id, OLD.status, NEW.status
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION cdcsync.surveil_case_keep_identity() IS '病例的身份字段不可修改，已结案病例不可重开';

CREATE TRIGGER surveil_case_no_delete BEFORE DELETE ON cdcsync.surveil_case
    FOR EACH ROW EXECUTE FUNCTION cdcsync.surveil_refuse_change();
CREATE TRIGGER surveil_case_no_truncate BEFORE TRUNCATE ON cdcsync.surveil_case
    FOR EACH STATEMENT EXECUTE FUNCTION cdcsync.surveil_refuse_change();
CREATE TRIGGER surveil_case_identity BEFORE UPDATE ON cdcsync.surveil_case
    FOR EACH ROW EXECUTE FUNCTION cdcsync.surveil_case_keep_identity();
CREATE TRIGGER surveil_case_evidence_append_only BEFORE UPDATE OR DELETE ON cdcsync.surveil_case_evidence
    FOR EACH ROW EXECUTE FUNCTION cdcsync.surveil_refuse_change();
CREATE TRIGGER surveil_case_evidence_no_truncate BEFORE TRUNCATE ON cdcsync.surveil_case_evidence
    FOR EACH STATEMENT EXECUTE FUNCTION cdcsync.surveil_refuse_change();
CREATE TRIGGER surveil_case_history_append_only BEFORE UPDATE OR DELETE ON cdcsync.surveil_case_history
    FOR EACH ROW EXECUTE FUNCTION cdcsync.surveil_refuse_change();
CREATE TRIGGER surveil_case_history_no_truncate BEFORE TRUNCATE ON cdcsync.surveil_case_history
    FOR EACH STATEMENT EXECUTE FUNCTION cdcsync.surveil_refuse_change();

-- 规则引擎（内部消费者）的复制位点：与病例、处理记录在同一事务中写入（病例恰好一次）。
CREATE TABLE IF NOT EXISTS cdcsync.surveil_checkpoint (
    consumer     text PRIMARY KEY,
    slot_name    text NOT NULL,
    applied_lsn  pg_lsn NOT NULL DEFAULT '0/0',
    pack_version text,
    last_commit_at timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdcsync.surveil_checkpoint IS '规则引擎已处理到的复制位点（与病例同一事务写入，崩溃后不丢、不重）';
COMMENT ON COLUMN cdcsync.surveil_checkpoint.consumer IS '消费者名称';
COMMENT ON COLUMN cdcsync.surveil_checkpoint.slot_name IS '逻辑复制槽名称';
COMMENT ON COLUMN cdcsync.surveil_checkpoint.applied_lsn IS '已处理（病例已写入）的最高提交位点';
COMMENT ON COLUMN cdcsync.surveil_checkpoint.pack_version IS '处理时使用的规则包版本';
COMMENT ON COLUMN cdcsync.surveil_checkpoint.last_commit_at IS '最近处理的事务提交时间';
COMMENT ON COLUMN cdcsync.surveil_checkpoint.updated_at IS '更新时间';
