-- 传染病智能监测预警数据集（版本 1.0）：标化 EMR 镜像库 schema emr 的表结构。
-- 本文件由数据集规范 cdcsync/spec/dataset.yaml 自动生成，请勿手工修改；
-- 修改规范后重新生成：python -m cdcsync.spec.ddl > sql/002_emr_mirror.sql
-- 每张表均设主键、REPLICA IDENTITY FULL（逻辑复制携带整行）及中文注释。
-- 逻辑复制发布（publication）由 cdcsync db init 创建，不在本文件中。
-- Developer note: generated file; tests/test_spec.py compares it with the spec.

CREATE SCHEMA IF NOT EXISTS emr;
COMMENT ON SCHEMA emr IS '标化EMR镜像库：医院HIS/EMR厂商按数据集规范写入的镜像表';

CREATE TABLE emr.patient (
    org_code                   varchar(22) NOT NULL,
    patient_id                 varchar(64) NOT NULL,
    health_card_no             varchar(32),
    name                       varchar(50) NOT NULL,
    sex_code                   varchar(16) NOT NULL,
    birth_date                 date NOT NULL,
    id_type_code               varchar(16),
    id_no                      varchar(32),
    ethnicity_code             varchar(16),
    nationality_code           varchar(16),
    marital_status_code        varchar(16),
    occupation_code            varchar(16),
    education_code             varchar(16),
    abo_blood_type_code        varchar(16),
    rh_blood_type_code         varchar(16),
    phone                      varchar(32),
    current_addr_region_code   varchar(12),
    current_addr_detail        varchar(200),
    household_addr_region_code varchar(12),
    household_addr_detail      varchar(200),
    postal_code                varchar(6),
    work_unit                  varchar(100),
    contact_name               varchar(50),
    contact_relation_code      varchar(16),
    contact_phone              varchar(32),
    register_time              timestamp,
    modify_flag                varchar(8) NOT NULL,
    collect_time               timestamp NOT NULL,
    update_time                timestamp NOT NULL,
    CONSTRAINT patient_pkey PRIMARY KEY (org_code, patient_id)
);
ALTER TABLE emr.patient REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.patient IS '患者基本信息（上报时效：实时）';
COMMENT ON COLUMN emr.patient.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.patient.patient_id IS '患者唯一标识（院内患者主索引号）';
COMMENT ON COLUMN emr.patient.health_card_no IS '居民健康卡号';
COMMENT ON COLUMN emr.patient.name IS '患者姓名';
COMMENT ON COLUMN emr.patient.sex_code IS '性别代码（值域：性别）';
COMMENT ON COLUMN emr.patient.birth_date IS '出生日期';
COMMENT ON COLUMN emr.patient.id_type_code IS '身份证件类别代码（值域：身份证件类别）';
COMMENT ON COLUMN emr.patient.id_no IS '身份证件号码';
COMMENT ON COLUMN emr.patient.ethnicity_code IS '民族代码（值域：民族）';
COMMENT ON COLUMN emr.patient.nationality_code IS '国籍代码（值域：国籍）';
COMMENT ON COLUMN emr.patient.marital_status_code IS '婚姻状况代码（值域：婚姻状况）';
COMMENT ON COLUMN emr.patient.occupation_code IS '职业代码（值域：职业）';
COMMENT ON COLUMN emr.patient.education_code IS '文化程度代码（值域：文化程度）';
COMMENT ON COLUMN emr.patient.abo_blood_type_code IS 'ABO血型代码（值域：ABO血型）';
COMMENT ON COLUMN emr.patient.rh_blood_type_code IS 'Rh血型代码（值域：Rh血型）';
COMMENT ON COLUMN emr.patient.phone IS '本人电话号码';
COMMENT ON COLUMN emr.patient.current_addr_region_code IS '现住址行政区划代码（值域：行政区划/国家疾控地区代码）';
COMMENT ON COLUMN emr.patient.current_addr_detail IS '现住详细地址';
COMMENT ON COLUMN emr.patient.household_addr_region_code IS '户籍地址行政区划代码（值域：行政区划/国家疾控地区代码）';
COMMENT ON COLUMN emr.patient.household_addr_detail IS '户籍详细地址';
COMMENT ON COLUMN emr.patient.postal_code IS '现住址邮政编码';
COMMENT ON COLUMN emr.patient.work_unit IS '工作单位名称';
COMMENT ON COLUMN emr.patient.contact_name IS '联系人姓名';
COMMENT ON COLUMN emr.patient.contact_relation_code IS '联系人与患者关系代码（值域：家庭关系）';
COMMENT ON COLUMN emr.patient.contact_phone IS '联系人电话号码';
COMMENT ON COLUMN emr.patient.register_time IS '建档日期时间';
COMMENT ON COLUMN emr.patient.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.patient.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.patient.update_time IS '数据更新时间';
CREATE INDEX patient_update_time_idx ON emr.patient (update_time);

CREATE TABLE emr.visit (
    org_code            varchar(22) NOT NULL,
    visit_id            varchar(64) NOT NULL,
    patient_id          varchar(64) NOT NULL,
    visit_type_code     varchar(16) NOT NULL,
    outpatient_no       varchar(32),
    inpatient_no        varchar(32),
    visit_time          timestamp NOT NULL,
    visit_end_time      timestamp,
    dept_code           varchar(32) NOT NULL,
    dept_name           varchar(100),
    doctor_id           varchar(64),
    doctor_name         varchar(50),
    birth_date          date,
    age_years           smallint,
    age_months          smallint,
    chief_complaint     varchar(1000),
    first_visit_flag    boolean,
    fever_clinic_flag   boolean,
    payment_method_code varchar(16),
    modify_flag         varchar(8) NOT NULL,
    collect_time        timestamp NOT NULL,
    update_time         timestamp NOT NULL,
    CONSTRAINT visit_pkey PRIMARY KEY (org_code, visit_id)
);
ALTER TABLE emr.visit REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.visit IS '门急诊及住院就诊记录（上报时效：实时）';
COMMENT ON COLUMN emr.visit.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.visit.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.visit.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.visit.visit_type_code IS '就诊类型代码（值域：就诊类型）';
COMMENT ON COLUMN emr.visit.outpatient_no IS '门（急）诊号';
COMMENT ON COLUMN emr.visit.inpatient_no IS '住院号';
COMMENT ON COLUMN emr.visit.visit_time IS '就诊日期时间（住院为入院日期时间）';
COMMENT ON COLUMN emr.visit.visit_end_time IS '就诊结束日期时间（住院为出院日期时间）';
COMMENT ON COLUMN emr.visit.dept_code IS '就诊科室代码（值域：科室）';
COMMENT ON COLUMN emr.visit.dept_name IS '就诊科室名称';
COMMENT ON COLUMN emr.visit.doctor_id IS '接诊医生工号';
COMMENT ON COLUMN emr.visit.doctor_name IS '接诊医生姓名';
COMMENT ON COLUMN emr.visit.birth_date IS '患者出生日期';
COMMENT ON COLUMN emr.visit.age_years IS '就诊时年龄（岁）（单位：岁）';
COMMENT ON COLUMN emr.visit.age_months IS '就诊时年龄（月，不足1周岁时填写）（单位：月）';
COMMENT ON COLUMN emr.visit.chief_complaint IS '主诉';
COMMENT ON COLUMN emr.visit.first_visit_flag IS '初诊标志（true 初诊，false 复诊）';
COMMENT ON COLUMN emr.visit.fever_clinic_flag IS '发热门诊标志';
COMMENT ON COLUMN emr.visit.payment_method_code IS '医疗付费方式代码（值域：医疗付费方式）';
COMMENT ON COLUMN emr.visit.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.visit.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.visit.update_time IS '数据更新时间';
CREATE INDEX visit_visit_time_idx ON emr.visit (visit_time);
CREATE INDEX visit_patient_id_idx ON emr.visit (patient_id);

