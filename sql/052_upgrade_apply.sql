-- 版本管理：安装新版本（apply）与回退（rollback）的每一步也记入 upgrade_event。
-- Developer note: cdcsync/control/apply.py; outcome is the step (installed, migrated, switched,
-- restarted, healthy, unhealthy, applied, rolled_back, refused, error).

ALTER TABLE cdcsync.upgrade_event DROP CONSTRAINT IF EXISTS upgrade_event_action_check;
ALTER TABLE cdcsync.upgrade_event ADD CONSTRAINT upgrade_event_action_check
    CHECK (action IN ('check', 'download', 'apply', 'rollback'));
COMMENT ON COLUMN cdcsync.upgrade_event.action IS
    'check 检查新版本，download 下载并验证安装包，apply 安装新版本，rollback 回退到上一版本';
COMMENT ON COLUMN cdcsync.upgrade_event.outcome IS
    '结果或步骤：up_to_date 已是最新、available 有新版本、downloaded 已下载并验证、installed 已安装到独立环境、migrated 已执行数据库迁移、switched 已切换当前版本、restarted 已重启服务、healthy 服务健康、unhealthy 服务未能正常运行、applied 升级完成、rolled_back 已回退、refused 拒绝（原因见 message）、error 出错';
COMMENT ON COLUMN cdcsync.upgrade_event.current_version IS '执行时正在使用的版本';
COMMENT ON COLUMN cdcsync.upgrade_event.available_version IS '可用新版本；安装与回退时为目标版本';
