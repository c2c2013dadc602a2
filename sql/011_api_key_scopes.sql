-- 数据操作 API 客户端密钥的授权范围与有效期。
-- Scopes of the data API keys (cdcsync/api/auth.py): the tables a key may write ('*' = all), the
-- operations (upsert, delete), the organisation codes (NULL = the org_code of the configuration,
-- i.e. this hospital only), and an optional last day of validity (Beijing time).
-- Keys that existed before keep what they could do, narrowed to this hospital's own org_code:
-- all tables, both operations, org codes NULL. `cdcsync api-keys list` shows it; `api-keys scope`
-- narrows it.

ALTER TABLE cdcsync.api_key
    ADD COLUMN IF NOT EXISTS scope_tables text[] NOT NULL DEFAULT '{*}'
        CHECK (cardinality(scope_tables) > 0),
    ADD COLUMN IF NOT EXISTS scope_ops text[] NOT NULL DEFAULT '{upsert,delete}'
        CHECK (cardinality(scope_ops) > 0 AND scope_ops <@ '{upsert,delete}'::text[]),
    ADD COLUMN IF NOT EXISTS scope_org_codes text[]
        CHECK (scope_org_codes IS NULL OR cardinality(scope_org_codes) > 0),
    ADD COLUMN IF NOT EXISTS expires_on date;

COMMENT ON COLUMN cdcsync.api_key.scope_tables IS '允许写入的表（emr 镜像表名；* 表示全部表）';
COMMENT ON COLUMN cdcsync.api_key.scope_ops IS '允许的操作：upsert（新增/更新）、delete（删除）';
COMMENT ON COLUMN cdcsync.api_key.scope_org_codes IS '允许写入的医疗机构代码；为空表示仅本机构（配置文件中的 org_code）';
COMMENT ON COLUMN cdcsync.api_key.expires_on IS '有效期截止日（北京时间当日 24 时失效）；为空表示长期有效';