CREATE TABLE emr.diagnosis (
    org_code                varchar(22) NOT NULL,
    diagnosis_id            varchar(64) NOT NULL,
    visit_id                varchar(64) NOT NULL,
    patient_id              varchar(64) NOT NULL,
    visit_type_code         varchar(16) NOT NULL,
    diagnosis_category_code varchar(16) NOT NULL,
    diagnosis_seq           smallint,
    main_diagnosis_flag     boolean,
    diagnosis_code          varchar(32) NOT NULL,
    diagnosis_name          varchar(200) NOT NULL,
    diagnosis_status_code   varchar(16) NOT NULL,
    onset_date              date,
    diagnosis_time          timestamp NOT NULL,
    dept_code               varchar(32),
    doctor_id               varchar(64),
    doctor_name             varchar(50),
    modify_flag             varchar(8) NOT NULL,
    collect_time            timestamp NOT NULL,
    update_time             timestamp NOT NULL,
    CONSTRAINT diagnosis_pkey PRIMARY KEY (org_code, diagnosis_id)
);
ALTER TABLE emr.diagnosis REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.diagnosis IS '诊断记录（上报时效：实时）';
COMMENT ON COLUMN emr.diagnosis.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.diagnosis.diagnosis_id IS '诊断记录流水号';
COMMENT ON COLUMN emr.diagnosis.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.diagnosis.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.diagnosis.visit_type_code IS '就诊类型代码（值域：就诊类型）';
COMMENT ON COLUMN emr.diagnosis.diagnosis_category_code IS '诊断类别代码（值域：诊断类别）';
COMMENT ON COLUMN emr.diagnosis.diagnosis_seq IS '诊断序号';
COMMENT ON COLUMN emr.diagnosis.main_diagnosis_flag IS '主要诊断标志';
COMMENT ON COLUMN emr.diagnosis.diagnosis_code IS '诊断代码（ICD-10）（值域：ICD-10诊断）';
COMMENT ON COLUMN emr.diagnosis.diagnosis_name IS '诊断名称';
COMMENT ON COLUMN emr.diagnosis.diagnosis_status_code IS '诊断状态代码（疑似、临床诊断、确诊等）（值域：诊断状态/病例分类）';
COMMENT ON COLUMN emr.diagnosis.onset_date IS '发病日期';
COMMENT ON COLUMN emr.diagnosis.diagnosis_time IS '诊断日期时间';
COMMENT ON COLUMN emr.diagnosis.dept_code IS '诊断科室代码（值域：科室）';
COMMENT ON COLUMN emr.diagnosis.doctor_id IS '诊断医生工号';
COMMENT ON COLUMN emr.diagnosis.doctor_name IS '诊断医生姓名';
COMMENT ON COLUMN emr.diagnosis.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.diagnosis.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.diagnosis.update_time IS '数据更新时间';
CREATE INDEX diagnosis_diagnosis_time_idx ON emr.diagnosis (diagnosis_time);
CREATE INDEX diagnosis_patient_id_idx ON emr.diagnosis (patient_id);

CREATE TABLE emr.symptom (
    org_code             varchar(22) NOT NULL,
    symptom_id           varchar(64) NOT NULL,
    visit_id             varchar(64) NOT NULL,
    patient_id           varchar(64) NOT NULL,
    chief_complaint_flag boolean,
    symptom_code         varchar(32),
    symptom_name         varchar(100) NOT NULL,
    symptom_desc         varchar(1000),
    onset_time           timestamp,
    duration_days        smallint,
    record_time          timestamp NOT NULL,
    recorder_id          varchar(64),
    modify_flag          varchar(8) NOT NULL,
    collect_time         timestamp NOT NULL,
    update_time          timestamp NOT NULL,
    CONSTRAINT symptom_pkey PRIMARY KEY (org_code, symptom_id)
);
ALTER TABLE emr.symptom REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.symptom IS '主诉与症状（上报时效：实时）';
COMMENT ON COLUMN emr.symptom.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.symptom.symptom_id IS '症状记录流水号';
COMMENT ON COLUMN emr.symptom.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.symptom.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.symptom.chief_complaint_flag IS '是否为主诉症状';
COMMENT ON COLUMN emr.symptom.symptom_code IS '症状代码（院内）';
COMMENT ON COLUMN emr.symptom.symptom_name IS '症状名称';
COMMENT ON COLUMN emr.symptom.symptom_desc IS '症状描述';
COMMENT ON COLUMN emr.symptom.onset_time IS '症状出现日期时间';
COMMENT ON COLUMN emr.symptom.duration_days IS '症状持续天数（单位：天）';
COMMENT ON COLUMN emr.symptom.record_time IS '记录日期时间';
COMMENT ON COLUMN emr.symptom.recorder_id IS '记录人工号';
COMMENT ON COLUMN emr.symptom.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.symptom.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.symptom.update_time IS '数据更新时间';
CREATE INDEX symptom_record_time_idx ON emr.symptom (record_time);
CREATE INDEX symptom_patient_id_idx ON emr.symptom (patient_id);

CREATE TABLE emr.vital_sign (
    org_code      varchar(22) NOT NULL,
    vital_sign_id varchar(64) NOT NULL,
    visit_id      varchar(64) NOT NULL,
    patient_id    varchar(64) NOT NULL,
    measure_time  timestamp NOT NULL,
    temperature   numeric(4,1),
    pulse         smallint,
    resp_rate     smallint,
    sbp           smallint,
    dbp           smallint,
    spo2          numeric(4,1),
    weight        numeric(5,1),
    height        numeric(4,1),
    recorder_id   varchar(64),
    modify_flag   varchar(8) NOT NULL,
    collect_time  timestamp NOT NULL,
    update_time   timestamp NOT NULL,
    CONSTRAINT vital_sign_pkey PRIMARY KEY (org_code, vital_sign_id)
);
ALTER TABLE emr.vital_sign REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.vital_sign IS '体格检查（生命体征）（上报时效：2小时内）';
COMMENT ON COLUMN emr.vital_sign.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.vital_sign.vital_sign_id IS '体征记录流水号';
COMMENT ON COLUMN emr.vital_sign.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.vital_sign.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.vital_sign.measure_time IS '测量日期时间';
COMMENT ON COLUMN emr.vital_sign.temperature IS '体温（单位：℃）';
COMMENT ON COLUMN emr.vital_sign.pulse IS '脉率（单位：次/分）';
COMMENT ON COLUMN emr.vital_sign.resp_rate IS '呼吸频率（单位：次/分）';
COMMENT ON COLUMN emr.vital_sign.sbp IS '收缩压（单位：mmHg）';
COMMENT ON COLUMN emr.vital_sign.dbp IS '舒张压（单位：mmHg）';
COMMENT ON COLUMN emr.vital_sign.spo2 IS '血氧饱和度（单位：%）';
COMMENT ON COLUMN emr.vital_sign.weight IS '体重（单位：kg）';
COMMENT ON COLUMN emr.vital_sign.height IS '身高（单位：cm）';
COMMENT ON COLUMN emr.vital_sign.recorder_id IS '测量人工号';
COMMENT ON COLUMN emr.vital_sign.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.vital_sign.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.vital_sign.update_time IS '数据更新时间';
CREATE INDEX vital_sign_measure_time_idx ON emr.vital_sign (measure_time);
CREATE INDEX vital_sign_patient_id_idx ON emr.vital_sign (patient_id);

