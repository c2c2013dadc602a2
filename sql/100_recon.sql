-- 每日对账（数据监控与比对）：schema recon 的参考表、视图与索引，以及投递时效、传输计数表。
-- Daily reconciliation for DBAs (requirements 四 and 六). Views are documented in docs/reconciliation.md.
--
-- Developer notes
-- * Every per-day view groups by a DATE expression of a mirror column; a filter on that output
--   column is pushed into the grouped subqueries, so the expression indexes created below are used
--   (tests/test_recon_report.py::test_year_of_data_uses_indexes shows the plan).
-- * Coded mirror columns hold LOCAL codes. recon.code_map (filled from mappings/ by
--   cdcsync.recon.codemap.sync_reference, run by `cdcsync reconcile`, `cdcsync nndrs import`) turns
--   them into national codes inside the views.
-- * recon.table_daily_counts lists every dataset table by hand; tests/test_recon_views.py fails when
--   the spec gains a table or changes a business time, so this file is updated with it.

CREATE SCHEMA IF NOT EXISTS recon;
COMMENT ON SCHEMA recon IS '每日对账：镜像库、投递统计与大疫情网（NNDRS）报告卡的比对视图';

-- ------------------------------------------------------------------------------------------------
-- Reference tables filled from the mapping files

CREATE TABLE recon.code_map (
    domain        text NOT NULL,
    local_code    text NOT NULL,
    national_code text NOT NULL,
    PRIMARY KEY (domain, local_code)
);
COMMENT ON TABLE recon.code_map IS '本院代码到国家值域代码的对照（由 mappings/ 目录的对照表同步，含直通的国家代码）';
COMMENT ON COLUMN recon.code_map.domain IS '值域标识（如 sex、visit_type）';
COMMENT ON COLUMN recon.code_map.local_code IS '本院代码';
COMMENT ON COLUMN recon.code_map.national_code IS '国家值域代码';

CREATE TABLE recon.visit_class (
    national_code text PRIMARY KEY,
    visit_class   text NOT NULL CHECK (visit_class IN ('outpatient', 'emergency', 'inpatient', 'other'))
);
COMMENT ON TABLE recon.visit_class IS '就诊类型国家代码的归类（门诊、急诊、住院），由值域名称同步';
COMMENT ON COLUMN recon.visit_class.national_code IS '就诊类型国家代码';
COMMENT ON COLUMN recon.visit_class.visit_class IS '归类：outpatient 门诊，emergency 急诊，inpatient 住院，other 其他';

CREATE TABLE recon.notifiable_disease (
    disease_code text PRIMARY KEY,
    disease_name text NOT NULL,
    category     text NOT NULL,
    parent_code  text
);
COMMENT ON TABLE recon.notifiable_disease IS '法定传染病病种及其类别（由国家值域 notifiable_disease 同步）';
COMMENT ON COLUMN recon.notifiable_disease.disease_code IS '病种代码';
COMMENT ON COLUMN recon.notifiable_disease.disease_name IS '病种名称';
COMMENT ON COLUMN recon.notifiable_disease.category IS '传染病类别：甲类、乙类、丙类或其他';
COMMENT ON COLUMN recon.notifiable_disease.parent_code IS '上级病种代码（亚型时填写）';

CREATE TABLE recon.disease_icd10 (
    icd10_prefix text NOT NULL,
    disease_code text NOT NULL REFERENCES recon.notifiable_disease ON DELETE CASCADE,
    PRIMARY KEY (icd10_prefix, disease_code)
);
COMMENT ON TABLE recon.disease_icd10 IS 'ICD-10 类目/亚目到法定传染病病种的对应（诊断代码以此前缀开头即属该病种）';
COMMENT ON COLUMN recon.disease_icd10.icd10_prefix IS 'ICD-10 代码前缀';
COMMENT ON COLUMN recon.disease_icd10.disease_code IS '病种代码';

CREATE TABLE recon.timeliness_class (
    timeliness    text PRIMARY KEY,
    label         text NOT NULL,
    limit_seconds integer NOT NULL CHECK (limit_seconds > 0)
);
COMMENT ON TABLE recon.timeliness_class IS '数据上报时效分类及时限（与 cdcsync/recon/latency.py 的 TIMELINESS_LIMITS 一致）';
COMMENT ON COLUMN recon.timeliness_class.timeliness IS '时效分类：realtime、2h、24h、daily';
COMMENT ON COLUMN recon.timeliness_class.label IS '时效分类中文名';
COMMENT ON COLUMN recon.timeliness_class.limit_seconds IS '时限（秒）：自业务发生时间起须被目的地确认接收的时间';
INSERT INTO recon.timeliness_class VALUES
    ('realtime', '实时', 300),
    ('2h', '2小时内', 7200),
    ('24h', '24小时内', 86400),
    ('daily', '每日', 172800);

-- ------------------------------------------------------------------------------------------------
-- NNDRS cards (imported by `cdcsync nndrs import`)

