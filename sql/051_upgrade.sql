-- 版本管理：每次检查新版本、下载安装包的结果（只追加）。
-- Version management (cdcsync/control/upgrade.py, docs/control-plane.md "Upgrades").

CREATE TABLE IF NOT EXISTS cdcsync.upgrade_event (
    id                bigserial PRIMARY KEY,
    action            text NOT NULL CHECK (action IN ('check', 'download')),
    outcome           text NOT NULL,
    current_version   text NOT NULL,
    available_version text,
    manifest          jsonb,
    message           text NOT NULL DEFAULT '',
    actor             text NOT NULL DEFAULT '',
    at                timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS upgrade_event_at_idx ON cdcsync.upgrade_event (at);
COMMENT ON TABLE cdcsync.upgrade_event IS '版本管理记录：检查新版本与下载安装包的结果（只追加，不修改）';
COMMENT ON COLUMN cdcsync.upgrade_event.action IS 'check 检查新版本，download 下载并验证安装包';
COMMENT ON COLUMN cdcsync.upgrade_event.outcome IS '结果：up_to_date 已是最新、available 有新版本、downloaded 已下载并验证、refused 拒绝（原因见 message）、error 出错';
COMMENT ON COLUMN cdcsync.upgrade_event.current_version IS '当前版本';
COMMENT ON COLUMN cdcsync.upgrade_event.available_version IS '可用新版本';
COMMENT ON COLUMN cdcsync.upgrade_event.manifest IS '国家平台发布的版本清单（已验签）';
COMMENT ON COLUMN cdcsync.upgrade_event.message IS '说明（中文）';
COMMENT ON COLUMN cdcsync.upgrade_event.actor IS '执行者（本机用户或 daemon）';
COMMENT ON COLUMN cdcsync.upgrade_event.at IS '时间';

DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'upgrade_event_append_only') THEN
        CREATE TRIGGER upgrade_event_append_only BEFORE UPDATE OR DELETE ON cdcsync.upgrade_event
            FOR EACH ROW EXECUTE FUNCTION cdcsync.config_append_only();
    END IF;
END
$do$;
