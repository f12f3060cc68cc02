-- Placeholder in branch i16a for another engineer's migration 0003 (the
-- loader refuses gaps): the lead drops this file at merge.
SELECT 1;
