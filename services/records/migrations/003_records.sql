-- Records (issue 4): one row per health record. Values and note are sealed together
-- (AES-256-GCM, services/records/crypt.c) under data key version key_id, the AAD binding
-- id, patient and type; patient, type and time stay clear for indexing.
CREATE TABLE records (
    id uuid PRIMARY KEY,
    patient_id uuid NOT NULL,
    type text NOT NULL,
    measured_at timestamptz NOT NULL,
    local_day date NOT NULL, -- the JST calendar day of measured_at
    source text NOT NULL CHECK (source IN ('self', 'device', 'clinic', 'import')),
    org_id uuid, -- the organization that wrote a clinic record
    key_id integer NOT NULL,
    sealed bytea NOT NULL, -- nonce || ciphertext || tag of {"values":{...},"note":...}
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL DEFAULT 1
);
-- Keyset listing, newest first, all types or one type.
CREATE INDEX records_patient_time_idx ON records (patient_id, measured_at DESC, id DESC);
CREATE INDEX records_patient_type_time_idx ON records (patient_id, type, measured_at DESC, id DESC);
-- One steps entry per patient and JST day (a second one replaces the first).
CREATE UNIQUE INDEX records_steps_day_idx ON records (patient_id, local_day) WHERE type = 'steps';

-- Earlier versions of edited, deleted or replaced records (still sealed, same AAD).
CREATE TABLE record_history (
    id bigserial PRIMARY KEY,
    record_id uuid NOT NULL,
    patient_id uuid NOT NULL,
    type text NOT NULL,
    measured_at timestamptz NOT NULL,
    source text NOT NULL,
    org_id uuid,
    key_id integer NOT NULL,
    sealed bytea NOT NULL,
    version integer NOT NULL,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL,
    change text NOT NULL CHECK (change IN ('update', 'delete', 'replace')),
    changed_by uuid NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX record_history_record_idx ON record_history (record_id, id);
CREATE INDEX record_history_patient_idx ON record_history (patient_id);

-- Idempotency-Key of record POSTs, scoped to the caller (account_id: the patient, or the staff
-- member for clinic records): the request's keyed hash (HMAC, crypt.h) and the record it made.
-- No answer body is stored (it would hold health values in clear): a replay re-reads the record.
CREATE TABLE record_idempotency (
    account_id uuid NOT NULL,
    key text NOT NULL,
    patient_id uuid NOT NULL,
    request_hash text NOT NULL,
    record_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);
CREATE INDEX record_idempotency_patient_idx ON record_idempotency (patient_id);
CREATE INDEX record_idempotency_created_idx ON record_idempotency (created_at);
