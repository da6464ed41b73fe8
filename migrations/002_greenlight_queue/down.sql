-- Undoes up.sql. Dropping the table drops its indexes, constraints, comments
-- and the trigger; the trigger function is separate and goes after it.
DROP TABLE greenlight_queue;
DROP FUNCTION greenlight_queue_manual_lease();
