-- 监测预警病例每日统计（供数据库管理员、防保科查询）：按生成日期（北京时间）、发现途径、状态、责任科室、
-- 传染病类别汇总生成数、按时处理数、超时数。
-- Developer notes: one row per (day, kind, status, dept, class); "in time" = closed (any closed
-- status) at or before due_at; overdue = open and past due now, or closed after due_at. The day is
-- the Beijing date of created_at (surveil_case_created_idx serves a range on created_at).

CREATE OR REPLACE VIEW recon.pending_cases AS
SELECT (c.created_at AT TIME ZONE 'Asia/Shanghai')::date AS day,
       c.kind,
       CASE c.kind
           WHEN 'notifiable_diagnosis' THEN '法定传染病诊断'
           WHEN 'suspected' THEN '疑似病例待确诊'
           WHEN 'positive_pathogen' THEN '病原学检测阳性'
           WHEN 'special_drug' THEN '特殊用药'
           WHEN 'death' THEN '死亡病例'
           WHEN 'card_mismatch' THEN '报告卡与诊断不一致'
       END AS kind_label,
       c.status,
       coalesce(c.dept_code, '') AS dept_code,
       c.disease_class,
       count(*)::bigint AS opened,
       count(*) FILTER (WHERE c.closed_at IS NOT NULL AND c.closed_at <= c.due_at)::bigint AS closed_in_time,
       count(*) FILTER (WHERE c.closed_at IS NOT NULL AND c.closed_at > c.due_at)::bigint AS closed_late,
       count(*) FILTER (WHERE c.closed_at IS NULL)::bigint AS still_open,
       count(*) FILTER (WHERE c.closed_at IS NULL AND c.due_at < now())::bigint AS overdue_open,
       count(*) FILTER (WHERE (c.closed_at IS NULL AND c.due_at < now()) OR c.closed_at > c.due_at)::bigint AS overdue
  FROM cdcsync.surveil_case c
 GROUP BY 1, 2, 3, 4, 5, 6;
COMMENT ON VIEW recon.pending_cases IS '监测预警病例每日统计：按生成日期（北京时间）、发现途径、状态、责任科室、传染病类别汇总';
COMMENT ON COLUMN recon.pending_cases.day IS '病例生成日期（北京时间）';
COMMENT ON COLUMN recon.pending_cases.kind IS '发现途径代码';
COMMENT ON COLUMN recon.pending_cases.kind_label IS '发现途径名称';
COMMENT ON COLUMN recon.pending_cases.status IS '当前状态（待确认、待确诊、待核查、已报卡、已排除、已订正、已过期）';
COMMENT ON COLUMN recon.pending_cases.dept_code IS '责任科室代码（无科室为空串）';
COMMENT ON COLUMN recon.pending_cases.disease_class IS '传染病类别：甲、乙、丙、其他';
COMMENT ON COLUMN recon.pending_cases.opened IS '生成的病例数';
COMMENT ON COLUMN recon.pending_cases.closed_in_time IS '在报告时限内结案的病例数';
COMMENT ON COLUMN recon.pending_cases.closed_late IS '超过报告时限才结案的病例数';
COMMENT ON COLUMN recon.pending_cases.still_open IS '尚未结案的病例数';
COMMENT ON COLUMN recon.pending_cases.overdue_open IS '尚未结案且已超过报告时限的病例数';
COMMENT ON COLUMN recon.pending_cases.overdue IS '超时病例数（未结案已超时，或超时后才结案）';
