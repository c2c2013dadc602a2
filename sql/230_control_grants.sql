-- 配置更新与版本管理表的最小权限（见 sql/200_roles.sql）：
--   cdcsync_daemon  接收配置包（8882）、记录处理过程、回退：只读与追加
--   cdcsync_api、cdcsync_his  无权访问
-- Developer note: run after apply_role_grants() by cdcsync/db/roles.py (see sql/210_surveil_grants.sql).

CREATE OR REPLACE FUNCTION cdcsync.apply_control_grants() RETURNS void
    LANGUAGE plpgsql
    AS $fn$
BEGIN
    REVOKE ALL ON cdcsync.config_package, cdcsync.config_event, cdcsync.config_current,
        cdcsync.upgrade_event FROM PUBLIC;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_daemon') THEN
        REVOKE ALL ON cdcsync.config_package, cdcsync.config_event, cdcsync.config_current,
        cdcsync.upgrade_event FROM cdcsync_daemon;
        GRANT SELECT, INSERT ON cdcsync.config_package, cdcsync.config_event, cdcsync.config_current,
        cdcsync.upgrade_event
            TO cdcsync_daemon;
        GRANT USAGE ON SEQUENCE cdcsync.config_package_id_seq, cdcsync.config_event_id_seq,
            cdcsync.config_current_id_seq, cdcsync.upgrade_event_id_seq TO cdcsync_daemon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_api') THEN
        REVOKE ALL ON cdcsync.config_package, cdcsync.config_event, cdcsync.config_current,
        cdcsync.upgrade_event FROM cdcsync_api;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_his') THEN
        REVOKE ALL ON cdcsync.config_package, cdcsync.config_event, cdcsync.config_current,
        cdcsync.upgrade_event FROM cdcsync_his;
    END IF;
END
$fn$;
COMMENT ON FUNCTION cdcsync.apply_control_grants() IS
    '配置更新表授权：守护进程只读与追加，数据接口与医院系统账号无权访问；cdcsync db init 每次执行';

SELECT cdcsync.apply_control_grants();
