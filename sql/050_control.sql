-- 配置更新（8882）：国家平台下发的配置包、每个配置包的处理过程、各类配置当前生效的版本。
-- Control plane (cdcsync/control, docs/control-plane.md). Append-only: a package and every state
-- change of it are rows that are never updated or deleted (a trigger refuses both).

CREATE TABLE IF NOT EXISTS cdcsync.config_package (
    id             bigserial PRIMARY KEY,
    package_id     text,
    kind           text,
    version        bigint,
    org_code       text,
    created_at     timestamptz,
    signer_key_id  text,
    payload_sm3    text,
    payload        bytea,
    request_sm3    text NOT NULL,
    source         text NOT NULL DEFAULT '',
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS config_package_pid_idx ON cdcsync.config_package (package_id);
CREATE INDEX IF NOT EXISTS config_package_kind_idx ON cdcsync.config_package (kind, version);
COMMENT ON TABLE cdcsync.config_package IS '国家平台下发的配置包（原样保存，含被拒收的；不修改、不删除）';
COMMENT ON COLUMN cdcsync.config_package.id IS '本地记录号（config history / rollback 使用）';
COMMENT ON COLUMN cdcsync.config_package.package_id IS '配置包标识（平台指定；无法解析的请求为空）';
COMMENT ON COLUMN cdcsync.config_package.kind IS '配置类别：value_domains 值域代码、rules 监测规则包、upstream 上级平台地址、timeliness 时效要求';
COMMENT ON COLUMN cdcsync.config_package.version IS '该类别配置的版本号（须单调递增）';
COMMENT ON COLUMN cdcsync.config_package.org_code IS '配置包所指定的医疗机构代码';
COMMENT ON COLUMN cdcsync.config_package.created_at IS '平台生成配置包的时间';
COMMENT ON COLUMN cdcsync.config_package.signer_key_id IS '签名密钥标识（SM3 指纹）';
COMMENT ON COLUMN cdcsync.config_package.payload_sm3 IS '配置内容的 SM3 摘要（十六进制）';
COMMENT ON COLUMN cdcsync.config_package.payload IS '配置内容（原始字节）';
COMMENT ON COLUMN cdcsync.config_package.request_sm3 IS '整个请求体的 SM3 摘要（应答签名绑定此值）';
COMMENT ON COLUMN cdcsync.config_package.source IS '请求来源地址';
COMMENT ON COLUMN cdcsync.config_package.received_at IS '接收时间';

CREATE TABLE IF NOT EXISTS cdcsync.config_event (
    id          bigserial PRIMARY KEY,
    package_ref bigint NOT NULL REFERENCES cdcsync.config_package (id),
    kind        text,
    state       text NOT NULL CHECK (state IN ('received', 'verified', 'staged', 'checked', 'applied',
                                                'acknowledged', 'refused', 'rolled_back', 'reapplied')),
    reason      text,
    message     text NOT NULL DEFAULT '',
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    actor       text NOT NULL DEFAULT 'platform',
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS config_event_pkg_idx ON cdcsync.config_event (package_ref, id);
COMMENT ON TABLE cdcsync.config_event IS '配置包处理过程：接收、验证、暂存、检查、生效、确认、拒收、回退（只追加）';
COMMENT ON COLUMN cdcsync.config_event.package_ref IS '配置包本地记录号';
COMMENT ON COLUMN cdcsync.config_event.kind IS '配置类别';
COMMENT ON COLUMN cdcsync.config_event.state IS '到达的状态；refused 为拒收（reason 为原因代码）';
COMMENT ON COLUMN cdcsync.config_event.reason IS '拒收或回退的原因代码';
COMMENT ON COLUMN cdcsync.config_event.message IS '说明（中文）';
COMMENT ON COLUMN cdcsync.config_event.detail IS '检查结果等详细信息';
COMMENT ON COLUMN cdcsync.config_event.actor IS '操作者：platform 平台下发，或执行回退的本机用户';
COMMENT ON COLUMN cdcsync.config_event.at IS '时间';

CREATE TABLE IF NOT EXISTS cdcsync.config_current (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    package_ref bigint REFERENCES cdcsync.config_package (id),
    generation  text NOT NULL,
    via         text NOT NULL CHECK (via IN ('apply', 'rollback')),
    event_ref   bigint NOT NULL REFERENCES cdcsync.config_event (id),
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS config_current_kind_idx ON cdcsync.config_current (kind, id);
COMMENT ON TABLE cdcsync.config_current IS '各类配置生效版本的变更记录（最新一行为当前生效版本；只追加）';
COMMENT ON COLUMN cdcsync.config_current.kind IS '配置类别';
COMMENT ON COLUMN cdcsync.config_current.package_ref IS '生效的配置包；为空表示回到随软件发布的版本';
COMMENT ON COLUMN cdcsync.config_current.generation IS '状态目录中该版本的目录名';
COMMENT ON COLUMN cdcsync.config_current.via IS 'apply 下发生效，rollback 回退';
COMMENT ON COLUMN cdcsync.config_current.event_ref IS '对应的处理记录';
COMMENT ON COLUMN cdcsync.config_current.at IS '时间';

CREATE OR REPLACE FUNCTION cdcsync.config_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $fn$
BEGIN
    RAISE EXCEPTION '配置包记录只可追加，不可修改或删除（表 %）', TG_TABLE_NAME;
END
$fn$;

DO $do$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['config_package', 'config_event', 'config_current'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = t || '_append_only') THEN
            EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON cdcsync.%I '
                           'FOR EACH ROW EXECUTE FUNCTION cdcsync.config_append_only()', t || '_append_only', t);
        END IF;
    END LOOP;
END
$do$;
