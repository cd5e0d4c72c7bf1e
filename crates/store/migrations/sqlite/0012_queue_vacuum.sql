-- PostgreSQL's 0012 tunes autovacuum for `deliveries`; SQLite has no autovacuum of dead rows to
-- tune (a deleted or updated row's page is reused in place), so there is nothing to do here. The
-- file keeps the two backends' migrations numbered alike.
SELECT 1;
