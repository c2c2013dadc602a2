-- 内容摘要改为按源库记录计算：pgoutput 元组数据（各列文本形式）加上映射表版本与数据集规范版本。
-- 同步时摘要直接取自复制流中已有的字节，不必再对上报内容做 JSON 编码；全量快照按同样格式生成。
-- 071 写入的旧摘要与新摘要不同：恢复后重做快照时，这些记录作为新事件再发送一次（平台按主键合并）。
-- The digest of a delivered version is now taken from the source row as replicated (pgoutput's
-- TupleData, which a snapshot rebuilds byte for byte) plus the mapping and spec versions, not
-- from the JSON sent: the stream already holds those bytes (cdcsync/engine/checkpoint.py,
-- version_digest). Digests written under 071 no longer match: such rows go out once more as
-- new events in a re-snapshot, and the platform folds them by key.

COMMENT ON COLUMN cdcsync.delivered_keys.row_digest IS
    '该版本的内容摘要：源库记录（复制流元组数据）与映射表、数据集规范版本的 BLAKE2b-128 摘要，用于判断恢复后记录是否未变；无法取得完整元组时为空';
