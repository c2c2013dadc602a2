-- 报告卡比对（双轨运行期间不产生噪声）：按卡片编号匹配，无编号时按患者身份 + 病种 + 诊断日期窗口匹配，
-- 排除大疫情网中已删除的卡片，并比对更多字段。
-- Card matching that is not noise (issue 18 §5). Replaces the card views of 100_recon.sql:
-- * a front-end card pairs with an NNDRS card on 卡片编号 when both carry the same number; the rest pair
--   on patient identity (ID number when both sides have one, else name + birth date + sex) + disease
--   (same disease, subtypes of one disease count as the same) + diagnosis date within a window of
--   recon.card_match_window_days() days (GUC cdcsync.card_match_window_days, default 3);
--   recon.card_match.match_method says which way each pair was matched;
-- * NNDRS cards with a 删除时间 or an 审核状态 saying 删除/作废 are left out (counted as nndrs_deleted);
-- * compared fields: disease, disease subtype, case class, onset/diagnosis/death date, population
--   group, current address region (county level, first 6 digits), reporting unit code, identity.
-- docs/reconciliation.md describes every column and what the 防保科 does about each difference.

ALTER TABLE recon.nndrs_card
    ADD COLUMN deleted_time timestamp,
    ADD COLUMN population_group_code text,
    ADD COLUMN report_org_code text;
COMMENT ON COLUMN recon.nndrs_card.deleted_time IS '删除时间（大疫情网中已删除的卡片不参与比对）';
COMMENT ON COLUMN recon.nndrs_card.population_group_code IS '人群分类（按名称对应的国家代码，无法对应时为空）';
COMMENT ON COLUMN recon.nndrs_card.report_org_code IS '报告单位编码（导出有此列时与前置软件的医疗机构代码比对）';

CREATE FUNCTION recon.card_match_window_days() RETURNS integer
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce(nullif(current_setting('cdcsync.card_match_window_days', true), '')::integer, 3) $$;
COMMENT ON FUNCTION recon.card_match_window_days() IS
    '按患者身份匹配报告卡时诊断日期允许相差的天数：取会话或数据库参数 cdcsync.card_match_window_days，默认 3';

