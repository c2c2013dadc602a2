-- 隔离区记录的业务日期：引擎统计该记录时所计入的日期。重试放行时，统计从“已隔离”移到“已上报”即在这一天，
-- 不再从保存的原始记录（JSON，时间已成文本）中重新推算。
-- The business date the engine counted a quarantined row on (cdcsync/engine/calendar.py). A retry
-- moves its statistics on exactly this day; NULL for rows quarantined before this migration,
-- whose day is still derived from the kept row (cdcsync/quarantine/store.py, released_day).

ALTER TABLE cdcsync.quarantine ADD COLUMN IF NOT EXISTS business_date date;
COMMENT ON COLUMN cdcsync.quarantine.business_date IS '业务日期：引擎统计该记录时计入的日期；重试放行时统计在这一天由“已隔离”改为“已上报”（本迁移之前隔离的记录为空，按原始记录推算）';
