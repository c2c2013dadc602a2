-- 传染病监测预警：按事件编号查找病例证据的索引（规则引擎重放时判断某事件是否已作为已结病例的证据）。
-- Developer notes: the rule engine asks, per batch of events, which of their event ids are
-- already evidence (cdcsync/surveil/rules.py, _Run.prefetch / seen_closed); without this index
-- each such question scanned the whole evidence table, which only grows (nothing is deleted).

CREATE INDEX IF NOT EXISTS surveil_case_evidence_event_idx ON cdcsync.surveil_case_evidence (event_id);
