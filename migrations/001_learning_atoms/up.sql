-- The host platform owns `learning_atoms`: greenlight_queue.atom_id refers to
-- it. So that the queue also installs on a database of its own (tests, a
-- staging box), this creates a minimal table, but only when none exists.
--
-- The table made here carries a marker in its COMMENT, so that down.sql drops
-- it only if the queue created it and never touches the host's own table.
DO $$
BEGIN
    IF to_regclass('learning_atoms') IS NULL THEN
        CREATE TABLE learning_atoms (
            id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE learning_atoms IS
            'greenlight-queue: minimal stand-in for the host platform''s learning atoms, created by the greenlight queue because none existed';
        COMMENT ON COLUMN learning_atoms.id IS 'The atom''s id, referred to by greenlight_queue.atom_id';
        COMMENT ON COLUMN learning_atoms.created_at IS 'When the atom was created';
    END IF;
END
$$;