CREATE TABLE emr.lab_report (
    org_code           varchar(22) NOT NULL,
    lab_report_id      varchar(64) NOT NULL,
    visit_id           varchar(64) NOT NULL,
    patient_id         varchar(64) NOT NULL,
    visit_type_code    varchar(16) NOT NULL,
    apply_no           varchar(64),
    report_name        varchar(100) NOT NULL,
    apply_dept_code    varchar(32),
    apply_doctor_id    varchar(64),
    apply_time         timestamp,
    specimen_no        varchar(64),
    specimen_type_code varchar(32) NOT NULL,
    sample_time        timestamp,
    receive_time       timestamp,
    report_time        timestamp NOT NULL,
    report_doctor_id   varchar(64),
    audit_doctor_id    varchar(64),
    audit_time         timestamp,
    modify_flag        varchar(8) NOT NULL,
    collect_time       timestamp NOT NULL,
    update_time        timestamp NOT NULL,
    CONSTRAINT lab_report_pkey PRIMARY KEY (org_code, lab_report_id)
);
ALTER TABLE emr.lab_report REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.lab_report IS '检验报告（上报时效：实时）';
COMMENT ON COLUMN emr.lab_report.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.lab_report.lab_report_id IS '检验报告单号';
COMMENT ON COLUMN emr.lab_report.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.lab_report.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.lab_report.visit_type_code IS '就诊类型代码（值域：就诊类型）';
COMMENT ON COLUMN emr.lab_report.apply_no IS '检验申请单号';
COMMENT ON COLUMN emr.lab_report.report_name IS '检验报告名称（如血常规、新型冠状病毒核酸检测）';
COMMENT ON COLUMN emr.lab_report.apply_dept_code IS '申请科室代码（值域：科室）';
COMMENT ON COLUMN emr.lab_report.apply_doctor_id IS '申请医生工号';
COMMENT ON COLUMN emr.lab_report.apply_time IS '申请日期时间';
COMMENT ON COLUMN emr.lab_report.specimen_no IS '标本条码号';
COMMENT ON COLUMN emr.lab_report.specimen_type_code IS '标本类型代码（值域：标本类型）';
COMMENT ON COLUMN emr.lab_report.sample_time IS '采样日期时间';
COMMENT ON COLUMN emr.lab_report.receive_time IS '标本接收日期时间';
COMMENT ON COLUMN emr.lab_report.report_time IS '报告日期时间';
COMMENT ON COLUMN emr.lab_report.report_doctor_id IS '报告医师工号';
COMMENT ON COLUMN emr.lab_report.audit_doctor_id IS '审核医师工号';
COMMENT ON COLUMN emr.lab_report.audit_time IS '审核日期时间';
COMMENT ON COLUMN emr.lab_report.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.lab_report.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.lab_report.update_time IS '数据更新时间';
CREATE INDEX lab_report_report_time_idx ON emr.lab_report (report_time);
CREATE INDEX lab_report_patient_id_idx ON emr.lab_report (patient_id);

CREATE TABLE emr.lab_result (
    org_code                varchar(22) NOT NULL,
    lab_result_id           varchar(64) NOT NULL,
    lab_report_id           varchar(64) NOT NULL,
    visit_id                varchar(64) NOT NULL,
    patient_id              varchar(64) NOT NULL,
    lab_item_code           varchar(64) NOT NULL,
    lab_item_name           varchar(100) NOT NULL,
    result_value            varchar(200) NOT NULL,
    result_numeric          numeric(18,4),
    result_unit             varchar(32),
    qualitative_result_code varchar(16),
    reference_range         varchar(100),
    reference_low           numeric(18,4),
    reference_high          numeric(18,4),
    abnormal_flag_code      varchar(16),
    pathogen_code           varchar(32),
    ct_value                numeric(5,2),
    test_method             varchar(100),
    report_time             timestamp NOT NULL,
    modify_flag             varchar(8) NOT NULL,
    collect_time            timestamp NOT NULL,
    update_time             timestamp NOT NULL,
    CONSTRAINT lab_result_pkey PRIMARY KEY (org_code, lab_result_id)
);
ALTER TABLE emr.lab_result REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.lab_result IS '检验结果（含病原学检测结果）（上报时效：实时）';
COMMENT ON COLUMN emr.lab_result.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.lab_result.lab_result_id IS '检验结果流水号';
COMMENT ON COLUMN emr.lab_result.lab_report_id IS '检验报告单号';
COMMENT ON COLUMN emr.lab_result.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.lab_result.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.lab_result.lab_item_code IS '检验项目代码（值域：检验项目）';
COMMENT ON COLUMN emr.lab_result.lab_item_name IS '检验项目名称';
COMMENT ON COLUMN emr.lab_result.result_value IS '检验结果（原始文本）';
COMMENT ON COLUMN emr.lab_result.result_numeric IS '定量结果数值';
COMMENT ON COLUMN emr.lab_result.result_unit IS '计量单位';
COMMENT ON COLUMN emr.lab_result.qualitative_result_code IS '定性结果代码（值域：定性结果）';
COMMENT ON COLUMN emr.lab_result.reference_range IS '参考值范围';
COMMENT ON COLUMN emr.lab_result.reference_low IS '参考值下限';
COMMENT ON COLUMN emr.lab_result.reference_high IS '参考值上限';
COMMENT ON COLUMN emr.lab_result.abnormal_flag_code IS '异常标志代码（值域：异常标志）';
COMMENT ON COLUMN emr.lab_result.pathogen_code IS '检出病原体代码（值域：病原体）';
COMMENT ON COLUMN emr.lab_result.ct_value IS '核酸检测Ct值';
COMMENT ON COLUMN emr.lab_result.test_method IS '检测方法';
COMMENT ON COLUMN emr.lab_result.report_time IS '报告日期时间';
COMMENT ON COLUMN emr.lab_result.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.lab_result.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.lab_result.update_time IS '数据更新时间';
CREATE INDEX lab_result_report_time_idx ON emr.lab_result (report_time);
CREATE INDEX lab_result_patient_id_idx ON emr.lab_result (patient_id);

CREATE TABLE emr.exam_report (
    org_code           varchar(22) NOT NULL,
    exam_report_id     varchar(64) NOT NULL,
    visit_id           varchar(64) NOT NULL,
    patient_id         varchar(64) NOT NULL,
    visit_type_code    varchar(16) NOT NULL,
    exam_type_code     varchar(32) NOT NULL,
    exam_item_code     varchar(64),
    exam_item_name     varchar(200) NOT NULL,
    exam_part          varchar(100),
    apply_dept_code    varchar(32),
    apply_doctor_id    varchar(64),
    apply_time         timestamp,
    exam_time          timestamp,
    report_time        timestamp NOT NULL,
    findings           text,
    conclusion         text,
    abnormal_flag_code varchar(16),
    report_doctor_id   varchar(64),
    audit_doctor_id    varchar(64),
    modify_flag        varchar(8) NOT NULL,
    collect_time       timestamp NOT NULL,
    update_time        timestamp NOT NULL,
    CONSTRAINT exam_report_pkey PRIMARY KEY (org_code, exam_report_id)
);
ALTER TABLE emr.exam_report REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.exam_report IS '检查报告（上报时效：2小时内）';
COMMENT ON COLUMN emr.exam_report.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.exam_report.exam_report_id IS '检查报告单号';
COMMENT ON COLUMN emr.exam_report.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.exam_report.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.exam_report.visit_type_code IS '就诊类型代码（值域：就诊类型）';
COMMENT ON COLUMN emr.exam_report.exam_type_code IS '检查类型代码（值域：检查类型）';
COMMENT ON COLUMN emr.exam_report.exam_item_code IS '检查项目代码（院内）';
COMMENT ON COLUMN emr.exam_report.exam_item_name IS '检查项目名称';
COMMENT ON COLUMN emr.exam_report.exam_part IS '检查部位';
COMMENT ON COLUMN emr.exam_report.apply_dept_code IS '申请科室代码（值域：科室）';
COMMENT ON COLUMN emr.exam_report.apply_doctor_id IS '申请医生工号';
COMMENT ON COLUMN emr.exam_report.apply_time IS '申请日期时间';
COMMENT ON COLUMN emr.exam_report.exam_time IS '检查日期时间';
COMMENT ON COLUMN emr.exam_report.report_time IS '报告日期时间';
COMMENT ON COLUMN emr.exam_report.findings IS '检查所见';
COMMENT ON COLUMN emr.exam_report.conclusion IS '检查结论（诊断印象）';
COMMENT ON COLUMN emr.exam_report.abnormal_flag_code IS '异常标志代码（值域：异常标志）';
COMMENT ON COLUMN emr.exam_report.report_doctor_id IS '报告医师工号';
COMMENT ON COLUMN emr.exam_report.audit_doctor_id IS '审核医师工号';
COMMENT ON COLUMN emr.exam_report.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.exam_report.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.exam_report.update_time IS '数据更新时间';
CREATE INDEX exam_report_report_time_idx ON emr.exam_report (report_time);
CREATE INDEX exam_report_patient_id_idx ON emr.exam_report (patient_id);

