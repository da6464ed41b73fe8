-- The job queue. The columns of the original sketch keep their names and
-- types, so its manual checks (`\d greenlight_queue`, the INSERT that takes
-- an atom from learning_atoms, the hand UPDATE ... RETURNING, the pg_indexes
-- query) still work as written. What changed is marked below:
--   * tightened: NOT NULL where a value always exists, CHECKs that keep every
--     row a valid job of its status (the rules of greenlight-core's JobRecord);
--   * added: run_at, attempt, lease_expires_at, worker_id, priority,
--     idempotency_key, which the claim, the fencing and retries need.
--
-- New work: the store sends one NOTIFY on the channel `greenlight_queue_ready`
-- per enqueue statement (never per row); workers LISTEN on it and poll as a
-- fallback. The payload is empty: a notification only says "claim now".

CREATE TABLE greenlight_queue (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    atom_id UUID REFERENCES learning_atoms(id) ON DELETE CASCADE,
    learner_id UUID NOT NULL,
    execution_id VARCHAR(100) UNIQUE,
    status VARCHAR(20) NOT NULL DEFAULT 'pending',
    request_payload JSONB NOT NULL,
    result_payload JSONB,
    queued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    error_message TEXT,
    retry_count INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL DEFAULT 3,

    -- Added columns.
    run_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempt INTEGER NOT NULL DEFAULT 0,
    lease_expires_at TIMESTAMPTZ,
    worker_id TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT,

    -- The four statuses of the state machine, and nothing else.
    CONSTRAINT greenlight_queue_status_check
        CHECK (status IN ('pending', 'executing', 'complete', 'failed')),
    -- 100 is greenlight-core's MAX_RETRIES_LIMIT: the bound keeps the
    -- counters far from overflow and catches a caller's runaway value.
    CONSTRAINT greenlight_queue_max_retries_check
        CHECK (max_retries BETWEEN 0 AND 100),
    CONSTRAINT greenlight_queue_retry_count_check CHECK (retry_count >= 0),
    CONSTRAINT greenlight_queue_attempt_check CHECK (attempt >= 0),
    -- A request is a JSON object or array, as the core requires.
    CONSTRAINT greenlight_queue_request_payload_check
        CHECK (jsonb_typeof(request_payload) IN ('object', 'array')),
    -- An executing row names who holds it and until when; a row moved to
    -- executing by hand gets both from the trigger below.
    CONSTRAINT greenlight_queue_executing_check
        CHECK (status <> 'executing'
               OR (started_at IS NOT NULL
                   AND lease_expires_at IS NOT NULL
                   AND worker_id IS NOT NULL)),
    CONSTRAINT greenlight_queue_complete_check
        CHECK (status <> 'complete'
               OR (completed_at IS NOT NULL AND result_payload IS NOT NULL)),
    CONSTRAINT greenlight_queue_failed_check
        CHECK (status <> 'failed'
               OR (error_message IS NOT NULL AND completed_at IS NOT NULL))
)
-- A queue row is written three or more times in a short life (enqueue,
-- claim, heartbeats, completion) and then deleted by the pruner, so the
-- table is mostly churn:
--   * fillfactor 80 leaves a fifth of each page free, so that a row's next
--     version usually fits on the same page. That keeps the heap compact and,
--     for the updates that touch no indexed column, allows HOT updates that
--     write no index entry at all. (Claims, heartbeats and completions do
--     change indexed columns - status, lease_expires_at - so most updates
--     are not HOT; the free space still saves page extensions.)
--   * the default autovacuum trigger (20% of the table dead) lets a large
--     table of finished jobs hide a lot of dead claim and heartbeat
--     versions from the partial indexes' point of view; 2% keeps the claim
--     index and the visibility map fresh, and analyze at 5% keeps the
--     planner's idea of how many rows are pending current.
WITH (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.05
);

-- The original indexes, names and definitions unchanged.
CREATE INDEX idx_greenlight_queue_status ON greenlight_queue (status, queued_at);
CREATE INDEX idx_greenlight_queue_learner ON greenlight_queue (learner_id, status);
CREATE INDEX idx_greenlight_queue_execution_id ON greenlight_queue (execution_id)
    WHERE execution_id IS NOT NULL;

-- The claim reads pending rows in exactly this order (highest priority,
-- then earliest run_at, then id) and stops after LIMIT rows, so with this
-- index it is a short ordered index scan that never sorts and never sees a
-- finished job.
CREATE INDEX idx_greenlight_queue_claim ON greenlight_queue (priority DESC, run_at, id)
    WHERE status = 'pending';

-- The rescuer looks for executing rows whose lease has run out; executing
-- rows are few, so this index stays tiny.
CREATE INDEX idx_greenlight_queue_rescue ON greenlight_queue (lease_expires_at)
    WHERE status = 'executing';

-- One job per idempotency key, across the whole table: a learner's double
-- click enqueues one job. Partial, because most jobs have no key. The
-- store's INSERT names this index in ON CONFLICT.
CREATE UNIQUE INDEX idx_greenlight_queue_idempotency_key ON greenlight_queue (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The original manual checklist moves a row to executing by hand, setting
-- only started_at:
--
--   UPDATE greenlight_queue SET status = 'executing', started_at = NOW()
--   WHERE status = 'pending' RETURNING *;
--
-- Such a row has no lease and no holder, which the executing CHECK above
-- refuses and the store could not read back as an executing job. Rather than
-- let lease-less executing rows in (and teach the rescuer a grace period for
-- them), this trigger gives the row what a claim would: a five-minute lease,
-- the holder 'manual', started_at if missing, and the next attempt (the
-- fencing token, so a worker that held an earlier attempt is fenced out).
-- The row then reads back as a valid executing job, and once the lease runs
-- out the rescuer takes it back like any other expired lease.
--
-- The WHEN clause keeps the trigger off the hot path: the store's claim
-- always sets a lease, so PostgreSQL never even calls the function for it.
CREATE FUNCTION greenlight_queue_manual_lease() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.lease_expires_at := now() + interval '5 minutes';
    NEW.worker_id := COALESCE(NEW.worker_id, 'manual');
    NEW.started_at := COALESCE(NEW.started_at, now());
    NEW.attempt := NEW.attempt + 1;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION greenlight_queue_manual_lease() IS
    'Gives a row moved to executing by hand (without a lease) a five-minute lease held by ''manual'' and the next attempt, so it stays a valid executing job that the rescuer can take back';

CREATE TRIGGER greenlight_queue_manual_lease
    BEFORE INSERT OR UPDATE ON greenlight_queue
    FOR EACH ROW
    WHEN (NEW.status = 'executing' AND NEW.lease_expires_at IS NULL)
    EXECUTE FUNCTION greenlight_queue_manual_lease();

COMMENT ON TABLE greenlight_queue IS
    'Code-execution jobs for Greenlight, one row per job; new work is announced on the NOTIFY channel greenlight_queue_ready';
COMMENT ON COLUMN greenlight_queue.id IS 'The job''s id';
COMMENT ON COLUMN greenlight_queue.atom_id IS 'The learning atom the job runs, if any; the job goes when the atom does';
COMMENT ON COLUMN greenlight_queue.learner_id IS 'The learner the job belongs to';
COMMENT ON COLUMN greenlight_queue.execution_id IS 'The id Greenlight gave the execution, stored as soon as it is known; unique';
COMMENT ON COLUMN greenlight_queue.status IS 'pending, executing, complete or failed';
COMMENT ON COLUMN greenlight_queue.request_payload IS 'What to ask Greenlight: a JSON object or array';
COMMENT ON COLUMN greenlight_queue.result_payload IS 'What Greenlight returned (complete jobs)';
COMMENT ON COLUMN greenlight_queue.queued_at IS 'When the job was enqueued';
COMMENT ON COLUMN greenlight_queue.started_at IS 'When the current or last attempt started';
COMMENT ON COLUMN greenlight_queue.completed_at IS 'When the job completed or failed for good';
COMMENT ON COLUMN greenlight_queue.error_message IS 'Why the last attempt failed (failed jobs, and pending jobs being retried)';
COMMENT ON COLUMN greenlight_queue.retry_count IS 'How many attempts failed (an error or an expired lease)';
COMMENT ON COLUMN greenlight_queue.max_retries IS 'How many failed attempts are retried: failure n goes back to pending while n <= max_retries, so 3 allows four attempts';
COMMENT ON COLUMN greenlight_queue.run_at IS 'When the job may next be claimed (backoff and delayed jobs)';
COMMENT ON COLUMN greenlight_queue.attempt IS 'How many times the job was claimed: the fencing token every write to an executing job names';
COMMENT ON COLUMN greenlight_queue.lease_expires_at IS 'When the lease of the executing worker runs out unless it heartbeats';
COMMENT ON COLUMN greenlight_queue.worker_id IS 'Who holds the lease of an executing job';
COMMENT ON COLUMN greenlight_queue.priority IS 'Higher runs first among ready jobs';
COMMENT ON COLUMN greenlight_queue.idempotency_key IS 'The caller''s key: a second enqueue with the same key returns the first job';
