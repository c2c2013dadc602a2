-- 对账视图纳入前置软件工作台填写的报告卡（emr.report_card_frontend）：
-- 1. 镜像库各表按业务日期的记录数（recon.mirror_daily_rows）单列一行 report_card_frontend；
-- 2. 与大疫情网比对报告卡时（recon.frontend_card 及其上的 card_match、card_comparison 等），
--    院内系统的报告卡（emr.report_card）与工作台报告卡一并参与比对，新增列 card_source 标明来源。
-- The workbench's own cards in the reconciliation (issue 16). CREATE OR REPLACE keeps the dependent
-- views (table_daily_counts; card_match, card_comparison, card_field_diff, card_daily_summary) and
-- every column comment; both views keep their columns and only gain rows (frontend_card also gains
-- card_source at the end). report_card_frontend is written by cdcsync, not by the HIS: it has its
-- own line in the daily row counts, and tests that count HIS-written tables leave it out.

CREATE OR REPLACE VIEW recon.mirror_daily_rows AS
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
UNION ALL SELECT 'report_card_frontend', report_time::date, count(*) FROM emr.report_card_frontend GROUP BY 2
UNION ALL SELECT 'exposure_history', record_time::date, count(*) FROM emr.exposure_history GROUP BY 2
UNION ALL SELECT 'dept', update_time::date, count(*) FROM emr.dept GROUP BY 2
UNION ALL SELECT 'staff', update_time::date, count(*) FROM emr.staff GROUP BY 2
UNION ALL SELECT 'daily_stats', stat_date, count(*) FROM emr.daily_stats GROUP BY 2;
COMMENT ON VIEW recon.mirror_daily_rows IS
    '镜像库各表按业务日期的记录数（业务日期取数据集规范中该表的业务时间/业务日期字段；含前置软件填写的报告卡 report_card_frontend）';

CREATE INDEX recon_report_card_frontend_bdate_idx ON emr.report_card_frontend ((report_time::date));

-- Workbench cards carry national codes (cdcsync/workbench/store.py publish): no code_map lookup.
-- One row per card (its latest version); a deleted card (modify_flag 3) is left out like a
-- revoked HIS card. They have no NNDRS 卡片编号, so they pair on patient identity + disease + date.
CREATE OR REPLACE VIEW recon.frontend_card AS
SELECT h.*, 'his'::text AS card_source FROM (
    SELECT DISTINCT ON (coalesce(rc.card_no, rc.org_code || ':' || coalesce(rc.visit_id || ':' || rc.disease_code, rc.card_id)))
           coalesce(rc.card_no, rc.org_code || ':' || coalesce(rc.visit_id || ':' || rc.disease_code, rc.card_id)) AS match_key,
           rc.org_code, rc.card_id, rc.card_no, rc.patient_name, rc.id_no,
           sx.national_code AS sex_code, rc.birth_date,
           dz.national_code AS disease_code, rc.disease_code AS disease_local_code,
           coalesce(nd.parent_code, dz.national_code) AS disease_group,
           cs.national_code AS case_class_code, rc.diagnosis_status_code AS case_class_local_code,
           rc.onset_date, rc.diagnosis_time, rc.death_date, rc.report_time,
           pg.national_code AS population_group_code, rg.national_code AS region_code,
           nullif(upper(btrim(rc.id_no)), '') AS id_key, recon.name_key(rc.patient_name) AS name_key
    FROM emr.report_card rc
    LEFT JOIN recon.code_map sx ON sx.domain = 'sex' AND sx.local_code = rc.sex_code
    LEFT JOIN recon.code_map dz ON dz.domain = 'notifiable_disease' AND dz.local_code = rc.disease_code
    LEFT JOIN recon.notifiable_disease nd ON nd.disease_code = dz.national_code
    LEFT JOIN recon.code_map cs ON cs.domain = 'diagnosis_status' AND cs.local_code = rc.diagnosis_status_code
    LEFT JOIN recon.code_map pg ON pg.domain = 'population_group' AND pg.local_code = rc.population_group_code
    LEFT JOIN recon.code_map rg ON rg.domain = 'region' AND rg.local_code = rc.current_addr_region_code
    LEFT JOIN recon.code_map mf ON mf.domain = 'modify_flag' AND mf.local_code = rc.modify_flag
    WHERE mf.national_code IS DISTINCT FROM '3'
    ORDER BY coalesce(rc.card_no, rc.org_code || ':' || coalesce(rc.visit_id || ':' || rc.disease_code, rc.card_id)), rc.report_time DESC, rc.update_time DESC
) h
UNION ALL
SELECT 'wb:' || w.org_code || ':' || w.card_id, w.org_code, w.card_id, NULL::varchar(32), w.patient_name, w.id_no,
       w.sex_code::text, w.birth_date,
       w.disease_code::text, w.disease_code, coalesce(nd.parent_code, w.disease_code)::text,
       w.diagnosis_status_code::text, w.diagnosis_status_code,
       w.onset_date, w.diagnosis_time, w.death_date, w.report_time,
       w.population_group_code::text, w.current_addr_region_code::text,
       nullif(upper(btrim(w.id_no)), ''), recon.name_key(w.patient_name), 'workbench'
FROM emr.report_card_frontend w
LEFT JOIN recon.notifiable_disease nd ON nd.disease_code = w.disease_code
WHERE w.modify_flag <> '3';
COMMENT ON VIEW recon.frontend_card IS
    '前置软件报告卡：院内系统报告卡（每个卡片编号取最新一张，订正卡覆盖初次卡；代码已对照为国家代码；不含已撤销）'
    '及前置软件工作台填写的报告卡（每张卡取最新版本，不含已删除）';
COMMENT ON COLUMN recon.frontend_card.match_key IS
    '卡片标识：卡片编号；无卡片编号时为 机构代码:就诊流水号:病种（订正卡覆盖同一就诊同一病种的初次卡），'
    '无就诊流水号时为 机构代码:报告卡流水号；工作台报告卡为 wb:机构代码:报告卡编号';
COMMENT ON COLUMN recon.frontend_card.card_source IS '报告卡来源：his 院内系统填写（emr.report_card），workbench 前置软件工作台填写（emr.report_card_frontend）';