CREATE TABLE emr.drug_order (
    org_code            varchar(22) NOT NULL,
    drug_order_id       varchar(64) NOT NULL,
    visit_id            varchar(64) NOT NULL,
    patient_id          varchar(64) NOT NULL,
    visit_type_code     varchar(16) NOT NULL,
    prescription_no     varchar(64),
    order_category_code varchar(16) NOT NULL,
    drug_code           varchar(64) NOT NULL,
    drug_name           varchar(200) NOT NULL,
    drug_spec           varchar(100),
    dosage_form         varchar(50),
    dose                numeric(12,4),
    dose_unit           varchar(20),
    frequency           varchar(32),
    route_code          varchar(16),
    days                smallint,
    total_quantity      numeric(12,4),
    quantity_unit       varchar(20),
    order_time          timestamp NOT NULL,
    start_time          timestamp,
    stop_time           timestamp,
    dept_code           varchar(32),
    doctor_id           varchar(64),
    modify_flag         varchar(8) NOT NULL,
    collect_time        timestamp NOT NULL,
    update_time         timestamp NOT NULL,
    CONSTRAINT drug_order_pkey PRIMARY KEY (org_code, drug_order_id)
);
ALTER TABLE emr.drug_order REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.drug_order IS '医嘱及处方用药（上报时效：2小时内）';
COMMENT ON COLUMN emr.drug_order.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.drug_order.drug_order_id IS '医嘱（处方明细）流水号';
COMMENT ON COLUMN emr.drug_order.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.drug_order.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.drug_order.visit_type_code IS '就诊类型代码（值域：就诊类型）';
COMMENT ON COLUMN emr.drug_order.prescription_no IS '处方号';
COMMENT ON COLUMN emr.drug_order.order_category_code IS '医嘱类别代码（值域：医嘱类别）';
COMMENT ON COLUMN emr.drug_order.drug_code IS '药品代码（值域：药品）';
COMMENT ON COLUMN emr.drug_order.drug_name IS '药品通用名称';
COMMENT ON COLUMN emr.drug_order.drug_spec IS '药品规格';
COMMENT ON COLUMN emr.drug_order.dosage_form IS '剂型';
COMMENT ON COLUMN emr.drug_order.dose IS '单次剂量';
COMMENT ON COLUMN emr.drug_order.dose_unit IS '剂量单位';
COMMENT ON COLUMN emr.drug_order.frequency IS '用药频次（如 qd、bid）';
COMMENT ON COLUMN emr.drug_order.route_code IS '给药途径代码（值域：给药途径）';
COMMENT ON COLUMN emr.drug_order.days IS '用药天数（单位：天）';
COMMENT ON COLUMN emr.drug_order.total_quantity IS '发药总量';
COMMENT ON COLUMN emr.drug_order.quantity_unit IS '总量单位';
COMMENT ON COLUMN emr.drug_order.order_time IS '开立日期时间';
COMMENT ON COLUMN emr.drug_order.start_time IS '医嘱开始日期时间';
COMMENT ON COLUMN emr.drug_order.stop_time IS '医嘱停止日期时间';
COMMENT ON COLUMN emr.drug_order.dept_code IS '开立科室代码（值域：科室）';
COMMENT ON COLUMN emr.drug_order.doctor_id IS '开立医生工号';
COMMENT ON COLUMN emr.drug_order.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.drug_order.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.drug_order.update_time IS '数据更新时间';
CREATE INDEX drug_order_order_time_idx ON emr.drug_order (order_time);
CREATE INDEX drug_order_patient_id_idx ON emr.drug_order (patient_id);

CREATE TABLE emr.progress_note (
    org_code           varchar(22) NOT NULL,
    note_id            varchar(64) NOT NULL,
    visit_id           varchar(64) NOT NULL,
    patient_id         varchar(64) NOT NULL,
    document_type_code varchar(16) NOT NULL,
    title              varchar(200),
    content            text NOT NULL,
    record_time        timestamp NOT NULL,
    dept_code          varchar(32),
    author_id          varchar(64),
    author_name        varchar(50),
    modify_flag        varchar(8) NOT NULL,
    collect_time       timestamp NOT NULL,
    update_time        timestamp NOT NULL,
    CONSTRAINT progress_note_pkey PRIMARY KEY (org_code, note_id)
);
ALTER TABLE emr.progress_note REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.progress_note IS '病程记录（上报时效：2小时内）';
COMMENT ON COLUMN emr.progress_note.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.progress_note.note_id IS '病程记录流水号';
COMMENT ON COLUMN emr.progress_note.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.progress_note.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.progress_note.document_type_code IS '文书类型代码（首次病程记录、日常病程记录等）（值域：文书类型）';
COMMENT ON COLUMN emr.progress_note.title IS '记录标题';
COMMENT ON COLUMN emr.progress_note.content IS '病程记录内容';
COMMENT ON COLUMN emr.progress_note.record_time IS '记录日期时间';
COMMENT ON COLUMN emr.progress_note.dept_code IS '记录科室代码（值域：科室）';
COMMENT ON COLUMN emr.progress_note.author_id IS '记录医师工号';
COMMENT ON COLUMN emr.progress_note.author_name IS '记录医师姓名';
COMMENT ON COLUMN emr.progress_note.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.progress_note.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.progress_note.update_time IS '数据更新时间';
CREATE INDEX progress_note_record_time_idx ON emr.progress_note (record_time);
CREATE INDEX progress_note_patient_id_idx ON emr.progress_note (patient_id);

CREATE TABLE emr.admission (
    org_code                 varchar(22) NOT NULL,
    admission_id             varchar(64) NOT NULL,
    visit_id                 varchar(64) NOT NULL,
    patient_id               varchar(64) NOT NULL,
    inpatient_no             varchar(32) NOT NULL,
    admission_time           timestamp NOT NULL,
    dept_code                varchar(32) NOT NULL,
    ward                     varchar(50),
    bed_no                   varchar(20),
    admission_route_code     varchar(16),
    admission_condition_code varchar(16),
    chief_complaint          varchar(1000),
    present_illness          text,
    past_history             text,
    epidemiological_history  text,
    admission_diagnosis_code varchar(32),
    admission_diagnosis_name varchar(200),
    doctor_id                varchar(64),
    record_time              timestamp,
    modify_flag              varchar(8) NOT NULL,
    collect_time             timestamp NOT NULL,
    update_time              timestamp NOT NULL,
    CONSTRAINT admission_pkey PRIMARY KEY (org_code, admission_id)
);
ALTER TABLE emr.admission REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.admission IS '入院记录（上报时效：2小时内）';
COMMENT ON COLUMN emr.admission.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.admission.admission_id IS '入院记录流水号';
COMMENT ON COLUMN emr.admission.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.admission.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.admission.inpatient_no IS '住院号';
COMMENT ON COLUMN emr.admission.admission_time IS '入院日期时间';
COMMENT ON COLUMN emr.admission.dept_code IS '入院科室代码（值域：科室）';
COMMENT ON COLUMN emr.admission.ward IS '病区';
COMMENT ON COLUMN emr.admission.bed_no IS '床号';
COMMENT ON COLUMN emr.admission.admission_route_code IS '入院途径代码（值域：入院途径）';
COMMENT ON COLUMN emr.admission.admission_condition_code IS '入院病情代码（值域：入院病情）';
COMMENT ON COLUMN emr.admission.chief_complaint IS '主诉';
COMMENT ON COLUMN emr.admission.present_illness IS '现病史';
COMMENT ON COLUMN emr.admission.past_history IS '既往史';
COMMENT ON COLUMN emr.admission.epidemiological_history IS '流行病学史';
COMMENT ON COLUMN emr.admission.admission_diagnosis_code IS '入院诊断代码（ICD-10）（值域：ICD-10诊断）';
COMMENT ON COLUMN emr.admission.admission_diagnosis_name IS '入院诊断名称';
COMMENT ON COLUMN emr.admission.doctor_id IS '收治医师工号';
COMMENT ON COLUMN emr.admission.record_time IS '记录日期时间';
COMMENT ON COLUMN emr.admission.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.admission.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.admission.update_time IS '数据更新时间';
CREATE INDEX admission_admission_time_idx ON emr.admission (admission_time);
CREATE INDEX admission_patient_id_idx ON emr.admission (patient_id);

