-- 版本管理：管理员在工作站（8884）点击“升级”时记一条 started（发起者见 actor），其后各步骤由升级进程记录。
-- Developer note: cdcsync/control/launch.py; actor is workbench:<staff id> for the request and every step.

COMMENT ON COLUMN cdcsync.upgrade_event.outcome IS
    '结果或步骤：up_to_date 已是最新、available 有新版本、downloaded 已下载并验证、started 管理员已在工作站发起升级、installed 已安装到独立环境、migrated 已执行数据库迁移、switched 已切换当前版本、restarted 已重启服务、healthy 服务健康、unhealthy 服务未能正常运行、applied 升级完成、rolled_back 已回退、refused 拒绝（原因见 message）、error 出错';
COMMENT ON COLUMN cdcsync.upgrade_event.actor IS '执行者：本机用户（local:用户名）、daemon，或在工作站发起升级的管理员（workbench:工号）';
