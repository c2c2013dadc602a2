-- 医生与防保科工作台（PC端web服务 8884）：单点登录、会话、前置软件填写的传染病报告卡、回传院内系统的报告卡、审计日志。
-- 报告卡、回传记录与审计日志只增不删：订正生成新版本，删除是报告卡的一种状态，审计日志不可修改。
-- Developer notes: cdcsync/workbench/store.py is the only writer. Sessions are keyed by the SM3 hash
-- of the cookie value (a database dump does not hand out live sessions). The audit log names who,
-- role, when, what and which case/card/patient id — never field values. docs/workbench.md.

CREATE TABLE IF NOT EXISTS cdcsync.wb_sso_nonce (
    his      text NOT NULL,
    nonce    text NOT NULL,
    iat      timestamptz NOT NULL,
    used_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (his, nonce)
);
CREATE INDEX IF NOT EXISTS wb_sso_nonce_used_idx ON cdcsync.wb_sso_nonce (used_at);
COMMENT ON TABLE cdcsync.wb_sso_nonce IS '已使用的单点登录票据随机数（防重放；过期后清理）';
COMMENT ON COLUMN cdcsync.wb_sso_nonce.his IS '签发票据的院内系统名称';
COMMENT ON COLUMN cdcsync.wb_sso_nonce.nonce IS '票据随机数';
COMMENT ON COLUMN cdcsync.wb_sso_nonce.iat IS '票据签发时间';
COMMENT ON COLUMN cdcsync.wb_sso_nonce.used_at IS '使用时间';

CREATE TABLE IF NOT EXISTS cdcsync.wb_session (
    session_hash  text PRIMARY KEY,
    csrf          text NOT NULL,
    his           text NOT NULL,
    staff_id      text NOT NULL,
    staff_name    text NOT NULL,
    dept_code     text NOT NULL,
    dept_name     text,
    role          text NOT NULL CHECK (role IN ('doctor', 'public_health', 'admin')),
    patient_id    text,
    visit_id      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz
);
CREATE INDEX IF NOT EXISTS wb_session_seen_idx ON cdcsync.wb_session (last_seen_at);
COMMENT ON TABLE cdcsync.wb_session IS '工作台会话（由单点登录票据建立，闲置超时后失效）';
COMMENT ON COLUMN cdcsync.wb_session.session_hash IS '会话 Cookie 的 SM3 摘要（不存 Cookie 原值）';
COMMENT ON COLUMN cdcsync.wb_session.csrf IS '表单防伪令牌';
COMMENT ON COLUMN cdcsync.wb_session.his IS '签发票据的院内系统';
COMMENT ON COLUMN cdcsync.wb_session.staff_id IS '医务人员工号';
COMMENT ON COLUMN cdcsync.wb_session.staff_name IS '医务人员姓名';
COMMENT ON COLUMN cdcsync.wb_session.dept_code IS '科室代码';
COMMENT ON COLUMN cdcsync.wb_session.dept_name IS '科室名称';
COMMENT ON COLUMN cdcsync.wb_session.role IS '角色：doctor 医生，public_health 防保科，admin 管理员';
COMMENT ON COLUMN cdcsync.wb_session.patient_id IS '票据带入的当前患者';
COMMENT ON COLUMN cdcsync.wb_session.visit_id IS '票据带入的当前就诊';
COMMENT ON COLUMN cdcsync.wb_session.created_at IS '建立时间';
COMMENT ON COLUMN cdcsync.wb_session.last_seen_at IS '最近访问时间';
COMMENT ON COLUMN cdcsync.wb_session.ended_at IS '结束时间（退出或超时）';