CREATE TABLE emr.discharge (
    org_code                 varchar(22) NOT NULL,
    discharge_id             varchar(64) NOT NULL,
    visit_id                 varchar(64) NOT NULL,
    patient_id               varchar(64) NOT NULL,
    inpatient_no             varchar(32) NOT NULL,
    admission_time           timestamp NOT NULL,
    discharge_time           timestamp NOT NULL,
    dept_code                varchar(32) NOT NULL,
    inpatient_days           integer,
    discharge_mode_code      varchar(16) NOT NULL,
    transfer_org_code        varchar(22),
    discharge_diagnosis_code varchar(32),
    discharge_diagnosis_name varchar(200),
    treatment_summary        text,
    discharge_condition      varchar(1000),
    discharge_advice         text,
    doctor_id                varchar(64),
    record_time              timestamp,
    modify_flag              varchar(8) NOT NULL,
    collect_time             timestamp NOT NULL,
    update_time              timestamp NOT NULL,
    CONSTRAINT discharge_pkey PRIMARY KEY (org_code, discharge_id)
);
ALTER TABLE emr.discharge REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.discharge IS '出院记录（上报时效：24小时内）';
COMMENT ON COLUMN emr.discharge.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.discharge.discharge_id IS '出院记录流水号';
COMMENT ON COLUMN emr.discharge.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.discharge.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.discharge.inpatient_no IS '住院号';
COMMENT ON COLUMN emr.discharge.admission_time IS '入院日期时间';
COMMENT ON COLUMN emr.discharge.discharge_time IS '出院日期时间';
COMMENT ON COLUMN emr.discharge.dept_code IS '出院科室代码（值域：科室）';
COMMENT ON COLUMN emr.discharge.inpatient_days IS '实际住院天数（单位：天）';
COMMENT ON COLUMN emr.discharge.discharge_mode_code IS '离院方式代码（值域：离院方式）';
COMMENT ON COLUMN emr.discharge.transfer_org_code IS '拟接收医疗机构代码（转院时填写）（值域：机构代码）';
COMMENT ON COLUMN emr.discharge.discharge_diagnosis_code IS '出院主要诊断代码（ICD-10）（值域：ICD-10诊断）';
COMMENT ON COLUMN emr.discharge.discharge_diagnosis_name IS '出院主要诊断名称';
COMMENT ON COLUMN emr.discharge.treatment_summary IS '诊疗经过';
COMMENT ON COLUMN emr.discharge.discharge_condition IS '出院情况';
COMMENT ON COLUMN emr.discharge.discharge_advice IS '出院医嘱';
COMMENT ON COLUMN emr.discharge.doctor_id IS '记录医师工号';
COMMENT ON COLUMN emr.discharge.record_time IS '记录日期时间';
COMMENT ON COLUMN emr.discharge.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.discharge.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.discharge.update_time IS '数据更新时间';
CREATE INDEX discharge_discharge_time_idx ON emr.discharge (discharge_time);
CREATE INDEX discharge_patient_id_idx ON emr.discharge (patient_id);

CREATE TABLE emr.medical_record_home (
    org_code                  varchar(22) NOT NULL,
    home_page_id              varchar(64) NOT NULL,
    visit_id                  varchar(64) NOT NULL,
    patient_id                varchar(64) NOT NULL,
    inpatient_no              varchar(32) NOT NULL,
    admission_times           smallint,
    payment_method_code       varchar(16),
    name                      varchar(50) NOT NULL,
    sex_code                  varchar(16) NOT NULL,
    birth_date                date NOT NULL,
    age_years                 smallint,
    age_months                smallint,
    nationality_code          varchar(16),
    ethnicity_code            varchar(16),
    id_type_code              varchar(16),
    id_no                     varchar(32),
    occupation_code           varchar(16),
    marital_status_code       varchar(16),
    current_addr_region_code  varchar(12),
    current_addr_detail       varchar(200),
    phone                     varchar(32),
    work_unit                 varchar(100),
    contact_name              varchar(50),
    contact_relation_code     varchar(16),
    contact_phone             varchar(32),
    admission_route_code      varchar(16),
    admission_time            timestamp NOT NULL,
    admission_dept_code       varchar(32) NOT NULL,
    discharge_time            timestamp NOT NULL,
    discharge_dept_code       varchar(32) NOT NULL,
    inpatient_days            integer,
    outpatient_diagnosis_code varchar(32),
    outpatient_diagnosis_name varchar(200),
    main_diagnosis_code       varchar(32) NOT NULL,
    main_diagnosis_name       varchar(200) NOT NULL,
    admission_condition_code  varchar(16),
    main_procedure_code       varchar(32),
    main_procedure_name       varchar(200),
    main_procedure_date       date,
    abo_blood_type_code       varchar(16),
    rh_blood_type_code        varchar(16),
    discharge_mode_code       varchar(16) NOT NULL,
    transfer_org_code         varchar(22),
    attending_doctor_id       varchar(64),
    total_cost                numeric(12,2),
    modify_flag               varchar(8) NOT NULL,
    collect_time              timestamp NOT NULL,
    update_time               timestamp NOT NULL,
    CONSTRAINT medical_record_home_pkey PRIMARY KEY (org_code, home_page_id)
);
ALTER TABLE emr.medical_record_home REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.medical_record_home IS '住院病案首页（上报时效：24小时内）';
COMMENT ON COLUMN emr.medical_record_home.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.medical_record_home.home_page_id IS '病案首页流水号';
COMMENT ON COLUMN emr.medical_record_home.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.medical_record_home.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.medical_record_home.inpatient_no IS '住院号（病案号）';
COMMENT ON COLUMN emr.medical_record_home.admission_times IS '住院次数';
COMMENT ON COLUMN emr.medical_record_home.payment_method_code IS '医疗付费方式代码（值域：医疗付费方式）';
COMMENT ON COLUMN emr.medical_record_home.name IS '患者姓名';
COMMENT ON COLUMN emr.medical_record_home.sex_code IS '性别代码（值域：性别）';
COMMENT ON COLUMN emr.medical_record_home.birth_date IS '出生日期';
COMMENT ON COLUMN emr.medical_record_home.age_years IS '入院时年龄（岁）（单位：岁）';
COMMENT ON COLUMN emr.medical_record_home.age_months IS '入院时年龄（月，不足1周岁时填写）（单位：月）';
COMMENT ON COLUMN emr.medical_record_home.nationality_code IS '国籍代码（值域：国籍）';
COMMENT ON COLUMN emr.medical_record_home.ethnicity_code IS '民族代码（值域：民族）';
COMMENT ON COLUMN emr.medical_record_home.id_type_code IS '身份证件类别代码（值域：身份证件类别）';
COMMENT ON COLUMN emr.medical_record_home.id_no IS '身份证件号码';
COMMENT ON COLUMN emr.medical_record_home.occupation_code IS '职业代码（值域：职业）';
COMMENT ON COLUMN emr.medical_record_home.marital_status_code IS '婚姻状况代码（值域：婚姻状况）';
COMMENT ON COLUMN emr.medical_record_home.current_addr_region_code IS '现住址行政区划代码（值域：行政区划/国家疾控地区代码）';
COMMENT ON COLUMN emr.medical_record_home.current_addr_detail IS '现住详细地址';
COMMENT ON COLUMN emr.medical_record_home.phone IS '本人电话号码';
COMMENT ON COLUMN emr.medical_record_home.work_unit IS '工作单位名称';
COMMENT ON COLUMN emr.medical_record_home.contact_name IS '联系人姓名';
COMMENT ON COLUMN emr.medical_record_home.contact_relation_code IS '联系人与患者关系代码（值域：家庭关系）';
COMMENT ON COLUMN emr.medical_record_home.contact_phone IS '联系人电话号码';
COMMENT ON COLUMN emr.medical_record_home.admission_route_code IS '入院途径代码（值域：入院途径）';
COMMENT ON COLUMN emr.medical_record_home.admission_time IS '入院日期时间';
COMMENT ON COLUMN emr.medical_record_home.admission_dept_code IS '入院科室代码（值域：科室）';
COMMENT ON COLUMN emr.medical_record_home.discharge_time IS '出院日期时间';
COMMENT ON COLUMN emr.medical_record_home.discharge_dept_code IS '出院科室代码（值域：科室）';
COMMENT ON COLUMN emr.medical_record_home.inpatient_days IS '实际住院天数（单位：天）';
COMMENT ON COLUMN emr.medical_record_home.outpatient_diagnosis_code IS '门（急）诊诊断代码（ICD-10）（值域：ICD-10诊断）';
COMMENT ON COLUMN emr.medical_record_home.outpatient_diagnosis_name IS '门（急）诊诊断名称';
COMMENT ON COLUMN emr.medical_record_home.main_diagnosis_code IS '出院主要诊断代码（ICD-10）（值域：ICD-10诊断）';
COMMENT ON COLUMN emr.medical_record_home.main_diagnosis_name IS '出院主要诊断名称';
COMMENT ON COLUMN emr.medical_record_home.admission_condition_code IS '主要诊断入院病情代码（值域：入院病情）';
COMMENT ON COLUMN emr.medical_record_home.main_procedure_code IS '主要手术及操作代码（ICD-9-CM-3）（值域：手术操作）';
COMMENT ON COLUMN emr.medical_record_home.main_procedure_name IS '主要手术及操作名称';
COMMENT ON COLUMN emr.medical_record_home.main_procedure_date IS '主要手术及操作日期';
COMMENT ON COLUMN emr.medical_record_home.abo_blood_type_code IS 'ABO血型代码（值域：ABO血型）';
COMMENT ON COLUMN emr.medical_record_home.rh_blood_type_code IS 'Rh血型代码（值域：Rh血型）';
COMMENT ON COLUMN emr.medical_record_home.discharge_mode_code IS '离院方式代码（值域：离院方式）';
COMMENT ON COLUMN emr.medical_record_home.transfer_org_code IS '拟接收医疗机构代码（转院时填写）（值域：机构代码）';
COMMENT ON COLUMN emr.medical_record_home.attending_doctor_id IS '主治医师工号';
COMMENT ON COLUMN emr.medical_record_home.total_cost IS '住院总费用（单位：元）';
COMMENT ON COLUMN emr.medical_record_home.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.medical_record_home.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.medical_record_home.update_time IS '数据更新时间';
CREATE INDEX medical_record_home_discharge_time_idx ON emr.medical_record_home (discharge_time);
CREATE INDEX medical_record_home_patient_id_idx ON emr.medical_record_home (patient_id);