CREATE TABLE recon.nndrs_card (
    card_id          text PRIMARY KEY,
    card_no          text NOT NULL,
    patient_name     text,
    id_no            text,
    sex_code         text,
    birth_date       date,
    population_group text,
    region_code      text,
    disease_name     text NOT NULL,
    disease_code     text,
    case_class_name  text,
    case_class_code  text,
    onset_date       date,
    diagnosis_time   timestamp,
    death_date       date,
    report_org       text,
    report_date      date,
    entry_time       timestamp,
    audit_status     text,
    extra            jsonb NOT NULL DEFAULT '{}'::jsonb,
    source_file      text NOT NULL,
    source_line      integer NOT NULL,
    imported_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX nndrs_card_card_no_idx ON recon.nndrs_card (card_no);
COMMENT ON TABLE recon.nndrs_card IS '从大疫情网（NNDRS）导出并导入的传染病报告卡（按卡片ID幂等更新）';
COMMENT ON COLUMN recon.nndrs_card.card_id IS '卡片ID（大疫情网内部标识；导出无此列时取卡片编号）';
COMMENT ON COLUMN recon.nndrs_card.card_no IS '卡片编号（与前置软件报告卡的卡片编号比对）';
COMMENT ON COLUMN recon.nndrs_card.patient_name IS '患者姓名';
COMMENT ON COLUMN recon.nndrs_card.id_no IS '有效证件号';
COMMENT ON COLUMN recon.nndrs_card.sex_code IS '性别（国家代码）';
COMMENT ON COLUMN recon.nndrs_card.birth_date IS '出生日期';
COMMENT ON COLUMN recon.nndrs_card.population_group IS '人群分类（导出原值）';
COMMENT ON COLUMN recon.nndrs_card.region_code IS '现住地址国标编码';
COMMENT ON COLUMN recon.nndrs_card.disease_name IS '疾病名称（导出原值）';
COMMENT ON COLUMN recon.nndrs_card.disease_code IS '病种代码（按名称对应的国家代码，无法对应时为空）';
COMMENT ON COLUMN recon.nndrs_card.case_class_name IS '病例分类（导出原值）';
COMMENT ON COLUMN recon.nndrs_card.case_class_code IS '病例分类（国家代码）';
COMMENT ON COLUMN recon.nndrs_card.onset_date IS '发病日期';
COMMENT ON COLUMN recon.nndrs_card.diagnosis_time IS '诊断时间';
COMMENT ON COLUMN recon.nndrs_card.death_date IS '死亡日期';
COMMENT ON COLUMN recon.nndrs_card.report_org IS '报告单位';
COMMENT ON COLUMN recon.nndrs_card.report_date IS '填卡日期';
COMMENT ON COLUMN recon.nndrs_card.entry_time IS '录入时间';
COMMENT ON COLUMN recon.nndrs_card.audit_status IS '审核状态';
COMMENT ON COLUMN recon.nndrs_card.extra IS '导出文件中未映射的其他列';
COMMENT ON COLUMN recon.nndrs_card.source_file IS '导入文件名';
COMMENT ON COLUMN recon.nndrs_card.source_line IS '导入文件中的行号';
COMMENT ON COLUMN recon.nndrs_card.imported_at IS '最近一次导入（新增或更新）时间';

-- ------------------------------------------------------------------------------------------------
-- Delivery latency and transmission counters (written by the CDC engine / sinks, see
-- cdcsync/recon/latency.py)

CREATE FUNCTION cdcsync.latency_bounds() RETURNS integer[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY[1,2,5,10,30,60,120,300,600,1200,1800,3600,7200,10800,21600,43200,86400,172800,604800] $$;
COMMENT ON FUNCTION cdcsync.latency_bounds() IS '时延直方图各桶的上界（秒）；最后一桶为超过 604800 秒';

CREATE FUNCTION cdcsync.hist_add(a bigint[], b bigint[]) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a ELSE
        ARRAY(SELECT coalesce(x, 0) + coalesce(y, 0) FROM unnest(a, b) AS u(x, y)) END
    $$;
COMMENT ON FUNCTION cdcsync.hist_add(bigint[], bigint[]) IS '两个时延直方图逐桶相加';

CREATE AGGREGATE cdcsync.hist_sum(bigint[]) (SFUNC = cdcsync.hist_add, STYPE = bigint[]);
COMMENT ON AGGREGATE cdcsync.hist_sum(bigint[]) IS '时延直方图逐桶求和';

CREATE FUNCTION cdcsync.hist_percentile(hist bigint[], p double precision, max_value double precision)
    RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    WITH b AS (
        SELECT i, n, sum(n) OVER (ORDER BY i) AS cum, sum(n) OVER () AS total
        FROM unnest(hist) WITH ORDINALITY AS h(n, i)
    )
    SELECT least((cdcsync.latency_bounds())[i], max_value)::double precision
    FROM b WHERE total > 0 AND cum >= p * total ORDER BY i LIMIT 1
    $$;
COMMENT ON FUNCTION cdcsync.hist_percentile(bigint[], double precision, double precision)
    IS '由直方图估计分位数（秒）：取累计达到该比例的桶上界，不超过实际最大值';

CREATE TABLE cdcsync.delivery_latency (
    destination   text NOT NULL,
    table_name    text NOT NULL,
    business_date date NOT NULL,
    timeliness    text NOT NULL,
    events        bigint NOT NULL DEFAULT 0,
    within_limit  bigint NOT NULL DEFAULT 0,
    business_hist bigint[] NOT NULL,
    commit_hist   bigint[] NOT NULL,
    max_business_s double precision NOT NULL DEFAULT 0,
    max_commit_s  double precision NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (destination, table_name, business_date)
);
CREATE INDEX delivery_latency_date_idx ON cdcsync.delivery_latency (business_date);
COMMENT ON TABLE cdcsync.delivery_latency IS '按目的地、表、业务日期汇总的投递时延直方图（每批一次，与位点同一事务写入）';
COMMENT ON COLUMN cdcsync.delivery_latency.destination IS '目的地名称';
COMMENT ON COLUMN cdcsync.delivery_latency.table_name IS '镜像表名';
COMMENT ON COLUMN cdcsync.delivery_latency.business_date IS '业务日期';
COMMENT ON COLUMN cdcsync.delivery_latency.timeliness IS '该表的时效分类';
COMMENT ON COLUMN cdcsync.delivery_latency.events IS '已确认事件数';
COMMENT ON COLUMN cdcsync.delivery_latency.within_limit IS '自业务时间起在时限内被确认的事件数';
COMMENT ON COLUMN cdcsync.delivery_latency.business_hist IS '自业务时间起至确认的时延直方图（桶见 cdcsync.latency_bounds）';
COMMENT ON COLUMN cdcsync.delivery_latency.commit_hist IS '自提交时间起至确认的时延直方图';
COMMENT ON COLUMN cdcsync.delivery_latency.max_business_s IS '自业务时间起的最大时延（秒）';
COMMENT ON COLUMN cdcsync.delivery_latency.max_commit_s IS '自提交时间起的最大时延（秒）';
COMMENT ON COLUMN cdcsync.delivery_latency.updated_at IS '更新时间';

CREATE TABLE cdcsync.transmission_daily (
    destination     text NOT NULL,
    day             date NOT NULL,
    attempts        bigint NOT NULL DEFAULT 0,
    successes       bigint NOT NULL DEFAULT 0,
    failures        bigint NOT NULL DEFAULT 0,
    retries         bigint NOT NULL DEFAULT 0,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    last_error      text,
    PRIMARY KEY (destination, day)
);
COMMENT ON TABLE cdcsync.transmission_daily IS '各目的地每日发送次数、失败与重试计数';
COMMENT ON COLUMN cdcsync.transmission_daily.destination IS '目的地名称';
COMMENT ON COLUMN cdcsync.transmission_daily.day IS '日期（北京时间）';
COMMENT ON COLUMN cdcsync.transmission_daily.attempts IS '发送批次次数（含重试）';
COMMENT ON COLUMN cdcsync.transmission_daily.successes IS '成功（收到确认）次数';
COMMENT ON COLUMN cdcsync.transmission_daily.failures IS '失败次数';
COMMENT ON COLUMN cdcsync.transmission_daily.retries IS '重试次数';
COMMENT ON COLUMN cdcsync.transmission_daily.last_success_at IS '当日最近一次成功时间';
COMMENT ON COLUMN cdcsync.transmission_daily.last_failure_at IS '当日最近一次失败时间';
COMMENT ON COLUMN cdcsync.transmission_daily.last_error IS '当日最近一次失败原因（不含患者信息）';

-- ------------------------------------------------------------------------------------------------
-- Indexes on the mirror for what the views filter on (business dates, card numbers, stays)

CREATE FUNCTION recon.stay_range(start_time timestamp, end_time timestamp) RETURNS tsrange
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT tsrange(start_time, CASE WHEN end_time < start_time THEN start_time ELSE end_time END, '[]') $$;
COMMENT ON FUNCTION recon.stay_range(timestamp, timestamp) IS '就诊（住院）起止时间区间；未出院时上界为空（无限）';

CREATE INDEX recon_patient_bdate_idx ON emr.patient ((update_time::date));
CREATE INDEX recon_visit_bdate_idx ON emr.visit ((visit_time::date));
CREATE INDEX recon_visit_stay_idx ON emr.visit USING gist (recon.stay_range(visit_time, visit_end_time))
    WHERE inpatient_no IS NOT NULL;
CREATE INDEX recon_diagnosis_bdate_idx ON emr.diagnosis ((diagnosis_time::date));
CREATE INDEX recon_diagnosis_visit_idx ON emr.diagnosis (org_code, visit_id);
CREATE INDEX recon_symptom_bdate_idx ON emr.symptom ((record_time::date));
CREATE INDEX recon_vital_sign_bdate_idx ON emr.vital_sign ((measure_time::date));
CREATE INDEX recon_lab_report_bdate_idx ON emr.lab_report ((report_time::date));
CREATE INDEX recon_lab_result_bdate_idx ON emr.lab_result ((report_time::date));
CREATE INDEX recon_exam_report_bdate_idx ON emr.exam_report ((report_time::date));
CREATE INDEX recon_drug_order_bdate_idx ON emr.drug_order ((order_time::date));
CREATE INDEX recon_progress_note_bdate_idx ON emr.progress_note ((record_time::date));
CREATE INDEX recon_admission_bdate_idx ON emr.admission ((admission_time::date));
CREATE INDEX recon_discharge_bdate_idx ON emr.discharge ((discharge_time::date));
CREATE INDEX recon_medical_record_home_bdate_idx ON emr.medical_record_home ((discharge_time::date));
CREATE INDEX recon_death_record_bdate_idx ON emr.death_record ((death_time::date));
CREATE INDEX recon_report_card_bdate_idx ON emr.report_card ((report_time::date));
CREATE INDEX recon_report_card_card_no_idx ON emr.report_card (card_no);
CREATE INDEX recon_exposure_history_bdate_idx ON emr.exposure_history ((record_time::date));
CREATE INDEX recon_dept_bdate_idx ON emr.dept ((update_time::date));
CREATE INDEX recon_staff_bdate_idx ON emr.staff ((update_time::date));
CREATE INDEX recon_daily_stats_date_idx ON emr.daily_stats (stat_date);

-- ------------------------------------------------------------------------------------------------
-- 1. Per-table daily counts

CREATE VIEW recon.mirror_daily_rows AS
          SELECT 'patient'::text AS table_name, update_time::date AS business_date, count(*) AS mirror_rows FROM emr.patient GROUP BY 2
UNION ALL SELECT 'visit', visit_time::date, count(*) FROM emr.visit GROUP BY 2
UNION ALL SELECT 'diagnosis', diagnosis_time::date, count(*) FROM emr.diagnosis GROUP BY 2
UNION ALL SELECT 'symptom', record_time::date, count(*) FROM emr.symptom GROUP BY 2
UNION ALL SELECT 'vital_sign', measure_time::date, count(*) FROM emr.vital_sign GROUP BY 2
UNION ALL SELECT 'lab_report', report_time::date, count(*) FROM emr.lab_report GROUP BY 2
UNION ALL SELECT 'lab_result', report_time::date, count(*) FROM emr.lab_result GROUP BY 2
UNION ALL SELECT 'exam_report', report_time::date, count(*) FROM emr.exam_report GROUP BY 2
UNION ALL SELECT 'drug_order', order_time::date, count(*) FROM emr.drug_order GROUP BY 2
UNION ALL SELECT 'progress_note', record_time::date, count(*) FROM emr.progress_note GROUP BY 2
UNION ALL SELECT 'admission', admission_time::date, count(*) FROM emr.admission GROUP BY 2
UNION ALL SELECT 'discharge', discharge_time::date, count(*) FROM emr.discharge GROUP BY 2
UNION ALL SELECT 'medical_record_home', discharge_time::date, count(*) FROM emr.medical_record_home GROUP BY 2
UNION ALL SELECT 'death_record', death_time::date, count(*) FROM emr.death_record GROUP BY 2
UNION ALL SELECT 'report_card', report_time::date, count(*) FROM emr.report_card GROUP BY 2
UNION ALL SELECT 'exposure_history', record_time::date, count(*) FROM emr.exposure_history GROUP BY 2
UNION ALL SELECT 'dept', update_time::date, count(*) FROM emr.dept GROUP BY 2
UNION ALL SELECT 'staff', update_time::date, count(*) FROM emr.staff GROUP BY 2
UNION ALL SELECT 'daily_stats', stat_date, count(*) FROM emr.daily_stats GROUP BY 2;
COMMENT ON VIEW recon.mirror_daily_rows IS '镜像库各表按业务日期的记录数（业务日期取数据集规范中该表的业务时间/业务日期字段）';
COMMENT ON COLUMN recon.mirror_daily_rows.table_name IS '镜像表名';
COMMENT ON COLUMN recon.mirror_daily_rows.business_date IS '业务日期';
COMMENT ON COLUMN recon.mirror_daily_rows.mirror_rows IS '镜像库中的记录数';

CREATE VIEW recon.destinations AS
    SELECT destination FROM cdcsync.checkpoint
    UNION
    SELECT DISTINCT destination FROM cdcsync.delivery_stats;
COMMENT ON VIEW recon.destinations IS '已知的上报目的地（位点表与投递统计中出现过的）';
COMMENT ON COLUMN recon.destinations.destination IS '目的地名称';

CREATE VIEW recon.table_daily_counts AS
SELECT business_date, table_name, destination,
       sum(mirror_rows)::bigint AS mirror_rows,
       sum(delivered)::bigint AS delivered,
       sum(quarantined)::bigint AS quarantined,
       greatest(sum(mirror_rows) - sum(delivered) - sum(quarantined), 0)::bigint AS not_delivered
FROM (
    SELECT m.business_date, m.table_name, d.destination, m.mirror_rows, 0::bigint AS delivered, 0::bigint AS quarantined
    FROM recon.mirror_daily_rows m CROSS JOIN recon.destinations d
    UNION ALL
    SELECT s.business_date, s.table_name, s.destination, 0, s.delivered, s.quarantined
    FROM cdcsync.delivery_stats s
) x
GROUP BY business_date, table_name, destination;
COMMENT ON VIEW recon.table_daily_counts IS '按业务日期、表、目的地的记录数比对：镜像库记录数、已投递、已隔离、未投递';
COMMENT ON COLUMN recon.table_daily_counts.business_date IS '业务日期';
COMMENT ON COLUMN recon.table_daily_counts.table_name IS '镜像表名';
COMMENT ON COLUMN recon.table_daily_counts.destination IS '目的地名称';
COMMENT ON COLUMN recon.table_daily_counts.mirror_rows IS '镜像库中该业务日期的记录数';
COMMENT ON COLUMN recon.table_daily_counts.delivered IS '已被目的地确认接收的事件数（同一记录的修改会再次投递，故可大于记录数）';
COMMENT ON COLUMN recon.table_daily_counts.quarantined IS '进入隔离区的事件数';
COMMENT ON COLUMN recon.table_daily_counts.not_delivered IS '尚未投递的记录数（记录数减已投递减已隔离，不小于0）';

-- ------------------------------------------------------------------------------------------------
-- 2. Outpatient / emergency visits against the HIS daily statistics

CREATE VIEW recon.visit_daily_counts AS
SELECT org_code, stat_date,
       coalesce(sum(outpatient_visits), 0)::bigint AS outpatient_visits,
       sum(reported_outpatient)::bigint AS reported_outpatient,
       (coalesce(sum(outpatient_visits), 0) - sum(reported_outpatient))::bigint AS outpatient_diff,
       coalesce(sum(emergency_visits), 0)::bigint AS emergency_visits,
       sum(reported_emergency)::bigint AS reported_emergency,
       (coalesce(sum(emergency_visits), 0) - sum(reported_emergency))::bigint AS emergency_diff
FROM (
    SELECT v.org_code, v.visit_time::date AS stat_date,
           count(*) FILTER (WHERE vc.visit_class = 'outpatient') AS outpatient_visits,
           count(*) FILTER (WHERE vc.visit_class = 'emergency') AS emergency_visits,
           NULL::bigint AS reported_outpatient, NULL::bigint AS reported_emergency
    FROM emr.visit v
    LEFT JOIN recon.code_map vt ON vt.domain = 'visit_type' AND vt.local_code = v.visit_type_code
    LEFT JOIN recon.visit_class vc ON vc.national_code = vt.national_code
    LEFT JOIN recon.code_map mf ON mf.domain = 'modify_flag' AND mf.local_code = v.modify_flag
    WHERE mf.national_code IS DISTINCT FROM '3'
    GROUP BY v.org_code, v.visit_time::date
    UNION ALL
    SELECT s.org_code, s.stat_date, NULL, NULL, s.outpatient_count, s.emergency_count
    FROM emr.daily_stats s
    LEFT JOIN recon.code_map mf ON mf.domain = 'modify_flag' AND mf.local_code = s.modify_flag
    WHERE mf.national_code IS DISTINCT FROM '3'
) x
GROUP BY org_code, stat_date;
COMMENT ON VIEW recon.visit_daily_counts IS '每日门诊、急诊人次：镜像库就诊记录计数与 HIS 上报的每日统计（emr.daily_stats）比对（不含已撤销记录）';
COMMENT ON COLUMN recon.visit_daily_counts.org_code IS '医疗机构代码';
COMMENT ON COLUMN recon.visit_daily_counts.stat_date IS '统计日期（就诊日期）';
COMMENT ON COLUMN recon.visit_daily_counts.outpatient_visits IS '镜像库门诊就诊记录数';
COMMENT ON COLUMN recon.visit_daily_counts.reported_outpatient IS 'HIS 每日统计的门诊人次（未上报时为空）';
COMMENT ON COLUMN recon.visit_daily_counts.outpatient_diff IS '门诊差值：就诊记录数减统计人次';
COMMENT ON COLUMN recon.visit_daily_counts.emergency_visits IS '镜像库急诊就诊记录数';
COMMENT ON COLUMN recon.visit_daily_counts.reported_emergency IS 'HIS 每日统计的急诊人次（未上报时为空）';
COMMENT ON COLUMN recon.visit_daily_counts.emergency_diff IS '急诊差值：就诊记录数减统计人次';

-- ------------------------------------------------------------------------------------------------
-- 3. Inpatients with a notifiable-disease diagnosis

CREATE VIEW recon.notifiable_diagnosis AS
SELECT d.org_code, d.diagnosis_id, d.visit_id, d.patient_id, d.diagnosis_time,
       d.diagnosis_time::date AS diagnosis_date, ic.national_code AS icd10_code,
       nd.disease_code, nd.disease_name, nd.category
FROM emr.diagnosis d
JOIN recon.code_map vt ON vt.domain = 'visit_type' AND vt.local_code = d.visit_type_code
JOIN recon.visit_class vc ON vc.national_code = vt.national_code AND vc.visit_class = 'inpatient'
JOIN recon.code_map ic ON ic.domain = 'icd10' AND ic.local_code = d.diagnosis_code
JOIN LATERAL (
    SELECT n.disease_code, n.disease_name, n.category
    FROM recon.disease_icd10 di JOIN recon.notifiable_disease n USING (disease_code)
    WHERE ic.national_code LIKE di.icd10_prefix || '%'
    ORDER BY length(di.icd10_prefix) DESC, n.parent_code IS NULL, n.disease_code
    LIMIT 1
) nd ON true
LEFT JOIN recon.code_map mf ON mf.domain = 'modify_flag' AND mf.local_code = d.modify_flag
WHERE mf.national_code IS DISTINCT FROM '3';
COMMENT ON VIEW recon.notifiable_diagnosis IS '住院患者的法定传染病诊断（诊断代码经对照为 ICD-10 后按前缀归入病种，取最具体的病种；不含已撤销）';
COMMENT ON COLUMN recon.notifiable_diagnosis.org_code IS '医疗机构代码';
COMMENT ON COLUMN recon.notifiable_diagnosis.diagnosis_id IS '诊断记录流水号';
COMMENT ON COLUMN recon.notifiable_diagnosis.visit_id IS '就诊流水号';
COMMENT ON COLUMN recon.notifiable_diagnosis.patient_id IS '患者唯一标识';
COMMENT ON COLUMN recon.notifiable_diagnosis.diagnosis_time IS '诊断日期时间';
COMMENT ON COLUMN recon.notifiable_diagnosis.diagnosis_date IS '诊断日期';
COMMENT ON COLUMN recon.notifiable_diagnosis.icd10_code IS '诊断代码（国家 ICD-10）';
COMMENT ON COLUMN recon.notifiable_diagnosis.disease_code IS '法定传染病病种代码';
COMMENT ON COLUMN recon.notifiable_diagnosis.disease_name IS '法定传染病病种名称';
COMMENT ON COLUMN recon.notifiable_diagnosis.category IS '传染病类别（甲类、乙类、丙类）';

CREATE VIEW recon.notifiable_inpatient_daily AS
WITH bounds AS (
    SELECT (SELECT min(visit_time)::date FROM emr.visit) AS lo,
           greatest((SELECT max(visit_time)::date FROM emr.visit), (now() AT TIME ZONE 'Asia/Shanghai')::date) AS hi
), days AS (
    SELECT g::date AS day FROM bounds, generate_series(bounds.lo, bounds.hi, interval '1 day') AS g
)
SELECT stat_date, category,
       count(DISTINCT patient_id) FILTER (WHERE in_hospital)::bigint AS inpatients,
       count(*) FILTER (WHERE new_today)::bigint AS new_diagnoses,
       count(DISTINCT patient_id) FILTER (WHERE new_today)::bigint AS new_patients
FROM (
    SELECT days.day AS stat_date, x.category, x.patient_id, x.in_hospital, x.new_today
    FROM days
    CROSS JOIN LATERAL (
        SELECT unnest(ARRAY[nd.category, '合计']) AS category, nd.patient_id, true AS in_hospital, false AS new_today
        FROM (
            -- stays overlapping the day, found through the GiST index; the LATERAL below makes them
            -- drive the join (otherwise the planner may range-scan every earlier diagnosis)
            SELECT v.org_code, v.visit_id FROM emr.visit v
            WHERE v.inpatient_no IS NOT NULL
              AND recon.stay_range(v.visit_time, v.visit_end_time) && tsrange(days.day::timestamp, (days.day + 1)::timestamp, '[)')
            OFFSET 0
        ) v
        CROSS JOIN LATERAL (
            SELECT n.category, n.patient_id FROM recon.notifiable_diagnosis n
            WHERE n.org_code = v.org_code AND n.visit_id = v.visit_id AND n.diagnosis_time < (days.day + 1)::timestamp
            OFFSET 0
        ) nd
        UNION ALL
        SELECT unnest(ARRAY[nd.category, '合计']), nd.patient_id, false, true
        FROM recon.notifiable_diagnosis nd
        WHERE nd.diagnosis_time::date = days.day
    ) x
    UNION ALL
    SELECT days.day, c.category, NULL, false, false
    FROM days CROSS JOIN (SELECT DISTINCT category FROM recon.notifiable_disease UNION SELECT '合计') c
) y
GROUP BY stat_date, category;
COMMENT ON VIEW recon.notifiable_inpatient_daily IS '每日传染病相关住院数：按类别统计当日在院且已有法定传染病诊断的患者数，以及当日新增的此类诊断数和患者数';
COMMENT ON COLUMN recon.notifiable_inpatient_daily.stat_date IS '统计日期';
COMMENT ON COLUMN recon.notifiable_inpatient_daily.category IS '传染病类别（甲类、乙类、丙类；合计为不分类别的去重人数）';
COMMENT ON COLUMN recon.notifiable_inpatient_daily.inpatients IS '当日在院、且在当日结束前已诊断该类法定传染病的患者数';
COMMENT ON COLUMN recon.notifiable_inpatient_daily.new_diagnoses IS '当日新增的该类法定传染病诊断数';
COMMENT ON COLUMN recon.notifiable_inpatient_daily.new_patients IS '当日新增诊断涉及的患者数';

-- ------------------------------------------------------------------------------------------------
-- 4. Front-end report cards against NNDRS cards
--
-- The card tables are small (hundreds to a few thousand cards a year per hospital), so the
-- comparison joins whole tables; the date filter is applied to the joined result.

CREATE VIEW recon.frontend_card AS
SELECT DISTINCT ON (coalesce(rc.card_no, rc.org_code || ':' || rc.card_id))
       coalesce(rc.card_no, rc.org_code || ':' || rc.card_id) AS match_key,
       rc.org_code, rc.card_id, rc.card_no, rc.patient_name, rc.id_no,
       sx.national_code AS sex_code, rc.birth_date,
       dz.national_code AS disease_code, rc.disease_code AS disease_local_code,
       cs.national_code AS case_class_code, rc.diagnosis_status_code AS case_class_local_code,
       rc.onset_date, rc.diagnosis_time, rc.death_date, rc.report_time
FROM emr.report_card rc
LEFT JOIN recon.code_map sx ON sx.domain = 'sex' AND sx.local_code = rc.sex_code
LEFT JOIN recon.code_map dz ON dz.domain = 'notifiable_disease' AND dz.local_code = rc.disease_code
LEFT JOIN recon.code_map cs ON cs.domain = 'diagnosis_status' AND cs.local_code = rc.diagnosis_status_code
LEFT JOIN recon.code_map mf ON mf.domain = 'modify_flag' AND mf.local_code = rc.modify_flag
WHERE mf.national_code IS DISTINCT FROM '3'
ORDER BY coalesce(rc.card_no, rc.org_code || ':' || rc.card_id), rc.report_time DESC, rc.update_time DESC;
COMMENT ON VIEW recon.frontend_card IS '前置软件报告卡（每个卡片编号取最新一张，订正卡覆盖初次卡；代码已对照为国家代码；不含已撤销）';
COMMENT ON COLUMN recon.frontend_card.match_key IS '比对键：卡片编号；无卡片编号时为 机构代码:报告卡流水号（必然只在前置软件中）';
COMMENT ON COLUMN recon.frontend_card.org_code IS '医疗机构代码';
COMMENT ON COLUMN recon.frontend_card.card_id IS '报告卡流水号';
COMMENT ON COLUMN recon.frontend_card.card_no IS '卡片编号';
COMMENT ON COLUMN recon.frontend_card.patient_name IS '患者姓名';
COMMENT ON COLUMN recon.frontend_card.id_no IS '有效证件号码';
COMMENT ON COLUMN recon.frontend_card.sex_code IS '性别（国家代码）';
COMMENT ON COLUMN recon.frontend_card.birth_date IS '出生日期';
COMMENT ON COLUMN recon.frontend_card.disease_code IS '病种（国家代码，无对照时为空）';
COMMENT ON COLUMN recon.frontend_card.disease_local_code IS '病种（本院代码）';
COMMENT ON COLUMN recon.frontend_card.case_class_code IS '病例分类（国家代码，无对照时为空）';
COMMENT ON COLUMN recon.frontend_card.case_class_local_code IS '病例分类（本院代码）';
COMMENT ON COLUMN recon.frontend_card.onset_date IS '发病日期';
COMMENT ON COLUMN recon.frontend_card.diagnosis_time IS '诊断日期时间';
COMMENT ON COLUMN recon.frontend_card.death_date IS '死亡日期';
COMMENT ON COLUMN recon.frontend_card.report_time IS '报告日期时间';

CREATE VIEW recon.card_comparison AS
SELECT coalesce(f.report_time::date, n.report_date, n.entry_time::date, n.diagnosis_time::date) AS compare_date,
       coalesce(f.match_key, n.card_no) AS card_no,
       f.card_id AS frontend_card_id, n.card_id AS nndrs_card_id,
       CASE WHEN n.card_id IS NULL THEN 'frontend_only' WHEN f.match_key IS NULL THEN 'nndrs_only' ELSE 'both' END AS presence,
       f.match_key IS NOT NULL AND n.card_id IS NOT NULL AND f.disease_code IS DISTINCT FROM n.disease_code AS disease_differs,
       f.match_key IS NOT NULL AND n.card_id IS NOT NULL AND f.case_class_code IS DISTINCT FROM n.case_class_code AS case_class_differs,
       f.match_key IS NOT NULL AND n.card_id IS NOT NULL AND f.onset_date IS DISTINCT FROM n.onset_date AS onset_date_differs,
       f.match_key IS NOT NULL AND n.card_id IS NOT NULL AND f.diagnosis_time::date IS DISTINCT FROM n.diagnosis_time::date AS diagnosis_date_differs,
       f.match_key IS NOT NULL AND n.card_id IS NOT NULL AND f.death_date IS DISTINCT FROM n.death_date AS death_date_differs,
       f.match_key IS NOT NULL AND n.card_id IS NOT NULL AND (
           regexp_replace(coalesce(f.patient_name, ''), '\s', '', 'g') IS DISTINCT FROM regexp_replace(coalesce(n.patient_name, ''), '\s', '', 'g')
           OR upper(coalesce(f.id_no, '')) IS DISTINCT FROM upper(coalesce(n.id_no, ''))
           OR f.sex_code IS DISTINCT FROM n.sex_code
           OR f.birth_date IS DISTINCT FROM n.birth_date) AS identity_differs,
       f.disease_code AS frontend_disease_code, n.disease_code AS nndrs_disease_code, n.disease_name AS nndrs_disease_name,
       f.case_class_code AS frontend_case_class_code, n.case_class_code AS nndrs_case_class_code,
       f.onset_date AS frontend_onset_date, n.onset_date AS nndrs_onset_date,
       f.diagnosis_time::date AS frontend_diagnosis_date, n.diagnosis_time::date AS nndrs_diagnosis_date,
       f.death_date AS frontend_death_date, n.death_date AS nndrs_death_date
FROM recon.frontend_card f
FULL JOIN recon.nndrs_card n ON n.card_no = f.match_key;
COMMENT ON VIEW recon.card_comparison IS '前置软件报告卡与大疫情网报告卡逐卡比对：仅一方存在的卡片及各字段是否一致（患者身份只给出是否一致，不显示内容）';
COMMENT ON COLUMN recon.card_comparison.compare_date IS '比对日期：前置软件报告日期，仅大疫情网有时取填卡日期、录入日期或诊断日期';
COMMENT ON COLUMN recon.card_comparison.card_no IS '卡片编号（比对键）';
COMMENT ON COLUMN recon.card_comparison.frontend_card_id IS '前置软件报告卡流水号';
COMMENT ON COLUMN recon.card_comparison.nndrs_card_id IS '大疫情网卡片ID';
COMMENT ON COLUMN recon.card_comparison.presence IS '存在情况：both 两边都有，frontend_only 仅前置软件，nndrs_only 仅大疫情网';
COMMENT ON COLUMN recon.card_comparison.disease_differs IS '病种不一致';
COMMENT ON COLUMN recon.card_comparison.case_class_differs IS '病例分类不一致';
COMMENT ON COLUMN recon.card_comparison.onset_date_differs IS '发病日期不一致';
COMMENT ON COLUMN recon.card_comparison.diagnosis_date_differs IS '诊断日期不一致';
COMMENT ON COLUMN recon.card_comparison.death_date_differs IS '死亡日期不一致';
COMMENT ON COLUMN recon.card_comparison.identity_differs IS '患者身份（姓名、证件号、性别、出生日期）不一致';
COMMENT ON COLUMN recon.card_comparison.frontend_disease_code IS '前置软件病种（国家代码）';
COMMENT ON COLUMN recon.card_comparison.nndrs_disease_code IS '大疫情网病种（国家代码）';
COMMENT ON COLUMN recon.card_comparison.nndrs_disease_name IS '大疫情网疾病名称（导出原值）';
COMMENT ON COLUMN recon.card_comparison.frontend_case_class_code IS '前置软件病例分类（国家代码）';
COMMENT ON COLUMN recon.card_comparison.nndrs_case_class_code IS '大疫情网病例分类（国家代码）';
COMMENT ON COLUMN recon.card_comparison.frontend_onset_date IS '前置软件发病日期';
COMMENT ON COLUMN recon.card_comparison.nndrs_onset_date IS '大疫情网发病日期';
COMMENT ON COLUMN recon.card_comparison.frontend_diagnosis_date IS '前置软件诊断日期';
COMMENT ON COLUMN recon.card_comparison.nndrs_diagnosis_date IS '大疫情网诊断日期';
COMMENT ON COLUMN recon.card_comparison.frontend_death_date IS '前置软件死亡日期';
COMMENT ON COLUMN recon.card_comparison.nndrs_death_date IS '大疫情网死亡日期';

CREATE VIEW recon.card_field_diff AS
SELECT c.compare_date, c.card_no, f.field, f.field_label, f.frontend_value, f.nndrs_value
FROM recon.card_comparison c
CROSS JOIN LATERAL (VALUES
    ('disease', '病种', c.disease_differs, c.frontend_disease_code, coalesce(c.nndrs_disease_code, c.nndrs_disease_name)),
    ('case_class', '病例分类', c.case_class_differs, c.frontend_case_class_code, c.nndrs_case_class_code),
    ('onset_date', '发病日期', c.onset_date_differs, c.frontend_onset_date::text, c.nndrs_onset_date::text),
    ('diagnosis_date', '诊断日期', c.diagnosis_date_differs, c.frontend_diagnosis_date::text, c.nndrs_diagnosis_date::text),
    ('death_date', '死亡日期', c.death_date_differs, c.frontend_death_date::text, c.nndrs_death_date::text),
    ('identity', '患者身份', c.identity_differs, '（不显示）', '（不显示）')
) AS f(field, field_label, differs, frontend_value, nndrs_value)
WHERE f.differs;
COMMENT ON VIEW recon.card_field_diff IS '两边都有的报告卡中不一致的字段，每个字段一行（患者身份不显示内容）';
COMMENT ON COLUMN recon.card_field_diff.compare_date IS '比对日期';
COMMENT ON COLUMN recon.card_field_diff.card_no IS '卡片编号';
COMMENT ON COLUMN recon.card_field_diff.field IS '字段标识：disease、case_class、onset_date、diagnosis_date、death_date、identity';
COMMENT ON COLUMN recon.card_field_diff.field_label IS '字段中文名';
COMMENT ON COLUMN recon.card_field_diff.frontend_value IS '前置软件的值（国家代码或日期）';
COMMENT ON COLUMN recon.card_field_diff.nndrs_value IS '大疫情网的值';

CREATE VIEW recon.card_daily_summary AS
SELECT compare_date,
       count(*) FILTER (WHERE presence <> 'nndrs_only')::bigint AS frontend_cards,
       count(*) FILTER (WHERE presence <> 'frontend_only')::bigint AS nndrs_cards,
       count(*) FILTER (WHERE presence = 'both')::bigint AS matched,
       count(*) FILTER (WHERE presence = 'frontend_only')::bigint AS frontend_only,
       count(*) FILTER (WHERE presence = 'nndrs_only')::bigint AS nndrs_only,
       count(*) FILTER (WHERE disease_differs OR case_class_differs OR onset_date_differs
                        OR diagnosis_date_differs OR death_date_differs OR identity_differs)::bigint AS with_differences,
       count(*) FILTER (WHERE disease_differs)::bigint AS disease_differs,
       count(*) FILTER (WHERE case_class_differs)::bigint AS case_class_differs,
       count(*) FILTER (WHERE onset_date_differs)::bigint AS onset_date_differs,
       count(*) FILTER (WHERE diagnosis_date_differs)::bigint AS diagnosis_date_differs,
       count(*) FILTER (WHERE death_date_differs)::bigint AS death_date_differs,
       count(*) FILTER (WHERE identity_differs)::bigint AS identity_differs
FROM recon.card_comparison
GROUP BY compare_date;
COMMENT ON VIEW recon.card_daily_summary IS '每日报告卡比对汇总：两边卡数、仅一方存在的卡数、内容不一致的卡数及各字段不一致数';
COMMENT ON COLUMN recon.card_daily_summary.compare_date IS '比对日期';
COMMENT ON COLUMN recon.card_daily_summary.frontend_cards IS '前置软件报告卡数';
COMMENT ON COLUMN recon.card_daily_summary.nndrs_cards IS '大疫情网报告卡数';
COMMENT ON COLUMN recon.card_daily_summary.matched IS '两边都有的卡数';
COMMENT ON COLUMN recon.card_daily_summary.frontend_only IS '仅前置软件有的卡数';
COMMENT ON COLUMN recon.card_daily_summary.nndrs_only IS '仅大疫情网有的卡数';
COMMENT ON COLUMN recon.card_daily_summary.with_differences IS '两边都有但内容不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.disease_differs IS '病种不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.case_class_differs IS '病例分类不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.onset_date_differs IS '发病日期不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.diagnosis_date_differs IS '诊断日期不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.death_date_differs IS '死亡日期不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.identity_differs IS '患者身份不一致的卡数';

-- ------------------------------------------------------------------------------------------------
-- 5. Timeliness per data category

CREATE VIEW recon.timeliness_daily AS
SELECT l.business_date, l.destination, l.timeliness, tc.label AS timeliness_label, tc.limit_seconds,
       sum(l.events)::bigint AS events,
       sum(l.within_limit)::bigint AS within_limit,
       round(sum(l.within_limit)::numeric / nullif(sum(l.events), 0), 4) AS within_share,
       cdcsync.hist_percentile(cdcsync.hist_sum(l.business_hist), 0.5, max(l.max_business_s)) AS p50_from_business_s,
       cdcsync.hist_percentile(cdcsync.hist_sum(l.business_hist), 0.95, max(l.max_business_s)) AS p95_from_business_s,
       cdcsync.hist_percentile(cdcsync.hist_sum(l.commit_hist), 0.5, max(l.max_commit_s)) AS p50_from_commit_s,
       cdcsync.hist_percentile(cdcsync.hist_sum(l.commit_hist), 0.95, max(l.max_commit_s)) AS p95_from_commit_s
FROM cdcsync.delivery_latency l
LEFT JOIN recon.timeliness_class tc ON tc.timeliness = l.timeliness
GROUP BY l.business_date, l.destination, l.timeliness, tc.label, tc.limit_seconds;
COMMENT ON VIEW recon.timeliness_daily IS '按数据时效分类、目的地、业务日期的及时性：时限内确认的比例，自业务时间和自提交时间起的时延中位数与95分位数';
COMMENT ON COLUMN recon.timeliness_daily.business_date IS '业务日期';
COMMENT ON COLUMN recon.timeliness_daily.destination IS '目的地名称';
COMMENT ON COLUMN recon.timeliness_daily.timeliness IS '时效分类：realtime、2h、24h、daily';
COMMENT ON COLUMN recon.timeliness_daily.timeliness_label IS '时效分类中文名';
COMMENT ON COLUMN recon.timeliness_daily.limit_seconds IS '时限（秒）';
COMMENT ON COLUMN recon.timeliness_daily.events IS '已确认事件数';
COMMENT ON COLUMN recon.timeliness_daily.within_limit IS '自业务时间起在时限内确认的事件数';
COMMENT ON COLUMN recon.timeliness_daily.within_share IS '时限内确认的比例（0～1）';
COMMENT ON COLUMN recon.timeliness_daily.p50_from_business_s IS '自业务时间起时延中位数（秒，按直方图桶上界估计）';
COMMENT ON COLUMN recon.timeliness_daily.p95_from_business_s IS '自业务时间起时延95分位数（秒）';
COMMENT ON COLUMN recon.timeliness_daily.p50_from_commit_s IS '自提交时间起时延中位数（秒）';
COMMENT ON COLUMN recon.timeliness_daily.p95_from_commit_s IS '自提交时间起时延95分位数（秒）';

-- ------------------------------------------------------------------------------------------------
-- 6. Transmission state per destination

CREATE VIEW recon.transmission_daily AS
SELECT destination, day, attempts, successes, failures, retries, last_success_at, last_failure_at, last_error
FROM cdcsync.transmission_daily;
COMMENT ON VIEW recon.transmission_daily IS '各目的地每日发送、失败与重试次数';
COMMENT ON COLUMN recon.transmission_daily.destination IS '目的地名称';
COMMENT ON COLUMN recon.transmission_daily.day IS '日期（北京时间）';
COMMENT ON COLUMN recon.transmission_daily.attempts IS '发送批次次数（含重试）';
COMMENT ON COLUMN recon.transmission_daily.successes IS '成功次数';
COMMENT ON COLUMN recon.transmission_daily.failures IS '失败次数';
COMMENT ON COLUMN recon.transmission_daily.retries IS '重试次数';
COMMENT ON COLUMN recon.transmission_daily.last_success_at IS '当日最近一次成功时间';
COMMENT ON COLUMN recon.transmission_daily.last_failure_at IS '当日最近一次失败时间';
COMMENT ON COLUMN recon.transmission_daily.last_error IS '当日最近一次失败原因';

CREATE VIEW recon.transmission_state AS
SELECT c.destination, c.slot_name, c.acked_lsn, c.last_ack_at, c.last_event_at,
       now() - c.last_ack_at AS since_last_ack,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), c.acked_lsn)::bigint END AS wal_lag_bytes,
       s.active AS slot_active,
       coalesce(t.attempts, 0) AS attempts_today,
       coalesce(t.failures, 0) AS failures_today,
       coalesce(t.retries, 0) AS retries_today,
       t.last_error,
       (SELECT count(*) FROM cdcsync.quarantine q WHERE q.destination = c.destination AND q.status = 'held') AS quarantine_held
