-- auth: withdrawn accounts are anonymised once PHR_RETENTION_DAYS have passed (hygiene.c).
ALTER TABLE accounts ADD COLUMN withdrawn_at timestamptz, ADD COLUMN purged_at timestamptz;
UPDATE accounts SET withdrawn_at = updated_at WHERE status = 'withdrawn';
CREATE INDEX accounts_withdrawn_idx ON accounts (withdrawn_at)
    WHERE status = 'withdrawn' AND purged_at IS NULL;