CREATE TABLE emr.death_record (
    org_code              varchar(22) NOT NULL,
    death_record_id       varchar(64) NOT NULL,
    visit_id              varchar(64) NOT NULL,
    patient_id            varchar(64) NOT NULL,
    visit_type_code       varchar(16) NOT NULL,
    inpatient_no          varchar(32),
    admission_time        timestamp,
    death_time            timestamp NOT NULL,
    dept_code             varchar(32),
    death_cause_code      varchar(32) NOT NULL,
    death_cause_name      varchar(200),
    underlying_cause_code varchar(32),
    underlying_cause_name varchar(200),
    death_diagnosis_name  varchar(500),
    rescue_summary        text,
    autopsy_flag          boolean,
    doctor_id             varchar(64),
    record_time           timestamp,
    modify_flag           varchar(8) NOT NULL,
    collect_time          timestamp NOT NULL,
    update_time           timestamp NOT NULL,
    CONSTRAINT death_record_pkey PRIMARY KEY (org_code, death_record_id)
);
ALTER TABLE emr.death_record REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.death_record IS '死亡记录（上报时效：2小时内）';
COMMENT ON COLUMN emr.death_record.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.death_record.death_record_id IS '死亡记录流水号';
COMMENT ON COLUMN emr.death_record.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.death_record.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.death_record.visit_type_code IS '就诊类型代码（值域：就诊类型）';
COMMENT ON COLUMN emr.death_record.inpatient_no IS '住院号';
COMMENT ON COLUMN emr.death_record.admission_time IS '入院日期时间';
COMMENT ON COLUMN emr.death_record.death_time IS '死亡日期时间';
COMMENT ON COLUMN emr.death_record.dept_code IS '死亡时所在科室代码（值域：科室）';
COMMENT ON COLUMN emr.death_record.death_cause_code IS '直接死亡原因代码（值域：死亡原因）';
COMMENT ON COLUMN emr.death_record.death_cause_name IS '直接死亡原因名称';
COMMENT ON COLUMN emr.death_record.underlying_cause_code IS '根本死因代码（ICD-10）（值域：ICD-10诊断）';
COMMENT ON COLUMN emr.death_record.underlying_cause_name IS '根本死因名称';
COMMENT ON COLUMN emr.death_record.death_diagnosis_name IS '死亡诊断';
COMMENT ON COLUMN emr.death_record.rescue_summary IS '抢救经过';
COMMENT ON COLUMN emr.death_record.autopsy_flag IS '尸检标志';
COMMENT ON COLUMN emr.death_record.doctor_id IS '记录医师工号';
COMMENT ON COLUMN emr.death_record.record_time IS '记录日期时间';
COMMENT ON COLUMN emr.death_record.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.death_record.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.death_record.update_time IS '数据更新时间';
CREATE INDEX death_record_death_time_idx ON emr.death_record (death_time);
CREATE INDEX death_record_patient_id_idx ON emr.death_record (patient_id);

CREATE TABLE emr.report_card (
    org_code                 varchar(22) NOT NULL,
    card_id                  varchar(64) NOT NULL,
    card_no                  varchar(32),
    card_category_code       varchar(16) NOT NULL,
    visit_id                 varchar(64),
    patient_id               varchar(64) NOT NULL,
    patient_name             varchar(50) NOT NULL,
    parent_name              varchar(50),
    id_type_code             varchar(16),
    id_no                    varchar(32),
    sex_code                 varchar(16) NOT NULL,
    birth_date               date,
    age_years                smallint,
    ethnicity_code           varchar(16),
    marital_status_code      varchar(16),
    education_code           varchar(16),
    work_unit                varchar(100),
    phone                    varchar(32),
    patient_belong_code      varchar(16) NOT NULL,
    current_addr_region_code varchar(12) NOT NULL,
    current_addr_detail      varchar(200),
    population_group_code    varchar(16) NOT NULL,
    disease_code             varchar(16) NOT NULL,
    other_disease_name       varchar(100),
    diagnosis_code           varchar(32),
    diagnosis_status_code    varchar(16) NOT NULL,
    case_type_code           varchar(16),
    clinical_severity_code   varchar(16),
    onset_date               date NOT NULL,
    diagnosis_time           timestamp NOT NULL,
    death_date               date,
    death_diagnosis_code     varchar(16),
    lab_conclusion_code      varchar(16),
    infection_route_code     varchar(16),
    contact_mode_code        varchar(16),
    corrected_disease_name   varchar(100),
    report_dept_code         varchar(32),
    report_doctor_id         varchar(64),
    report_doctor            varchar(50) NOT NULL,
    report_time              timestamp NOT NULL,
    fill_date                date,
    remark                   varchar(500),
    modify_flag              varchar(8) NOT NULL,
    collect_time             timestamp NOT NULL,
    update_time              timestamp NOT NULL,
    CONSTRAINT report_card_pkey PRIMARY KEY (org_code, card_id)
);
ALTER TABLE emr.report_card REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.report_card IS '传染病报告卡（上报时效：实时）';
COMMENT ON COLUMN emr.report_card.org_code IS '医疗机构代码（报告单位）';
COMMENT ON COLUMN emr.report_card.card_id IS '报告卡流水号';
COMMENT ON COLUMN emr.report_card.card_no IS '卡片编号';
COMMENT ON COLUMN emr.report_card.card_category_code IS '报告卡类别代码（初次报告、订正报告）（值域：报告卡类别）';
COMMENT ON COLUMN emr.report_card.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.report_card.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.report_card.patient_name IS '患者姓名';
COMMENT ON COLUMN emr.report_card.parent_name IS '患儿家长姓名（14岁及以下填写）';
COMMENT ON COLUMN emr.report_card.id_type_code IS '有效证件类别代码（值域：身份证件类别）';
COMMENT ON COLUMN emr.report_card.id_no IS '有效证件号码';
COMMENT ON COLUMN emr.report_card.sex_code IS '性别代码（值域：性别）';
COMMENT ON COLUMN emr.report_card.birth_date IS '出生日期';
COMMENT ON COLUMN emr.report_card.age_years IS '年龄（岁，出生日期不详时填写）（单位：岁）';
COMMENT ON COLUMN emr.report_card.ethnicity_code IS '民族代码（值域：民族）';
COMMENT ON COLUMN emr.report_card.marital_status_code IS '婚姻状况代码（值域：婚姻状况）';
COMMENT ON COLUMN emr.report_card.education_code IS '文化程度代码（值域：文化程度）';
COMMENT ON COLUMN emr.report_card.work_unit IS '工作单位（学校）名称';
COMMENT ON COLUMN emr.report_card.phone IS '联系电话';
COMMENT ON COLUMN emr.report_card.patient_belong_code IS '病人属于代码（值域：病人属于）';
COMMENT ON COLUMN emr.report_card.current_addr_region_code IS '现住址国家疾控地区代码（值域：行政区划/国家疾控地区代码）';
COMMENT ON COLUMN emr.report_card.current_addr_detail IS '现住详细地址';
COMMENT ON COLUMN emr.report_card.population_group_code IS '人群分类代码（值域：人群分类）';
COMMENT ON COLUMN emr.report_card.disease_code IS '传染病病种代码（值域：法定传染病病种）';
COMMENT ON COLUMN emr.report_card.other_disease_name IS '其他法定管理以及重点监测传染病名称';
COMMENT ON COLUMN emr.report_card.diagnosis_code IS '诊断代码（ICD-10）（值域：ICD-10诊断）';
COMMENT ON COLUMN emr.report_card.diagnosis_status_code IS '病例分类（诊断状态）代码（值域：诊断状态/病例分类）';
COMMENT ON COLUMN emr.report_card.case_type_code IS '病例类型代码（急性、慢性）（值域：病例类型）';
COMMENT ON COLUMN emr.report_card.clinical_severity_code IS '临床严重程度代码（值域：临床严重程度）';
COMMENT ON COLUMN emr.report_card.onset_date IS '发病日期';
COMMENT ON COLUMN emr.report_card.diagnosis_time IS '诊断日期时间';
COMMENT ON COLUMN emr.report_card.death_date IS '死亡日期';
COMMENT ON COLUMN emr.report_card.death_diagnosis_code IS '直接死亡诊断代码（值域：传报卡直接死亡诊断）';
COMMENT ON COLUMN emr.report_card.lab_conclusion_code IS '实验室检测结论代码（值域：传报卡实验室检测结论）';
COMMENT ON COLUMN emr.report_card.infection_route_code IS '最可能的感染途径代码（值域：血源及性传播/感染途径）';
COMMENT ON COLUMN emr.report_card.contact_mode_code IS '接触方式代码（值域：接触方式）';
COMMENT ON COLUMN emr.report_card.corrected_disease_name IS '订正病名';
COMMENT ON COLUMN emr.report_card.report_dept_code IS '报告科室代码（值域：科室）';
COMMENT ON COLUMN emr.report_card.report_doctor_id IS '报告医生工号';
COMMENT ON COLUMN emr.report_card.report_doctor IS '报告医生姓名';
COMMENT ON COLUMN emr.report_card.report_time IS '报告日期时间';
COMMENT ON COLUMN emr.report_card.fill_date IS '填卡日期';
COMMENT ON COLUMN emr.report_card.remark IS '备注';
COMMENT ON COLUMN emr.report_card.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.report_card.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.report_card.update_time IS '数据更新时间';
CREATE INDEX report_card_report_time_idx ON emr.report_card (report_time);
CREATE INDEX report_card_patient_id_idx ON emr.report_card (patient_id);

