-- 及时性分两段：HIS 推送（业务时间→写入镜像库提交）与前置软件上报（提交→平台确认接收）。
-- Timeliness in two parts (issue 19): the HIS vendor's part (business time -> the row's commit in the
-- mirror) and the front end's part (commit -> the platform's verified acknowledgement), each counted
-- against the table's timeliness class limit, beside the end-to-end figure of 100_recon.sql.
-- Rows written before this migration have split_events = 0: their parts are unknown (NULL shares).

ALTER TABLE cdcsync.delivery_latency
    ADD COLUMN his_hist bigint[],
    ADD COLUMN split_events bigint NOT NULL DEFAULT 0,
    ADD COLUMN his_within bigint NOT NULL DEFAULT 0,
    ADD COLUMN frontend_within bigint NOT NULL DEFAULT 0,
    ADD COLUMN his_sum_s double precision NOT NULL DEFAULT 0,
    ADD COLUMN commit_sum_s double precision NOT NULL DEFAULT 0,
    ADD COLUMN max_his_s double precision NOT NULL DEFAULT 0;
COMMENT ON COLUMN cdcsync.delivery_latency.his_hist IS 'HIS 推送时延直方图：自业务时间起至写入镜像库（提交）的时延（桶见 cdcsync.latency_bounds）';
COMMENT ON COLUMN cdcsync.delivery_latency.split_events IS '分段统计了时延的事件数（本列出现之前确认的事件不计入）';
COMMENT ON COLUMN cdcsync.delivery_latency.his_within IS '自业务时间起在时限内写入镜像库的事件数（HIS 推送及时）';
COMMENT ON COLUMN cdcsync.delivery_latency.frontend_within IS '自提交起在时限内被平台确认的事件数（前置软件上报及时）';
COMMENT ON COLUMN cdcsync.delivery_latency.his_sum_s IS '自业务时间起至提交的时延之和（秒，用于求平均）';
COMMENT ON COLUMN cdcsync.delivery_latency.commit_sum_s IS '自提交起至确认的时延之和（秒，用于求平均）';
COMMENT ON COLUMN cdcsync.delivery_latency.max_his_s IS '自业务时间起至提交的最大时延（秒）';

-- New columns are appended, so views built on this one keep working.
CREATE OR REPLACE VIEW recon.timeliness_daily AS
SELECT l.business_date, l.destination, l.timeliness, tc.label AS timeliness_label, tc.limit_seconds,
       sum(l.events)::bigint AS events,
       sum(l.within_limit)::bigint AS within_limit,
       round(sum(l.within_limit)::numeric / nullif(sum(l.events), 0), 4) AS within_share,
       cdcsync.hist_percentile(cdcsync.hist_sum(l.business_hist), 0.5, max(l.max_business_s)) AS p50_from_business_s,
       cdcsync.hist_percentile(cdcsync.hist_sum(l.business_hist), 0.95, max(l.max_business_s)) AS p95_from_business_s,
       cdcsync.hist_percentile(cdcsync.hist_sum(l.commit_hist), 0.5, max(l.max_commit_s)) AS p50_from_commit_s,
       cdcsync.hist_percentile(cdcsync.hist_sum(l.commit_hist), 0.95, max(l.max_commit_s)) AS p95_from_commit_s,
       sum(l.split_events)::bigint AS split_events,
       sum(l.his_within)::bigint AS his_within,
       round(sum(l.his_within)::numeric / nullif(sum(l.split_events), 0), 4) AS his_share,
       round((sum(l.his_sum_s) / nullif(sum(l.split_events), 0))::numeric, 1)::double precision AS his_avg_s,
       cdcsync.hist_percentile(cdcsync.hist_sum(l.his_hist), 0.95, max(l.max_his_s)) AS his_p95_s,
       sum(l.frontend_within)::bigint AS frontend_within,
       round(sum(l.frontend_within)::numeric / nullif(sum(l.split_events), 0), 4) AS frontend_share,
       round((sum(l.commit_sum_s) / nullif(sum(l.split_events), 0))::numeric, 1)::double precision AS frontend_avg_s
FROM cdcsync.delivery_latency l
LEFT JOIN recon.timeliness_class tc ON tc.timeliness = l.timeliness
GROUP BY l.business_date, l.destination, l.timeliness, tc.label, tc.limit_seconds;
COMMENT ON VIEW recon.timeliness_daily IS '按数据时效分类、目的地、业务日期的及时性：端到端（业务时间→平台确认）时限内比例，及分两段的 HIS 推送及时率（业务时间→写入镜像库）与前置软件上报及时率（写入镜像库→平台确认）';
COMMENT ON COLUMN recon.timeliness_daily.split_events IS '分段统计了时延的事件数';
COMMENT ON COLUMN recon.timeliness_daily.his_within IS '在时限内写入镜像库的事件数（HIS 推送及时）';
COMMENT ON COLUMN recon.timeliness_daily.his_share IS 'HIS 推送及时率（0～1）：自业务时间起在时限内写入镜像库的比例，由 HIS 厂商负责';
COMMENT ON COLUMN recon.timeliness_daily.his_avg_s IS 'HIS 写入镜像库的平均滞后（秒）';
COMMENT ON COLUMN recon.timeliness_daily.his_p95_s IS 'HIS 写入镜像库滞后的95分位数（秒）';
COMMENT ON COLUMN recon.timeliness_daily.frontend_within IS '自写入镜像库起在时限内被平台确认的事件数';
COMMENT ON COLUMN recon.timeliness_daily.frontend_share IS '前置软件上报及时率（0～1）：自写入镜像库起在时限内被平台确认接收的比例（前置软件与网络负责）';
COMMENT ON COLUMN recon.timeliness_daily.frontend_avg_s IS '自写入镜像库至平台确认的平均时延（秒）';
