-- Undoes up.sql: the column's UNIQUE constraint again, and the original
-- non-unique partial index.
DROP INDEX idx_greenlight_queue_execution_id;
CREATE INDEX idx_greenlight_queue_execution_id ON greenlight_queue (execution_id)
    WHERE execution_id IS NOT NULL;
ALTER TABLE greenlight_queue
    ADD CONSTRAINT greenlight_queue_execution_id_key UNIQUE (execution_id);
