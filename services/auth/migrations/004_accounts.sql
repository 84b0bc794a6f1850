-- auth: organizations, accounts and e-mailed link tokens (issue 3).
CREATE TABLE organizations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    seat_limit integer NOT NULL CHECK (seat_limit >= 1),
    require_mfa boolean NOT NULL DEFAULT false,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL UNIQUE CHECK (email = lower(email) AND char_length(email) <= 254),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    locale text NOT NULL DEFAULT 'ja' CHECK (locale IN ('ja', 'en')),
    kind text NOT NULL CHECK (kind IN ('patient', 'staff', 'operator')),
    org_id uuid REFERENCES organizations (id),
    role text CHECK (role IN ('staff', 'admin')),
    password_hash text NOT NULL,
    email_verified_at timestamptz,
    must_change_password boolean NOT NULL DEFAULT false,
    password_expires_at timestamptz, -- initial passwords of staff (72 h)
    failed_logins integer NOT NULL DEFAULT 0,
    locked_until timestamptz,
    last_login_at timestamptz,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'withdrawn', 'deleted')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'staff') = (org_id IS NOT NULL)),
    CHECK ((kind = 'staff') = (role IS NOT NULL))
);
CREATE INDEX accounts_org_idx ON accounts (org_id) WHERE org_id IS NOT NULL;

CREATE TABLE account_tokens (
    token_sha256 bytea PRIMARY KEY CHECK (octet_length(token_sha256) = 32),
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    purpose text NOT NULL CHECK (purpose IN ('verify_email', 'password_reset', 'staff_onboarding')),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_tokens_account_idx ON account_tokens (account_id, purpose);
