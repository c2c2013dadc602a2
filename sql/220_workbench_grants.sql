-- 工作台（8884）各表的最小权限（见 sql/200_roles.sql）：
--   cdcsync_daemon  工作台服务：读写会话与随机数（可清理过期记录），追加报告卡、回传记录与审计日志，不可删除
--   cdcsync_his     院内系统：只读回传表 writeback.report_card，只可填写 written_back_at 与 his_note；
--                   emr.report_card_frontend（前置软件填写的报告卡，随正常数据流上报）只读
--   cdcsync_api     数据操作API：emr.report_card_frontend 只读（该表不是院内系统写入的表）
--   任何角色都没有报告卡、回传表的 DELETE、TRUNCATE 权限（另有触发器拒绝）；审计日志只有保留期清理可删除
--   180 天以前的记录（触发器检查）。
-- Developer note: cdcsync/db/roles.py runs every cdcsync.apply_*_grants() after apply_role_grants()
-- (which grants cdcsync_daemon DELETE on every table of schema cdcsync), so the revocations follow it.

CREATE OR REPLACE FUNCTION cdcsync.apply_workbench_grants() RETURNS void
    LANGUAGE plpgsql
    AS $fn$
BEGIN
    REVOKE ALL ON SCHEMA writeback FROM PUBLIC;
    REVOKE DELETE, TRUNCATE ON cdcsync.wb_card, cdcsync.wb_audit, writeback.report_card FROM PUBLIC;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_daemon') THEN
        GRANT USAGE ON SCHEMA writeback TO cdcsync_daemon;
        REVOKE ALL ON cdcsync.wb_card, cdcsync.wb_audit, writeback.report_card FROM cdcsync_daemon;
        GRANT SELECT, INSERT, UPDATE ON cdcsync.wb_card TO cdcsync_daemon;
        GRANT SELECT, INSERT ON cdcsync.wb_audit, writeback.report_card TO cdcsync_daemon;
        -- the retention purge only (a trigger refuses any other delete, and rows younger than 180 days)
        GRANT DELETE ON cdcsync.wb_audit TO cdcsync_daemon;
        -- the HIS callback sender: its own columns, and written_back_at once the HIS answered 2xx
        GRANT UPDATE (callback_attempts, callback_next_at, callback_error, written_back_at, his_note)
            ON writeback.report_card TO cdcsync_daemon;
        GRANT SELECT, INSERT, UPDATE, DELETE ON cdcsync.wb_session, cdcsync.wb_sso_nonce TO cdcsync_daemon;
        -- the only emr table the front end writes: its own cards, into the normal stream
        GRANT SELECT, INSERT, UPDATE ON emr.report_card_frontend TO cdcsync_daemon;
        REVOKE DELETE, TRUNCATE ON emr.report_card_frontend FROM cdcsync_daemon;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_api') THEN
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON emr.report_card_frontend FROM cdcsync_api;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdcsync_his') THEN
        REVOKE ALL ON cdcsync.wb_card, cdcsync.wb_audit, cdcsync.wb_session, cdcsync.wb_sso_nonce FROM cdcsync_his;
        GRANT USAGE ON SCHEMA writeback TO cdcsync_his;
        GRANT SELECT ON writeback.report_card TO cdcsync_his;
        GRANT UPDATE (written_back_at, his_note) ON writeback.report_card TO cdcsync_his;
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON emr.report_card_frontend FROM cdcsync_his;
    END IF;
END
$fn$;
COMMENT ON FUNCTION cdcsync.apply_workbench_grants() IS
    '工作台授权：报告卡、回传表、审计日志只增不删；院内系统只读回传表并填写回传确认时间；cdcsync db init 每次执行';

SELECT cdcsync.apply_workbench_grants();