CREATE TABLE emr.report_card_frontend (
    org_code                 varchar(22) NOT NULL,
    card_id                  varchar(64) NOT NULL,
    card_version             integer NOT NULL,
    card_category_code       varchar(16) NOT NULL,
    review_status            varchar(16) NOT NULL,
    case_id                  bigint,
    visit_id                 varchar(64),
    patient_id               varchar(64) NOT NULL,
    patient_name             varchar(50) NOT NULL,
    parent_name              varchar(50),
    id_type_code             varchar(16),
    id_no                    varchar(32),
    sex_code                 varchar(16) NOT NULL,
    birth_date               date,
    age_value                smallint,
    age_unit                 varchar(2),
    work_unit                varchar(100),
    phone                    varchar(32),
    patient_belong_code      varchar(16) NOT NULL,
    current_addr_region_code varchar(12) NOT NULL,
    current_addr_detail      varchar(200),
    population_group_code    varchar(16) NOT NULL,
    disease_code             varchar(16) NOT NULL,
    other_disease_name       varchar(100),
    diagnosis_status_code    varchar(16) NOT NULL,
    case_type_code           varchar(16),
    onset_date               date NOT NULL,
    diagnosis_time           timestamp NOT NULL,
    death_date               date,
    supplement_kind          varchar(32),
    supplement               jsonb,
    report_dept_code         varchar(32),
    report_doctor_id         varchar(64) NOT NULL,
    report_doctor            varchar(50) NOT NULL,
    report_time              timestamp NOT NULL,
    remark                   varchar(500),
    modify_flag              varchar(8) NOT NULL,
    collect_time             timestamp NOT NULL,
    update_time              timestamp NOT NULL,
    CONSTRAINT report_card_frontend_pkey PRIMARY KEY (org_code, card_id)
);
ALTER TABLE emr.report_card_frontend REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.report_card_frontend IS '前置软件填写的传染病报告卡（上报时效：实时）';
COMMENT ON COLUMN emr.report_card_frontend.org_code IS '医疗机构代码（报告单位）';
COMMENT ON COLUMN emr.report_card_frontend.card_id IS '报告卡编号（前置软件生成）';
COMMENT ON COLUMN emr.report_card_frontend.card_version IS '报告卡版本号（订正时递增）';
COMMENT ON COLUMN emr.report_card_frontend.card_category_code IS '报告卡类别代码（初次报告、订正报告）（值域：报告卡类别）';
COMMENT ON COLUMN emr.report_card_frontend.review_status IS '防保科审核状态（待审核、已通过、已退回、已删除）';
COMMENT ON COLUMN emr.report_card_frontend.case_id IS '前置软件监测预警病例编号';
COMMENT ON COLUMN emr.report_card_frontend.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.report_card_frontend.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.report_card_frontend.patient_name IS '患者姓名';
COMMENT ON COLUMN emr.report_card_frontend.parent_name IS '患儿家长姓名（14岁及以下填写）';
COMMENT ON COLUMN emr.report_card_frontend.id_type_code IS '有效证件类别代码（值域：身份证件类别）';
COMMENT ON COLUMN emr.report_card_frontend.id_no IS '有效证件号码';
COMMENT ON COLUMN emr.report_card_frontend.sex_code IS '性别代码（值域：性别）';
COMMENT ON COLUMN emr.report_card_frontend.birth_date IS '出生日期';
COMMENT ON COLUMN emr.report_card_frontend.age_value IS '年龄（出生日期不详时填写）';
COMMENT ON COLUMN emr.report_card_frontend.age_unit IS '年龄单位（岁、月、天）';
COMMENT ON COLUMN emr.report_card_frontend.work_unit IS '工作单位（学校）名称';
COMMENT ON COLUMN emr.report_card_frontend.phone IS '联系电话';
COMMENT ON COLUMN emr.report_card_frontend.patient_belong_code IS '病人属于代码（值域：病人属于）';
COMMENT ON COLUMN emr.report_card_frontend.current_addr_region_code IS '现住址国家疾控地区代码（值域：行政区划/国家疾控地区代码）';
COMMENT ON COLUMN emr.report_card_frontend.current_addr_detail IS '现住详细地址';
COMMENT ON COLUMN emr.report_card_frontend.population_group_code IS '人群分类代码（值域：人群分类）';
COMMENT ON COLUMN emr.report_card_frontend.disease_code IS '传染病病种代码（值域：法定传染病病种）';
COMMENT ON COLUMN emr.report_card_frontend.other_disease_name IS '其他法定管理以及重点监测传染病名称';
COMMENT ON COLUMN emr.report_card_frontend.diagnosis_status_code IS '病例分类（诊断状态）代码（值域：诊断状态/病例分类）';
COMMENT ON COLUMN emr.report_card_frontend.case_type_code IS '病例类型代码（急性、慢性）（值域：病例类型）';
COMMENT ON COLUMN emr.report_card_frontend.onset_date IS '发病日期';
COMMENT ON COLUMN emr.report_card_frontend.diagnosis_time IS '诊断日期时间';
COMMENT ON COLUMN emr.report_card_frontend.death_date IS '死亡日期';
COMMENT ON COLUMN emr.report_card_frontend.supplement_kind IS '附卡类别（如 hepatitis_b 乙肝附卡）';
COMMENT ON COLUMN emr.report_card_frontend.supplement IS '附卡内容（代码为附卡选项代码）';
COMMENT ON COLUMN emr.report_card_frontend.report_dept_code IS '报告科室代码（院内）';
COMMENT ON COLUMN emr.report_card_frontend.report_doctor_id IS '报告医生工号';
COMMENT ON COLUMN emr.report_card_frontend.report_doctor IS '报告医生姓名';
COMMENT ON COLUMN emr.report_card_frontend.report_time IS '报告日期时间';
COMMENT ON COLUMN emr.report_card_frontend.remark IS '备注';
COMMENT ON COLUMN emr.report_card_frontend.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.report_card_frontend.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.report_card_frontend.update_time IS '数据更新时间';
CREATE INDEX report_card_frontend_report_time_idx ON emr.report_card_frontend (report_time);
CREATE INDEX report_card_frontend_patient_id_idx ON emr.report_card_frontend (patient_id);

