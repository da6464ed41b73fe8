-- Drops `learning_atoms` only when the queue created it (the COMMENT marker
-- set by up.sql): the host platform's own table, and its rows, stay.
DO $$
BEGIN
    IF to_regclass('learning_atoms') IS NOT NULL
       AND obj_description(to_regclass('learning_atoms'), 'pg_class')
           LIKE 'greenlight-queue: %' THEN
        DROP TABLE learning_atoms;
    END IF;
END
$$;
