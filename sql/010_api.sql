-- 数据操作 API（8881 端口）的客户端密钥。
-- API keys of the HIS clients of the data API (cdcsync/api/auth.py). Only a salted HMAC-SM3 of each
-- key is stored; the key itself is printed once by `cdcsync api-keys add`.

CREATE TABLE IF NOT EXISTS cdcsync.api_key (
    name         text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    key_id       text NOT NULL UNIQUE,
    salt         bytea NOT NULL,
    key_hash     bytea NOT NULL,
    note         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
COMMENT ON TABLE cdcsync.api_key IS '数据操作API客户端密钥（每个院内系统一个；只保存加盐哈希，不保存明文）';
COMMENT ON COLUMN cdcsync.api_key.name IS '客户端名称（如 his、lis）';
COMMENT ON COLUMN cdcsync.api_key.key_id IS '密钥公开标识（密钥前缀，用于查找，不是秘密）';
COMMENT ON COLUMN cdcsync.api_key.salt IS '随机盐';
COMMENT ON COLUMN cdcsync.api_key.key_hash IS '密钥的 HMAC-SM3（以盐为密钥）';
COMMENT ON COLUMN cdcsync.api_key.note IS '备注（如厂商、联系人）';
COMMENT ON COLUMN cdcsync.api_key.created_at IS '创建时间';
COMMENT ON COLUMN cdcsync.api_key.revoked_at IS '吊销时间；非空表示已吊销';
COMMENT ON COLUMN cdcsync.api_key.last_used_at IS '最近使用时间（约每分钟更新一次）';