CREATE TABLE emr.exposure_history (
    org_code            varchar(22) NOT NULL,
    exposure_id         varchar(64) NOT NULL,
    visit_id            varchar(64) NOT NULL,
    patient_id          varchar(64) NOT NULL,
    contact_mode_code   varchar(16),
    case_contact_flag   boolean,
    travel_country_code varchar(16),
    travel_region_code  varchar(12),
    place_desc          varchar(200),
    start_date          date,
    end_date            date,
    exposure_desc       varchar(1000),
    record_time         timestamp NOT NULL,
    recorder_id         varchar(64),
    modify_flag         varchar(8) NOT NULL,
    collect_time        timestamp NOT NULL,
    update_time         timestamp NOT NULL,
    CONSTRAINT exposure_history_pkey PRIMARY KEY (org_code, exposure_id)
);
ALTER TABLE emr.exposure_history REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.exposure_history IS '流行病学暴露史及旅居史（上报时效：实时）';
COMMENT ON COLUMN emr.exposure_history.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.exposure_history.exposure_id IS '暴露史记录流水号';
COMMENT ON COLUMN emr.exposure_history.visit_id IS '就诊流水号';
COMMENT ON COLUMN emr.exposure_history.patient_id IS '患者唯一标识';
COMMENT ON COLUMN emr.exposure_history.contact_mode_code IS '接触方式代码（值域：接触方式）';
COMMENT ON COLUMN emr.exposure_history.case_contact_flag IS '是否接触过确诊或疑似病例';
COMMENT ON COLUMN emr.exposure_history.travel_country_code IS '旅居国家或地区代码（值域：国籍）';
COMMENT ON COLUMN emr.exposure_history.travel_region_code IS '旅居地行政区划代码（值域：行政区划/国家疾控地区代码）';
COMMENT ON COLUMN emr.exposure_history.place_desc IS '暴露或旅居地点描述';
COMMENT ON COLUMN emr.exposure_history.start_date IS '暴露（旅居）开始日期';
COMMENT ON COLUMN emr.exposure_history.end_date IS '暴露（旅居）结束日期';
COMMENT ON COLUMN emr.exposure_history.exposure_desc IS '暴露史描述';
COMMENT ON COLUMN emr.exposure_history.record_time IS '记录日期时间';
COMMENT ON COLUMN emr.exposure_history.recorder_id IS '记录人工号';
COMMENT ON COLUMN emr.exposure_history.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.exposure_history.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.exposure_history.update_time IS '数据更新时间';
CREATE INDEX exposure_history_record_time_idx ON emr.exposure_history (record_time);
CREATE INDEX exposure_history_patient_id_idx ON emr.exposure_history (patient_id);

CREATE TABLE emr.dept (
    org_code         varchar(22) NOT NULL,
    dept_code        varchar(32) NOT NULL,
    dept_name        varchar(100) NOT NULL,
    parent_dept_code varchar(32),
    outpatient_flag  boolean,
    inpatient_flag   boolean,
    bed_count        integer,
    active_flag      boolean NOT NULL,
    modify_flag      varchar(8) NOT NULL,
    collect_time     timestamp NOT NULL,
    update_time      timestamp NOT NULL,
    CONSTRAINT dept_pkey PRIMARY KEY (org_code, dept_code)
);
ALTER TABLE emr.dept REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.dept IS '科室字典（上报时效：每日）';
COMMENT ON COLUMN emr.dept.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.dept.dept_code IS '科室代码（值域：科室）';
COMMENT ON COLUMN emr.dept.dept_name IS '科室名称';
COMMENT ON COLUMN emr.dept.parent_dept_code IS '上级科室代码';
COMMENT ON COLUMN emr.dept.outpatient_flag IS '门诊科室标志';
COMMENT ON COLUMN emr.dept.inpatient_flag IS '住院科室标志';
COMMENT ON COLUMN emr.dept.bed_count IS '核定床位数（单位：张）';
COMMENT ON COLUMN emr.dept.active_flag IS '有效标志';
COMMENT ON COLUMN emr.dept.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.dept.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.dept.update_time IS '数据更新时间';
CREATE INDEX dept_update_time_idx ON emr.dept (update_time);

CREATE TABLE emr.staff (
    org_code         varchar(22) NOT NULL,
    staff_id         varchar(64) NOT NULL,
    staff_name       varchar(50) NOT NULL,
    sex_code         varchar(16),
    dept_code        varchar(32),
    title_name       varchar(50),
    practice_cert_no varchar(32),
    phone            varchar(32),
    active_flag      boolean NOT NULL,
    modify_flag      varchar(8) NOT NULL,
    collect_time     timestamp NOT NULL,
    update_time      timestamp NOT NULL,
    CONSTRAINT staff_pkey PRIMARY KEY (org_code, staff_id)
);
ALTER TABLE emr.staff REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.staff IS '医务人员字典（上报时效：每日）';
COMMENT ON COLUMN emr.staff.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.staff.staff_id IS '人员工号';
COMMENT ON COLUMN emr.staff.staff_name IS '人员姓名';
COMMENT ON COLUMN emr.staff.sex_code IS '性别代码（值域：性别）';
COMMENT ON COLUMN emr.staff.dept_code IS '所在科室代码（值域：科室）';
COMMENT ON COLUMN emr.staff.title_name IS '专业技术职务名称';
COMMENT ON COLUMN emr.staff.practice_cert_no IS '医师执业证书编码';
COMMENT ON COLUMN emr.staff.phone IS '工作联系电话';
COMMENT ON COLUMN emr.staff.active_flag IS '在岗标志';
COMMENT ON COLUMN emr.staff.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.staff.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.staff.update_time IS '数据更新时间';
CREATE INDEX staff_update_time_idx ON emr.staff (update_time);

CREATE TABLE emr.daily_stats (
    org_code           varchar(22) NOT NULL,
    stat_date          date NOT NULL,
    outpatient_count   integer NOT NULL,
    emergency_count    integer NOT NULL,
    fever_clinic_count integer,
    inpatient_count    integer NOT NULL,
    admission_count    integer NOT NULL,
    discharge_count    integer NOT NULL,
    death_count        integer,
    report_card_count  integer,
    modify_flag        varchar(8) NOT NULL,
    collect_time       timestamp NOT NULL,
    update_time        timestamp NOT NULL,
    CONSTRAINT daily_stats_pkey PRIMARY KEY (org_code, stat_date)
);
ALTER TABLE emr.daily_stats REPLICA IDENTITY FULL;
COMMENT ON TABLE emr.daily_stats IS '每日门急诊量及住院人数统计（上报时效：每日）';
COMMENT ON COLUMN emr.daily_stats.org_code IS '医疗机构代码';
COMMENT ON COLUMN emr.daily_stats.stat_date IS '统计日期';
COMMENT ON COLUMN emr.daily_stats.outpatient_count IS '门诊人次（单位：人次）';
COMMENT ON COLUMN emr.daily_stats.emergency_count IS '急诊人次（单位：人次）';
COMMENT ON COLUMN emr.daily_stats.fever_clinic_count IS '发热门诊人次（单位：人次）';
COMMENT ON COLUMN emr.daily_stats.inpatient_count IS '日末在院人数（单位：人）';
COMMENT ON COLUMN emr.daily_stats.admission_count IS '入院人数（单位：人）';
COMMENT ON COLUMN emr.daily_stats.discharge_count IS '出院人数（单位：人）';
COMMENT ON COLUMN emr.daily_stats.death_count IS '死亡人数（单位：人）';
COMMENT ON COLUMN emr.daily_stats.report_card_count IS '传染病报告卡数（单位：张）';
COMMENT ON COLUMN emr.daily_stats.modify_flag IS '修改标志（值域：修改标志）';
COMMENT ON COLUMN emr.daily_stats.collect_time IS '数据采集时间';
COMMENT ON COLUMN emr.daily_stats.update_time IS '数据更新时间';
CREATE INDEX daily_stats_update_time_idx ON emr.daily_stats (update_time);
