-- 数据操作 API 密钥的用途范围：data（推送 EMR 数据）、reminders（读取监测预警提醒、回写处理结果）；
-- 提醒用途可限定医生工号与科室。
-- Developer notes: existing keys keep what they could do ('{data}'). scope_doctors / scope_depts
-- NULL = any doctor / any department of this hospital (e.g. the HIS's own popup service acting for
-- every doctor); a list narrows what the key may read and act on (cdcsync/api/auth.py).

ALTER TABLE cdcsync.api_key
    ADD COLUMN IF NOT EXISTS scope_apis text[] NOT NULL DEFAULT '{data}'
        CHECK (cardinality(scope_apis) > 0 AND scope_apis <@ '{data,reminders}'::text[]),
    ADD COLUMN IF NOT EXISTS scope_doctors text[]
        CHECK (scope_doctors IS NULL OR cardinality(scope_doctors) > 0),
    ADD COLUMN IF NOT EXISTS scope_depts text[]
        CHECK (scope_depts IS NULL OR cardinality(scope_depts) > 0);
COMMENT ON COLUMN cdcsync.api_key.scope_apis IS '密钥用途：data 推送 EMR 数据，reminders 读取监测预警提醒并回写处理结果';
COMMENT ON COLUMN cdcsync.api_key.scope_doctors IS '提醒用途允许的医生工号；为空表示本机构全部医生';
COMMENT ON COLUMN cdcsync.api_key.scope_depts IS '提醒用途允许的科室代码；为空表示本机构全部科室';
