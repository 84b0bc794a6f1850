-- Withdrawals (issue 4): auth reports a patient's withdrawal; the links end at once and the
-- data is kept until purge_after (withdrawn_at + RETENTION_DAYS), when the retention job
-- purges records, history, links and memberships. The row stays as the trace of the purge
-- (purged_at); it holds no health data.
CREATE TABLE withdrawals (
    patient_id uuid PRIMARY KEY,
    withdrawn_at timestamptz NOT NULL,
    purge_after timestamptz NOT NULL,
    noticed_at timestamptz NOT NULL DEFAULT now(),
    purged_at timestamptz
);
CREATE INDEX withdrawals_due_idx ON withdrawals (purge_after) WHERE purged_at IS NULL;

-- Idempotency-Key of POST /api/v1/me/import, per patient: the request's keyed hash (no
-- health values) and what the import did, so a retry answers the same without importing twice.
CREATE TABLE import_idempotency (
    patient_id uuid NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    imported integer NOT NULL,
    skipped integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (patient_id, key)
);
