-- auth: the SMS second factor (issue 3): the phone sealed at rest, hashed one-time codes.
CREATE TABLE mfa_sms (
    account_id uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    -- hex of nonce (12) || AES-256-GCM ciphertext (16: the E.164 number NUL-padded) || tag (16);
    -- AAD = account id
    phone_enc text NOT NULL CHECK (phone_enc ~ '^[0-9a-f]{88}$'),
    key_id text NOT NULL CHECK (key_id ~ '^v[0-9]{1,4}$'),
    confirmed_at timestamptz, -- NULL while the enrolment is pending
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One live code per account and purpose; a new code replaces the old one.
CREATE TABLE mfa_sms_codes (
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    purpose text NOT NULL CHECK (purpose IN ('enroll', 'login')),
    -- hex HMAC-SHA256 under the data key of purpose:account:code
    code_hmac text NOT NULL CHECK (code_hmac ~ '^[0-9a-f]{64}$'),
    tries integer NOT NULL DEFAULT 0 CHECK (tries >= 0),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, purpose)
);
