-- Placeholder in branch i16a for another engineer's migration 0004 (the
-- loader refuses gaps): the lead drops this file at merge.
SELECT 1;
