-- 最小权限：三个不可登录的组角色（NOLOGIN），由数据库管理员授予实际登录的账号。
--   cdcsync_his     院内系统（HIS/EMR 厂商）写镜像库：仅 emr.* 的增删改查，看不到 cdcsync.*、recon.*
--   cdcsync_api     数据操作 API（8881）：emr.* 的增删改查，读 cdcsync.api_key、只更新其 last_used_at
--   cdcsync_daemon  同步服务：读 emr.*，读写自己的 cdcsync.*（不含 api_key）与 recon.*
--
-- Least privilege (docs: README "Install", docs/api.md). Developer notes:
-- * Roles are cluster-wide, GRANTs are per database. cdcsync.apply_role_grants() creates the roles
--   that are missing (when the migrating user may: superuser or CREATEROLE; otherwise it says so
--   and creates nothing) and grants in THIS database. `cdcsync db init` calls it on every run, so
--   roles a DBA creates later, and tables added by later migrations, get their grants.
-- * Several databases of one cluster may be migrated at the same time (the tests do): a role created
--   meanwhile by another database's migration (duplicate_object / unique_violation) is fine.
-- * Default privileges cover tables created later by the migrating user in emr, cdcsync and recon.
-- * Role attributes are not inherited: REPLICATION on cdcsync_daemon documents the intent, the
--   daemon's LOGIN role needs REPLICATION itself (CREATE ROLE cdcsync LOGIN REPLICATION IN ROLE
--   cdcsync_daemon). `db init` lists members of cdcsync_daemon without it.

CREATE FUNCTION cdcsync.apply_role_grants() RETURNS TABLE (role_name text, status text)
    LANGUAGE plpgsql
    AS $fn$
DECLARE
    r record;
    me record;
    created boolean;
    role_comment CONSTANT jsonb := jsonb_build_object(
        'cdcsync_his', '院内系统写镜像库：仅 emr.* 的增删改查（cdcsync 前置软件）',
        'cdcsync_api', '数据操作API（8881）：emr.* 增删改查，读 cdcsync.api_key（cdcsync 前置软件）',
        'cdcsync_daemon', '同步服务：逻辑复制，读 emr.*，读写 cdcsync.* 与 recon.*（cdcsync 前置软件）');
BEGIN
    SELECT rolsuper, rolcreaterole INTO me FROM pg_roles WHERE rolname = current_user;
    FOR r IN SELECT k AS name FROM jsonb_object_keys(role_comment) AS k ORDER BY k LOOP
        created := false;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name) THEN
            IF NOT (me.rolsuper OR me.rolcreaterole) THEN
                RAISE WARNING '当前数据库用户 % 无 CREATEROLE 权限，未创建角色 %；请由数据库管理员以超级用户执行 cdcsync db init（或 CREATE ROLE % NOLOGIN）后再执行一次 cdcsync db init',
                    current_user, r.name, r.name;
                role_name := r.name; status := 'missing'; RETURN NEXT;
                CONTINUE;
            END IF;
            BEGIN
                -- REPLICATION can only be given by a superuser; see the developer notes above.
                EXECUTE format('CREATE ROLE %I NOLOGIN%s', r.name,
                               CASE WHEN r.name = 'cdcsync_daemon' AND me.rolsuper THEN ' REPLICATION' ELSE '' END);
                created := true;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by the migration of another database of this cluster
            END;
            IF created THEN
                EXECUTE format('COMMENT ON ROLE %I IS %L', r.name, role_comment ->> r.name);
            END IF;
        END IF;
        role_name := r.name; status := CASE WHEN created THEN 'created' ELSE 'present' END; RETURN NEXT;
    END LOOP;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_his') THEN
        GRANT USAGE ON SCHEMA emr TO cdcsync_his;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA emr TO cdcsync_his;
        ALTER DEFAULT PRIVILEGES IN SCHEMA emr GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cdcsync_his;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_api') THEN
        GRANT USAGE ON SCHEMA emr TO cdcsync_api;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA emr TO cdcsync_api;
        ALTER DEFAULT PRIVILEGES IN SCHEMA emr GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cdcsync_api;
        GRANT USAGE ON SCHEMA cdcsync TO cdcsync_api;
        GRANT SELECT ON cdcsync.api_key TO cdcsync_api;
        GRANT UPDATE (last_used_at) ON cdcsync.api_key TO cdcsync_api;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_daemon') THEN
        GRANT USAGE ON SCHEMA emr TO cdcsync_daemon;
        GRANT SELECT ON ALL TABLES IN SCHEMA emr TO cdcsync_daemon;
        ALTER DEFAULT PRIVILEGES IN SCHEMA emr GRANT SELECT ON TABLES TO cdcsync_daemon;
        GRANT USAGE ON SCHEMA cdcsync, recon TO cdcsync_daemon;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA cdcsync, recon TO cdcsync_daemon;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA cdcsync, recon TO cdcsync_daemon;
        ALTER DEFAULT PRIVILEGES IN SCHEMA cdcsync, recon
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cdcsync_daemon;
        ALTER DEFAULT PRIVILEGES IN SCHEMA cdcsync, recon GRANT USAGE, SELECT ON SEQUENCES TO cdcsync_daemon;
        -- The API keys are the data API's (cdcsync_api); the migrations record is db init's.
        REVOKE ALL ON cdcsync.api_key FROM cdcsync_daemon;
        REVOKE INSERT, UPDATE, DELETE ON cdcsync.schema_migrations FROM cdcsync_daemon;
    END IF;
END
$fn$;
COMMENT ON FUNCTION cdcsync.apply_role_grants() IS
    '创建缺少的 cdcsync_his、cdcsync_api、cdcsync_daemon 组角色（需超级用户或 CREATEROLE）并在本库授权；cdcsync db init 每次执行';

SELECT * FROM cdcsync.apply_role_grants();
