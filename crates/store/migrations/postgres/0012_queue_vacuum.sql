-- `deliveries` is a queue and a log in one table: every delivery is inserted pending, updated when
-- it is claimed and again when it is settled, and neither update can be HOT (each changes an
-- indexed column: `status`, `lease`, `next_attempt_at`). So each delivery leaves one to three dead
-- tuples, and with PostgreSQL's defaults (vacuum once a fifth of the table is dead) a busy queue
-- outruns autovacuum: the claim's index scans wade through dead entries and slow down.
-- Vacuum it when 1 % of it (and at least 5,000 rows) is dead, and with a larger cost budget per
-- round, so that it keeps up with the churn. Other tables are mostly inserted and purged: their
-- defaults stand. Without autovacuum (`autovacuum = off`) these settings do nothing; see
-- docs/operating.md.
ALTER TABLE deliveries SET (
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 5000,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_limit = 2000
);