CREATE TABLE IF NOT EXISTS cdcsync.wb_card (
    card_row_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    card_id        text NOT NULL,
    version        integer NOT NULL CHECK (version >= 1),
    case_id        bigint REFERENCES cdcsync.surveil_case (case_id),
    status         text NOT NULL CHECK (status IN ('待审核', '已通过', '已退回', '已订正', '已删除')),
    org_code       text NOT NULL,
    patient_id     text NOT NULL,
    visit_id       text,
    disease_code   text NOT NULL,
    disease_name   text NOT NULL,
    dept_code      text NOT NULL,
    doctor_id      text NOT NULL,
    doctor_name    text NOT NULL,
    fields         jsonb NOT NULL,
    supplement_kind text,
    supplement     jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    reviewed_at    timestamptz,
    reviewed_by    text,
    review_reason  text,
    UNIQUE (card_id, version),
    CONSTRAINT wb_card_return_has_reason CHECK (status NOT IN ('已退回', '已删除') OR length(btrim(review_reason)) > 0)
);
CREATE INDEX IF NOT EXISTS wb_card_patient_idx ON cdcsync.wb_card (patient_id, card_row_id);
CREATE INDEX IF NOT EXISTS wb_card_doctor_idx ON cdcsync.wb_card (doctor_id, status);
COMMENT ON TABLE cdcsync.wb_card IS '前置软件填写的传染病报告卡（2019 版），每次订正一个新版本，旧版本保留；只增不删';
COMMENT ON COLUMN cdcsync.wb_card.card_row_id IS '记录编号';
COMMENT ON COLUMN cdcsync.wb_card.card_id IS '报告卡编号（各版本相同）';
COMMENT ON COLUMN cdcsync.wb_card.version IS '版本号（订正时递增）';
COMMENT ON COLUMN cdcsync.wb_card.case_id IS '对应的监测预警病例';
COMMENT ON COLUMN cdcsync.wb_card.status IS '状态：待审核、已通过、已退回、已订正（被新版本取代）、已删除';
COMMENT ON COLUMN cdcsync.wb_card.org_code IS '医疗机构代码';
COMMENT ON COLUMN cdcsync.wb_card.patient_id IS '患者唯一标识';
COMMENT ON COLUMN cdcsync.wb_card.visit_id IS '就诊流水号';
COMMENT ON COLUMN cdcsync.wb_card.disease_code IS '传染病病种代码（国家值域）';
COMMENT ON COLUMN cdcsync.wb_card.disease_name IS '传染病病种名称';
COMMENT ON COLUMN cdcsync.wb_card.dept_code IS '报告科室代码';
COMMENT ON COLUMN cdcsync.wb_card.doctor_id IS '报告医生工号';
COMMENT ON COLUMN cdcsync.wb_card.doctor_name IS '报告医生姓名';
COMMENT ON COLUMN cdcsync.wb_card.fields IS '报告卡内容（字段名见 cdcsync/workbench/card.py，代码为国家值域代码）';
COMMENT ON COLUMN cdcsync.wb_card.supplement_kind IS '附卡类别（如 hepatitis_b 乙肝附卡）';
COMMENT ON COLUMN cdcsync.wb_card.supplement IS '附卡内容';
COMMENT ON COLUMN cdcsync.wb_card.created_at IS '填报时间';
COMMENT ON COLUMN cdcsync.wb_card.reviewed_at IS '防保科审核时间';
COMMENT ON COLUMN cdcsync.wb_card.reviewed_by IS '审核人工号';
COMMENT ON COLUMN cdcsync.wb_card.review_reason IS '退回或删除的原因（医生在弹窗中可见）';

-- 报告卡内容不可修改（订正生成新版本），记录不可删除；只有状态与审核信息可以更新。
CREATE OR REPLACE FUNCTION cdcsync.wb_card_keep_content() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
BEGIN
    IF (NEW.card_id, NEW.version, NEW.case_id, NEW.patient_id, NEW.fields, NEW.supplement, NEW.created_at,
        NEW.doctor_id, NEW.disease_code)
       IS DISTINCT FROM
       (OLD.card_id, OLD.version, OLD.case_id, OLD.patient_id, OLD.fields, OLD.supplement, OLD.created_at,
        OLD.doctor_id, OLD.disease_code) THEN
        RAISE EXCEPTION '报告卡 % 第 % 版的内容不可修改，订正请生成新版本', OLD.card_id, OLD.version
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION cdcsync.wb_card_keep_content() IS '报告卡内容不可修改（订正生成新版本）';