FROM cdcsync.checkpoint c
LEFT JOIN pg_replication_slots s ON s.slot_name = c.slot_name
LEFT JOIN cdcsync.transmission_daily t ON t.destination = c.destination
     AND t.day = (now() AT TIME ZONE 'Asia/Shanghai')::date;
COMMENT ON VIEW recon.transmission_state IS '各目的地当前传输状态：最近确认、滞后、今日失败与重试次数、隔离区待处理数';
COMMENT ON COLUMN recon.transmission_state.destination IS '目的地名称';
COMMENT ON COLUMN recon.transmission_state.slot_name IS '逻辑复制槽名称';
COMMENT ON COLUMN recon.transmission_state.acked_lsn IS '已确认的复制位点';
COMMENT ON COLUMN recon.transmission_state.last_ack_at IS '最近一次确认时间';
COMMENT ON COLUMN recon.transmission_state.last_event_at IS '最近一条已确认事件的提交时间';
COMMENT ON COLUMN recon.transmission_state.since_last_ack IS '距最近一次确认的时长';
COMMENT ON COLUMN recon.transmission_state.wal_lag_bytes IS '复制滞后（当前 WAL 位置与已确认位点之差，字节）';
COMMENT ON COLUMN recon.transmission_state.slot_active IS '复制槽是否正被读取';
COMMENT ON COLUMN recon.transmission_state.attempts_today IS '今日发送次数（北京时间）';
COMMENT ON COLUMN recon.transmission_state.failures_today IS '今日失败次数';
COMMENT ON COLUMN recon.transmission_state.retries_today IS '今日重试次数';
COMMENT ON COLUMN recon.transmission_state.last_error IS '今日最近一次失败原因';
COMMENT ON COLUMN recon.transmission_state.quarantine_held IS '隔离区中待处理的记录数';
