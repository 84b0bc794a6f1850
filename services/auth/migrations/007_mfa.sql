-- auth: second factors (issue 3): TOTP secrets encrypted at rest, hashed recovery codes.
CREATE TABLE mfa_totp (
    account_id uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    -- hex of nonce (12) || AES-256-GCM ciphertext (20) || tag (16); AAD = account id
    secret_enc text NOT NULL CHECK (secret_enc ~ '^[0-9a-f]{96}$'),
    key_id text NOT NULL CHECK (key_id ~ '^v[0-9]{1,4}$'),
    confirmed_at timestamptz, -- NULL while the enrolment is pending
    last_step bigint NOT NULL DEFAULT 0, -- last accepted RFC 6238 time step (replay guard)
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mfa_recovery_codes (
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    code_sha256 text NOT NULL CHECK (code_sha256 ~ '^[0-9a-f]{64}$'),
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, code_sha256)
);