CREATE OR REPLACE FUNCTION cdcsync.wb_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '工作台记录不可%：% 只增不删', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
COMMENT ON FUNCTION cdcsync.wb_refuse_change() IS '拒绝删除报告卡、回传记录，拒绝修改或删除审计日志';

CREATE TRIGGER wb_card_content BEFORE UPDATE ON cdcsync.wb_card
    FOR EACH ROW EXECUTE FUNCTION cdcsync.wb_card_keep_content();
CREATE TRIGGER wb_card_no_delete BEFORE DELETE ON cdcsync.wb_card
    FOR EACH ROW EXECUTE FUNCTION cdcsync.wb_refuse_change();
CREATE TRIGGER wb_card_no_truncate BEFORE TRUNCATE ON cdcsync.wb_card
    FOR EACH STATEMENT EXECUTE FUNCTION cdcsync.wb_refuse_change();

-- 院内传报卡数据回传：院内系统（HIS）读取本表，处理后填写 written_back_at。每个事件一行（新报卡、订正、审核通过、退回、删除）。
CREATE SCHEMA IF NOT EXISTS writeback;
COMMENT ON SCHEMA writeback IS '回传院内系统的数据（院内系统只读，仅可填写回传确认时间）';

CREATE TABLE IF NOT EXISTS writeback.report_card (
    writeback_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event           text NOT NULL CHECK (event IN ('新报卡', '订正', '审核通过', '退回', '删除')),
    card_id         text NOT NULL,
    version         integer NOT NULL,
    card_status     text NOT NULL,
    case_id         bigint,
    org_code        text NOT NULL,
    patient_id      text NOT NULL,
    visit_id        text,
    disease_code    text NOT NULL,
    disease_name    text NOT NULL,
    doctor_id       text NOT NULL,
    dept_code       text NOT NULL,
    reason          text,
    card            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    written_back_at timestamptz,
    his_note        text,
    callback_attempts integer NOT NULL DEFAULT 0,
    callback_next_at  timestamptz,
    callback_error    text
);
CREATE INDEX IF NOT EXISTS writeback_report_card_pending_idx ON writeback.report_card (writeback_id)
    WHERE written_back_at IS NULL;
COMMENT ON TABLE writeback.report_card IS '院内传报卡数据回传：前置软件填写、订正、审核的传染病报告卡，院内系统读取后填写 written_back_at';
COMMENT ON COLUMN writeback.report_card.writeback_id IS '回传记录编号（递增，院内系统按此顺序读取）';
COMMENT ON COLUMN writeback.report_card.event IS '事件：新报卡、订正、审核通过、退回、删除';
COMMENT ON COLUMN writeback.report_card.card_id IS '报告卡编号';
COMMENT ON COLUMN writeback.report_card.version IS '报告卡版本号';
COMMENT ON COLUMN writeback.report_card.card_status IS '事件发生后报告卡的状态';
COMMENT ON COLUMN writeback.report_card.case_id IS '监测预警病例编号';
COMMENT ON COLUMN writeback.report_card.org_code IS '医疗机构代码';
COMMENT ON COLUMN writeback.report_card.patient_id IS '患者唯一标识';
COMMENT ON COLUMN writeback.report_card.visit_id IS '就诊流水号';
COMMENT ON COLUMN writeback.report_card.disease_code IS '传染病病种代码（国家值域）';
COMMENT ON COLUMN writeback.report_card.disease_name IS '传染病病种名称';
COMMENT ON COLUMN writeback.report_card.doctor_id IS '报告医生工号';
COMMENT ON COLUMN writeback.report_card.dept_code IS '报告科室代码';
COMMENT ON COLUMN writeback.report_card.reason IS '退回或删除的原因';
COMMENT ON COLUMN writeback.report_card.card IS '报告卡内容（含附卡），代码为国家值域代码';
COMMENT ON COLUMN writeback.report_card.created_at IS '生成时间';
COMMENT ON COLUMN writeback.report_card.written_back_at IS '院内系统已接收的时间（由院内系统填写）';
COMMENT ON COLUMN writeback.report_card.his_note IS '院内系统备注（由院内系统填写）';
COMMENT ON COLUMN writeback.report_card.callback_attempts IS '回调院内系统接口的次数（配置了回调地址时）';
COMMENT ON COLUMN writeback.report_card.callback_next_at IS '下次重试回调的时间';
COMMENT ON COLUMN writeback.report_card.callback_error IS '最近一次回调失败的原因（不含患者信息）';