CREATE FUNCTION recon.nndrs_deleted(deleted_time timestamp, audit_status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT deleted_time IS NOT NULL OR coalesce(audit_status, '') ~ '删除|作废' $$;
COMMENT ON FUNCTION recon.nndrs_deleted(timestamp, text) IS '大疫情网卡片是否处于删除状态（有删除时间，或审核状态含“删除”“作废”）';

CREATE FUNCTION recon.name_key(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT nullif(regexp_replace(coalesce(name, ''), '[[:space:]·.]', '', 'g'), '') $$;
COMMENT ON FUNCTION recon.name_key(text) IS '用于匹配的姓名：去掉空白和间隔号';

DROP VIEW recon.card_daily_summary, recon.card_field_diff, recon.card_comparison, recon.frontend_card;

CREATE VIEW recon.frontend_card AS
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
ORDER BY coalesce(rc.card_no, rc.org_code || ':' || coalesce(rc.visit_id || ':' || rc.disease_code, rc.card_id)), rc.report_time DESC, rc.update_time DESC;
COMMENT ON VIEW recon.frontend_card IS '前置软件报告卡（每个卡片编号取最新一张，订正卡覆盖初次卡；代码已对照为国家代码；不含已撤销）';
COMMENT ON COLUMN recon.frontend_card.match_key IS '卡片标识：卡片编号；无卡片编号时为 机构代码:就诊流水号:病种（订正卡覆盖同一就诊同一病种的初次卡），无就诊流水号时为 机构代码:报告卡流水号';
COMMENT ON COLUMN recon.frontend_card.org_code IS '医疗机构代码';
COMMENT ON COLUMN recon.frontend_card.card_id IS '报告卡流水号';
COMMENT ON COLUMN recon.frontend_card.card_no IS '卡片编号';
COMMENT ON COLUMN recon.frontend_card.patient_name IS '患者姓名';
COMMENT ON COLUMN recon.frontend_card.id_no IS '有效证件号码';
COMMENT ON COLUMN recon.frontend_card.sex_code IS '性别（国家代码）';
COMMENT ON COLUMN recon.frontend_card.birth_date IS '出生日期';
COMMENT ON COLUMN recon.frontend_card.disease_code IS '病种（国家代码，无对照时为空）';
COMMENT ON COLUMN recon.frontend_card.disease_local_code IS '病种（本院代码）';
COMMENT ON COLUMN recon.frontend_card.disease_group IS '病种大类（亚型取上级病种代码），用于按身份匹配';
COMMENT ON COLUMN recon.frontend_card.case_class_code IS '病例分类（国家代码，无对照时为空）';
COMMENT ON COLUMN recon.frontend_card.case_class_local_code IS '病例分类（本院代码）';
COMMENT ON COLUMN recon.frontend_card.onset_date IS '发病日期';
COMMENT ON COLUMN recon.frontend_card.diagnosis_time IS '诊断日期时间';
COMMENT ON COLUMN recon.frontend_card.death_date IS '死亡日期';
COMMENT ON COLUMN recon.frontend_card.report_time IS '报告日期时间';
COMMENT ON COLUMN recon.frontend_card.population_group_code IS '人群分类（国家代码）';
COMMENT ON COLUMN recon.frontend_card.region_code IS '现住址地区（国家代码）';
COMMENT ON COLUMN recon.frontend_card.id_key IS '匹配用证件号（去空格、大写）';
COMMENT ON COLUMN recon.frontend_card.name_key IS '匹配用姓名（去空白）';

CREATE VIEW recon.nndrs_card_current AS
SELECT DISTINCT ON (n.card_no)
       n.*, coalesce(nd.parent_code, n.disease_code) AS disease_group,
       coalesce(n.diagnosis_time::date, n.report_date, n.entry_time::date) AS match_date,
       nullif(upper(btrim(n.id_no)), '') AS id_key, recon.name_key(n.patient_name) AS name_key
FROM recon.nndrs_card n
LEFT JOIN recon.notifiable_disease nd ON nd.disease_code = n.disease_code
WHERE NOT recon.nndrs_deleted(n.deleted_time, n.audit_status)
ORDER BY n.card_no, n.entry_time DESC NULLS LAST, n.card_id DESC;
-- The view's own columns of recon.nndrs_card keep that table's comments.
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT a.attname, col_description('recon.nndrs_card'::regclass, a.attnum) AS d
             FROM pg_attribute a
             WHERE a.attrelid = 'recon.nndrs_card'::regclass AND a.attnum > 0 AND NOT a.attisdropped
    LOOP
        EXECUTE format('COMMENT ON COLUMN recon.nndrs_card_current.%I IS %L', r.attname, r.d);
    END LOOP;
END $$;
COMMENT ON VIEW recon.nndrs_card_current IS '参与比对的大疫情网报告卡：不含已删除卡片，同一卡片编号取最近录入的一张';
COMMENT ON COLUMN recon.nndrs_card_current.disease_group IS '病种大类（亚型取上级病种代码）';
COMMENT ON COLUMN recon.nndrs_card_current.match_date IS '匹配用诊断日期（无诊断时间时取填卡日期、录入日期）';
COMMENT ON COLUMN recon.nndrs_card_current.id_key IS '匹配用证件号（去空格、大写）';
COMMENT ON COLUMN recon.nndrs_card_current.name_key IS '匹配用姓名（去空白）';

CREATE VIEW recon.card_match AS
WITH by_no AS (
    SELECT f.match_key, n.card_id AS nndrs_card_id, 'card_no'::text AS match_method, 0 AS day_gap
    FROM recon.frontend_card f JOIN recon.nndrs_card_current n ON n.card_no = f.card_no
), candidate AS (
    SELECT f.match_key, n.card_id AS nndrs_card_id,
           CASE WHEN f.id_key IS NOT NULL AND n.id_key IS NOT NULL THEN 'id_no' ELSE 'name_birth_sex' END AS match_method,
           abs(f.diagnosis_time::date - n.match_date) AS day_gap
    FROM recon.frontend_card f
    JOIN recon.nndrs_card_current n
      ON n.disease_group = f.disease_group
     AND abs(f.diagnosis_time::date - n.match_date) <= recon.card_match_window_days()
     AND CASE WHEN f.id_key IS NOT NULL AND n.id_key IS NOT NULL THEN n.id_key = f.id_key
              ELSE n.name_key = f.name_key AND n.birth_date = f.birth_date AND n.sex_code = f.sex_code END
    WHERE NOT EXISTS (SELECT 1 FROM by_no b WHERE b.match_key = f.match_key)
      AND NOT EXISTS (SELECT 1 FROM by_no b WHERE b.nndrs_card_id = n.card_id)
), ranked AS (
    -- one-to-one: a pair is kept when each card is the other's nearest candidate (diagnosis date)
    SELECT c.*, row_number() OVER (PARTITION BY c.match_key ORDER BY c.day_gap, c.nndrs_card_id) AS rank_f,
           row_number() OVER (PARTITION BY c.nndrs_card_id ORDER BY c.day_gap, c.match_key) AS rank_n
    FROM candidate c
)
SELECT match_key, nndrs_card_id, match_method, day_gap FROM by_no
UNION ALL
SELECT match_key, nndrs_card_id, match_method, day_gap FROM ranked WHERE rank_f = 1 AND rank_n = 1;
COMMENT ON VIEW recon.card_match IS '前置软件报告卡与大疫情网报告卡的配对，及配对方式';
COMMENT ON COLUMN recon.card_match.match_key IS '前置软件卡片标识（recon.frontend_card.match_key）';
COMMENT ON COLUMN recon.card_match.nndrs_card_id IS '大疫情网卡片ID';
COMMENT ON COLUMN recon.card_match.match_method IS '配对方式：card_no 卡片编号，id_no 证件号+病种+诊断日期，name_birth_sex 姓名+出生日期+性别+病种+诊断日期';
COMMENT ON COLUMN recon.card_match.day_gap IS '两边诊断日期相差的天数';

CREATE VIEW recon.card_comparison AS
WITH pair AS (
    SELECT f.*, m.match_method, m.nndrs_card_id AS paired_nndrs
    FROM recon.frontend_card f LEFT JOIN recon.card_match m ON m.match_key = f.match_key
), x AS (
    SELECT p.match_key AS f_key, p.card_id AS f_card_id, p.report_time AS f_report_time, p.match_method,
           p.disease_code AS f_disease, p.disease_group AS f_group, p.case_class_code AS f_case,
           p.onset_date AS f_onset, p.diagnosis_time::date AS f_diag, p.death_date AS f_death,
           p.population_group_code AS f_pop, p.region_code AS f_region, p.org_code AS f_org,
           p.patient_name AS f_name, p.id_no AS f_id, p.sex_code AS f_sex, p.birth_date AS f_birth,
           n.card_id AS n_card_id, n.card_no AS n_card_no, n.report_date AS n_report_date,
           n.entry_time AS n_entry_time, n.disease_code AS n_disease, n.disease_name AS n_disease_name,
           n.disease_group AS n_group, n.case_class_code AS n_case, n.onset_date AS n_onset,
           n.diagnosis_time::date AS n_diag, n.death_date AS n_death,
           n.population_group AS n_pop_name, n.population_group_code AS n_pop, n.region_code AS n_region,
           n.report_org_code AS n_org, n.patient_name AS n_name, n.id_no AS n_id, n.sex_code AS n_sex,
           n.birth_date AS n_birth
    FROM pair p
    FULL JOIN recon.nndrs_card_current n ON n.card_id = p.paired_nndrs
), b AS (
    SELECT x.*, f_key IS NOT NULL AND n_card_id IS NOT NULL AS paired FROM x
)
SELECT coalesce(f_report_time::date, n_report_date, n_entry_time::date, n_diag) AS compare_date,
       coalesce(f_key, n_card_no) AS card_no,
       f_card_id AS frontend_card_id, n_card_id AS nndrs_card_id, n_card_no AS nndrs_card_no,
       CASE WHEN n_card_id IS NULL THEN 'frontend_only' WHEN f_key IS NULL THEN 'nndrs_only' ELSE 'both' END AS presence,
       CASE WHEN paired THEN match_method END AS match_method,
       paired AND f_group IS DISTINCT FROM n_group AS disease_differs,
       paired AND f_group IS NOT DISTINCT FROM n_group AND f_disease IS DISTINCT FROM n_disease AS subtype_differs,
       paired AND f_case IS DISTINCT FROM n_case AS case_class_differs,
       paired AND f_onset IS DISTINCT FROM n_onset AS onset_date_differs,
       paired AND f_diag IS DISTINCT FROM n_diag AS diagnosis_date_differs,
       paired AND f_death IS DISTINCT FROM n_death AS death_date_differs,
       paired AND n_pop_name IS NOT NULL AND f_pop IS DISTINCT FROM coalesce(n_pop, n_pop_name) AS population_group_differs,
       paired AND n_region IS NOT NULL AND left(coalesce(f_region, ''), 6) IS DISTINCT FROM left(n_region, 6) AS region_differs,
       paired AND n_org IS NOT NULL AND f_org IS DISTINCT FROM n_org AS report_org_differs,
       paired AND (
           coalesce(recon.name_key(f_name), '') IS DISTINCT FROM coalesce(recon.name_key(n_name), '')
           -- an ID number missing on one side is a gap, not a difference (the pair was made on name + birth + sex)
           OR (nullif(btrim(f_id), '') IS NOT NULL AND nullif(btrim(n_id), '') IS NOT NULL
               AND upper(btrim(f_id)) <> upper(btrim(n_id)))
           OR f_sex IS DISTINCT FROM n_sex
           OR f_birth IS DISTINCT FROM n_birth) AS identity_differs,
       f_disease AS frontend_disease_code, n_disease AS nndrs_disease_code, n_disease_name AS nndrs_disease_name,
       f_case AS frontend_case_class_code, n_case AS nndrs_case_class_code,
       f_onset AS frontend_onset_date, n_onset AS nndrs_onset_date,
       f_diag AS frontend_diagnosis_date, n_diag AS nndrs_diagnosis_date,
       f_death AS frontend_death_date, n_death AS nndrs_death_date,
       f_pop AS frontend_population_group, coalesce(n_pop, n_pop_name) AS nndrs_population_group,
       f_region AS frontend_region_code, n_region AS nndrs_region_code,
       f_org AS frontend_org_code, n_org AS nndrs_org_code
FROM b;
COMMENT ON VIEW recon.card_comparison IS '前置软件报告卡与大疫情网报告卡逐卡比对：配对方式、仅一方存在的卡片及各字段是否一致（患者身份只给出是否一致，不显示内容）';
COMMENT ON COLUMN recon.card_comparison.compare_date IS '比对日期：前置软件报告日期，仅大疫情网有时取填卡日期、录入日期或诊断日期';
COMMENT ON COLUMN recon.card_comparison.card_no IS '卡片编号：前置软件的卡片编号（无编号时为 recon.frontend_card.match_key）；仅大疫情网有时为大疫情网卡片编号';
COMMENT ON COLUMN recon.card_comparison.frontend_card_id IS '前置软件报告卡流水号';
COMMENT ON COLUMN recon.card_comparison.nndrs_card_id IS '大疫情网卡片ID';
COMMENT ON COLUMN recon.card_comparison.nndrs_card_no IS '大疫情网卡片编号';
COMMENT ON COLUMN recon.card_comparison.presence IS '存在情况：both 两边都有，frontend_only 仅前置软件，nndrs_only 仅大疫情网';
COMMENT ON COLUMN recon.card_comparison.match_method IS '配对方式：card_no、id_no、name_birth_sex（见 recon.card_match）';
COMMENT ON COLUMN recon.card_comparison.disease_differs IS '病种不一致（不同病种）';
COMMENT ON COLUMN recon.card_comparison.subtype_differs IS '同一病种下亚型不一致';
COMMENT ON COLUMN recon.card_comparison.case_class_differs IS '病例分类不一致';
COMMENT ON COLUMN recon.card_comparison.onset_date_differs IS '发病日期不一致';
COMMENT ON COLUMN recon.card_comparison.diagnosis_date_differs IS '诊断日期不一致';
COMMENT ON COLUMN recon.card_comparison.death_date_differs IS '死亡日期不一致';
COMMENT ON COLUMN recon.card_comparison.population_group_differs IS '人群分类不一致（导出无人群分类时不比对）';
COMMENT ON COLUMN recon.card_comparison.region_differs IS '现住址地区不一致（按县级，前 6 位；导出无此列时不比对）';
COMMENT ON COLUMN recon.card_comparison.report_org_differs IS '报告单位不一致（导出有报告单位编码时比对）';
COMMENT ON COLUMN recon.card_comparison.identity_differs IS '患者身份（姓名、证件号、性别、出生日期）不一致；一方没有证件号时不比证件号';
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
COMMENT ON COLUMN recon.card_comparison.frontend_population_group IS '前置软件人群分类（国家代码）';
COMMENT ON COLUMN recon.card_comparison.nndrs_population_group IS '大疫情网人群分类（国家代码，无法对应时为导出原值）';
COMMENT ON COLUMN recon.card_comparison.frontend_region_code IS '前置软件现住址地区（国家代码）';
COMMENT ON COLUMN recon.card_comparison.nndrs_region_code IS '大疫情网现住地址国标编码';
COMMENT ON COLUMN recon.card_comparison.frontend_org_code IS '前置软件医疗机构代码';
COMMENT ON COLUMN recon.card_comparison.nndrs_org_code IS '大疫情网报告单位编码';

CREATE VIEW recon.card_field_diff AS
SELECT c.compare_date, c.card_no, f.field, f.field_label, f.frontend_value, f.nndrs_value
FROM recon.card_comparison c
CROSS JOIN LATERAL (VALUES
    ('disease', '病种', c.disease_differs, c.frontend_disease_code, coalesce(c.nndrs_disease_code, c.nndrs_disease_name)),
    ('subtype', '病种亚型', c.subtype_differs, c.frontend_disease_code, c.nndrs_disease_code),
    ('case_class', '病例分类', c.case_class_differs, c.frontend_case_class_code, c.nndrs_case_class_code),
    ('onset_date', '发病日期', c.onset_date_differs, c.frontend_onset_date::text, c.nndrs_onset_date::text),
    ('diagnosis_date', '诊断日期', c.diagnosis_date_differs, c.frontend_diagnosis_date::text, c.nndrs_diagnosis_date::text),
    ('death_date', '死亡日期', c.death_date_differs, c.frontend_death_date::text, c.nndrs_death_date::text),
    ('population_group', '人群分类', c.population_group_differs, c.frontend_population_group, c.nndrs_population_group),
    ('region', '现住址地区', c.region_differs, c.frontend_region_code, c.nndrs_region_code),
    ('report_org', '报告单位', c.report_org_differs, c.frontend_org_code, c.nndrs_org_code),
    ('identity', '患者身份', c.identity_differs, '（不显示）', '（不显示）')
) AS f(field, field_label, differs, frontend_value, nndrs_value)
WHERE f.differs;
COMMENT ON VIEW recon.card_field_diff IS '两边都有的报告卡中不一致的字段，每个字段一行（患者身份不显示内容）';
COMMENT ON COLUMN recon.card_field_diff.compare_date IS '比对日期';
COMMENT ON COLUMN recon.card_field_diff.card_no IS '卡片编号';
COMMENT ON COLUMN recon.card_field_diff.field IS '字段标识：disease、subtype、case_class、onset_date、diagnosis_date、death_date、population_group、region、report_org、identity';
COMMENT ON COLUMN recon.card_field_diff.field_label IS '字段中文名';
COMMENT ON COLUMN recon.card_field_diff.frontend_value IS '前置软件的值（国家代码或日期）';
COMMENT ON COLUMN recon.card_field_diff.nndrs_value IS '大疫情网的值';

CREATE VIEW recon.card_daily_summary AS
WITH c AS (
    SELECT compare_date,
           count(*) FILTER (WHERE presence <> 'nndrs_only')::bigint AS frontend_cards,
           count(*) FILTER (WHERE presence <> 'frontend_only')::bigint AS nndrs_cards,
           count(*) FILTER (WHERE presence = 'both')::bigint AS matched,
           count(*) FILTER (WHERE presence = 'frontend_only')::bigint AS frontend_only,
           count(*) FILTER (WHERE presence = 'nndrs_only')::bigint AS nndrs_only,
           count(*) FILTER (WHERE disease_differs OR subtype_differs OR case_class_differs OR onset_date_differs
                            OR diagnosis_date_differs OR death_date_differs OR population_group_differs
                            OR region_differs OR report_org_differs OR identity_differs)::bigint AS with_differences,
           count(*) FILTER (WHERE disease_differs)::bigint AS disease_differs,
           count(*) FILTER (WHERE subtype_differs)::bigint AS subtype_differs,
           count(*) FILTER (WHERE case_class_differs)::bigint AS case_class_differs,
           count(*) FILTER (WHERE onset_date_differs)::bigint AS onset_date_differs,
           count(*) FILTER (WHERE diagnosis_date_differs)::bigint AS diagnosis_date_differs,
           count(*) FILTER (WHERE death_date_differs)::bigint AS death_date_differs,
           count(*) FILTER (WHERE population_group_differs)::bigint AS population_group_differs,
           count(*) FILTER (WHERE region_differs)::bigint AS region_differs,
           count(*) FILTER (WHERE report_org_differs)::bigint AS report_org_differs,
           count(*) FILTER (WHERE identity_differs)::bigint AS identity_differs,
           count(*) FILTER (WHERE match_method = 'card_no')::bigint AS matched_by_card_no,
           count(*) FILTER (WHERE match_method = 'id_no')::bigint AS matched_by_id_no,
           count(*) FILTER (WHERE match_method = 'name_birth_sex')::bigint AS matched_by_name
    FROM recon.card_comparison
    GROUP BY compare_date
), d AS (
    SELECT coalesce(report_date, entry_time::date, diagnosis_time::date) AS compare_date, count(*)::bigint AS n
    FROM recon.nndrs_card WHERE recon.nndrs_deleted(deleted_time, audit_status)
    GROUP BY 1
)
SELECT coalesce(c.compare_date, d.compare_date) AS compare_date,
       coalesce(c.frontend_cards, 0) AS frontend_cards, coalesce(c.nndrs_cards, 0) AS nndrs_cards,
       coalesce(c.matched, 0) AS matched, coalesce(c.frontend_only, 0) AS frontend_only,
       coalesce(c.nndrs_only, 0) AS nndrs_only, coalesce(c.with_differences, 0) AS with_differences,
       coalesce(c.disease_differs, 0) AS disease_differs, coalesce(c.subtype_differs, 0) AS subtype_differs,
       coalesce(c.case_class_differs, 0) AS case_class_differs, coalesce(c.onset_date_differs, 0) AS onset_date_differs,
       coalesce(c.diagnosis_date_differs, 0) AS diagnosis_date_differs,
       coalesce(c.death_date_differs, 0) AS death_date_differs,
       coalesce(c.population_group_differs, 0) AS population_group_differs,
       coalesce(c.region_differs, 0) AS region_differs, coalesce(c.report_org_differs, 0) AS report_org_differs,
       coalesce(c.identity_differs, 0) AS identity_differs,
       coalesce(c.matched_by_card_no, 0) AS matched_by_card_no, coalesce(c.matched_by_id_no, 0) AS matched_by_id_no,
       coalesce(c.matched_by_name, 0) AS matched_by_name, coalesce(d.n, 0) AS nndrs_deleted
FROM c FULL JOIN d ON d.compare_date = c.compare_date;
COMMENT ON VIEW recon.card_daily_summary IS '每日报告卡比对汇总：两边卡数、配对方式、仅一方存在的卡数、内容不一致的卡数及各字段不一致数、大疫情网已删除卡数';
COMMENT ON COLUMN recon.card_daily_summary.compare_date IS '比对日期';
COMMENT ON COLUMN recon.card_daily_summary.frontend_cards IS '前置软件报告卡数';
COMMENT ON COLUMN recon.card_daily_summary.nndrs_cards IS '大疫情网报告卡数（不含已删除）';
COMMENT ON COLUMN recon.card_daily_summary.matched IS '两边都有的卡数';
COMMENT ON COLUMN recon.card_daily_summary.frontend_only IS '仅前置软件有的卡数';
COMMENT ON COLUMN recon.card_daily_summary.nndrs_only IS '仅大疫情网有的卡数';
COMMENT ON COLUMN recon.card_daily_summary.with_differences IS '两边都有但内容不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.disease_differs IS '病种不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.subtype_differs IS '病种亚型不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.case_class_differs IS '病例分类不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.onset_date_differs IS '发病日期不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.diagnosis_date_differs IS '诊断日期不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.death_date_differs IS '死亡日期不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.population_group_differs IS '人群分类不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.region_differs IS '现住址地区不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.report_org_differs IS '报告单位不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.identity_differs IS '患者身份不一致的卡数';
COMMENT ON COLUMN recon.card_daily_summary.matched_by_card_no IS '按卡片编号配对的卡数';
COMMENT ON COLUMN recon.card_daily_summary.matched_by_id_no IS '按证件号 + 病种 + 诊断日期配对的卡数';
COMMENT ON COLUMN recon.card_daily_summary.matched_by_name IS '按姓名 + 出生日期 + 性别 + 病种 + 诊断日期配对的卡数';
COMMENT ON COLUMN recon.card_daily_summary.nndrs_deleted IS '大疫情网中已删除、不参与比对的卡数';
