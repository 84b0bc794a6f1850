-- Sharing: a patient's consent to share with an organization (links), the single-use
-- invitation codes that create it, and the organization's groups and categories of patients.
-- A link row is kept after a revocation (revoked_at set); linking again reuses it.
CREATE TABLE links (
    patient_id uuid NOT NULL,
    org_id uuid NOT NULL,
    linked_at timestamptz NOT NULL DEFAULT now(),
    terms_version text NOT NULL,
    revoked_at timestamptz,
    PRIMARY KEY (patient_id, org_id)
);
CREATE INDEX links_org_active_idx ON links (org_id, linked_at DESC, patient_id)
    WHERE revoked_at IS NULL;

CREATE TABLE invitations (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL,
    code text NOT NULL UNIQUE CHECK (code ~ '^[2-9A-HJKMNP-Z]{8}$'),
    note text,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    used_by uuid,
    cancelled_at timestamptz
);
CREATE INDEX invitations_org_open_idx ON invitations (org_id, id DESC)
    WHERE used_at IS NULL AND cancelled_at IS NULL;

-- Groups and categories have the same shape (services/records/group.c serves both).
CREATE TABLE groups (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL,
    name text NOT NULL,
    description text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);
CREATE TABLE group_members (
    group_id uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    patient_id uuid NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, patient_id)
);
CREATE INDEX group_members_patient_idx ON group_members (patient_id);

CREATE TABLE categories (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL,
    name text NOT NULL,
    description text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);
CREATE TABLE category_members (
    category_id uuid NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    patient_id uuid NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (category_id, patient_id)
);
CREATE INDEX category_members_patient_idx ON category_members (patient_id);
