-- 监测预警病例表的最小权限（见 sql/200_roles.sql）：
--   cdcsync_daemon  规则引擎：读写病例（不可删除），追加证据与处理记录，读写自己的位点
--   cdcsync_api     提醒接口（8881）：读病例与证据，更新病例状态，追加处理记录
--   任何角色都没有病例表的 DELETE、TRUNCATE 权限（另有触发器拒绝删除）。
-- Developer note: sql/200_roles.sql's apply_role_grants() grants cdcsync_daemon DELETE on every
-- table of schema cdcsync on each `db init`; cdcsync/db/roles.py then calls every
-- cdcsync.apply_*_grants() function (this one included), so these revocations follow it each time.

CREATE OR REPLACE FUNCTION cdcsync.apply_surveil_grants() RETURNS void
    LANGUAGE plpgsql
    AS $fn$
BEGIN
    REVOKE DELETE, TRUNCATE ON cdcsync.surveil_case, cdcsync.surveil_case_evidence,
        cdcsync.surveil_case_history FROM PUBLIC;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_daemon') THEN
        REVOKE ALL ON cdcsync.surveil_case, cdcsync.surveil_case_evidence, cdcsync.surveil_case_history
            FROM cdcsync_daemon;
        GRANT SELECT, INSERT, UPDATE ON cdcsync.surveil_case TO cdcsync_daemon;
        GRANT SELECT, INSERT ON cdcsync.surveil_case_evidence, cdcsync.surveil_case_history TO cdcsync_daemon;
        GRANT SELECT, INSERT, UPDATE ON cdcsync.surveil_checkpoint TO cdcsync_daemon;
        REVOKE DELETE, TRUNCATE ON cdcsync.surveil_checkpoint FROM cdcsync_daemon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_api') THEN
        GRANT USAGE ON SCHEMA cdcsync TO cdcsync_api;
        GRANT SELECT, UPDATE ON cdcsync.surveil_case TO cdcsync_api;
        GRANT SELECT ON cdcsync.surveil_case_evidence TO cdcsync_api;
        GRANT SELECT, INSERT ON cdcsync.surveil_case_history TO cdcsync_api;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_his') THEN
        REVOKE ALL ON cdcsync.surveil_case, cdcsync.surveil_case_evidence, cdcsync.surveil_case_history,
            cdcsync.surveil_checkpoint FROM cdcsync_his;
    END IF;
END
$fn$;
COMMENT ON FUNCTION cdcsync.apply_surveil_grants() IS
    '监测预警病例表授权：规则引擎与提醒接口可读写、只追加，任何角色不可删除；cdcsync db init 每次执行';

SELECT cdcsync.apply_surveil_grants();
