-- 监测预警病例统计视图与提醒接口的授权：
--   cdcsync_daemon  读 recon.pending_cases（cdcsync cases 命令、状态页）
--   cdcsync_api     读 recon.pending_cases；提醒接口对病例表的权限见 sql/210_surveil_grants.sql
--   cdcsync_his     无权访问
-- Developer note: run on each `db init` by cdcsync/db/roles.py (every cdcsync.apply_*_grants()).

CREATE OR REPLACE FUNCTION cdcsync.apply_cases_api_grants() RETURNS void
    LANGUAGE plpgsql
    AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_daemon') THEN
        GRANT USAGE ON SCHEMA recon TO cdcsync_daemon;
        GRANT SELECT ON recon.pending_cases TO cdcsync_daemon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_api') THEN
        GRANT USAGE ON SCHEMA recon TO cdcsync_api;
        GRANT SELECT ON recon.pending_cases TO cdcsync_api;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_his') THEN
        REVOKE ALL ON recon.pending_cases FROM cdcsync_his;
    END IF;
END
$fn$;
COMMENT ON FUNCTION cdcsync.apply_cases_api_grants() IS
    '监测预警统计视图与提醒接口授权：同步服务与接口可读统计视图，院内系统无权访问；cdcsync db init 每次执行';

SELECT cdcsync.apply_cases_api_grants();