CREATE TRIGGER writeback_report_card_no_delete BEFORE DELETE ON writeback.report_card
    FOR EACH ROW EXECUTE FUNCTION cdcsync.wb_refuse_change();
CREATE TRIGGER writeback_report_card_no_truncate BEFORE TRUNCATE ON writeback.report_card
    FOR EACH STATEMENT EXECUTE FUNCTION cdcsync.wb_refuse_change();

CREATE TABLE IF NOT EXISTS cdcsync.wb_audit (
    audit_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor      text NOT NULL,
    role       text NOT NULL,
    his        text,
    action     text NOT NULL,
    allowed    boolean NOT NULL DEFAULT true,
    case_id    bigint,
    card_id    text,
    patient_id text,
    detail     text
);
CREATE INDEX IF NOT EXISTS wb_audit_at_idx ON cdcsync.wb_audit (at);
CREATE INDEX IF NOT EXISTS wb_audit_patient_idx ON cdcsync.wb_audit (patient_id, at);
COMMENT ON TABLE cdcsync.wb_audit IS '工作台审计日志：每次查看患者数据与每次操作（谁、角色、何时、做什么、哪个病例或报告卡），不记录字段值；只追加';
COMMENT ON COLUMN cdcsync.wb_audit.audit_id IS '日志编号';
COMMENT ON COLUMN cdcsync.wb_audit.at IS '时间';
COMMENT ON COLUMN cdcsync.wb_audit.actor IS '操作人工号（登录失败时为票据所称的工号或空）';
COMMENT ON COLUMN cdcsync.wb_audit.role IS '角色';
COMMENT ON COLUMN cdcsync.wb_audit.his IS '单点登录来源院内系统';
COMMENT ON COLUMN cdcsync.wb_audit.action IS '操作（如 sso_login、view_popup、view_card_form、save_card、exclude、snooze、review_approve、review_return）';
COMMENT ON COLUMN cdcsync.wb_audit.allowed IS '是否允许（false：被拒绝的访问）';
COMMENT ON COLUMN cdcsync.wb_audit.case_id IS '病例编号';
COMMENT ON COLUMN cdcsync.wb_audit.card_id IS '报告卡编号';
COMMENT ON COLUMN cdcsync.wb_audit.patient_id IS '患者唯一标识';
COMMENT ON COLUMN cdcsync.wb_audit.detail IS '说明（拒绝原因、版本号等，不含患者信息）';

-- 审计日志不可修改；只有保留期清理（cdcsync/workbench/store.py purge_audit，事务内设置 cdcsync.audit_purge）
-- 可以删除 180 天以前的记录（保留期可配置，但不少于 180 天）。
CREATE OR REPLACE FUNCTION cdcsync.wb_audit_guard() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('cdcsync.audit_purge', true) = 'on'
       AND OLD.at < now() - interval '180 days' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '审计日志不可%（只追加；仅保留期清理可删除 180 天以前的记录）', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
COMMENT ON FUNCTION cdcsync.wb_audit_guard() IS '审计日志只追加：拒绝修改；删除仅限保留期清理且记录早于 180 天';

CREATE TRIGGER wb_audit_append_only BEFORE UPDATE OR DELETE ON cdcsync.wb_audit
    FOR EACH ROW EXECUTE FUNCTION cdcsync.wb_audit_guard();
CREATE TRIGGER wb_audit_no_truncate BEFORE TRUNCATE ON cdcsync.wb_audit
    FOR EACH STATEMENT EXECUTE FUNCTION cdcsync.wb_refuse_change();
