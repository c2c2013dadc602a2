-- 规则引擎：按变更事件查找已有证据（重放或重新计算时，同一事件不会再次生成已结案的病例）。
-- Developer note: cdcsync/surveil/rules.py looks up evidence by event id before opening a case,
-- so a replayed event whose case was since closed (excluded, reported) does not open a new one.
CREATE INDEX IF NOT EXISTS surveil_case_evidence_event_idx ON cdcsync.surveil_case_evidence (event_id);
