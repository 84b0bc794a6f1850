-- Operator maintenance notices: sent page by page to the contacts auth lists; |cursor| is
-- the auth cursor of the next page, committed with that page's notifications (idempotency key
-- notice:<id>:<account>), so a crash resumes without duplicates. A claim older than a minute
-- is taken over.
CREATE TABLE notices (
    id uuid PRIMARY KEY,
    idempotency_key text UNIQUE,
    request_sha256 text,
    subject_ja text NOT NULL,
    body_ja text NOT NULL,
    subject_en text,
    body_en text,
    audience text NOT NULL CHECK (audience IN ('all', 'org_admins')),
    send_at timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'sending', 'done')),
    cursor text,
    claimed_at timestamptz,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notices_due_idx ON notices (send_at) WHERE status <> 'done';
CREATE INDEX notices_created_idx ON notices (created_at DESC, id DESC);

-- Incidents: every admin of the affected orgs is notified (e-mail, and SMS with a phone);
-- deadline_at = detected_at + 24 h. A recipient's status is that of its latest notification
-- (notifications.incident_id, to_account_id, channel); one whose notification failed is
-- retried once (retried); an incident at risk is escalated once to the operator alert address
-- (escalated_at).
CREATE TABLE incidents (
    id uuid PRIMARY KEY,
    idempotency_key text UNIQUE,
    request_sha256 text,
    title text NOT NULL,
    description text NOT NULL,
    all_orgs boolean NOT NULL,
    org_ids uuid[] NOT NULL DEFAULT '{}',
    detected_at timestamptz NOT NULL,
    deadline_at timestamptz NOT NULL,
    escalated_at timestamptz,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incidents_created_idx ON incidents (created_at DESC, id DESC);
CREATE INDEX incidents_open_idx ON incidents (deadline_at) WHERE escalated_at IS NULL;

CREATE TABLE incident_recipients (
    incident_id uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    account_id uuid NOT NULL,
    org_id uuid NOT NULL,
    name text NOT NULL,
    channel text NOT NULL CHECK (channel IN ('email', 'sms')),
    retried boolean NOT NULL DEFAULT false,
    PRIMARY KEY (incident_id, account_id, channel)
);
CREATE INDEX incident_recipients_org_idx ON incident_recipients (org_id, incident_id);

-- RFC 3339 in JST with milliseconds, as common/timeutil.h tu_format_jst writes it (answers
-- built in SQL).
CREATE FUNCTION notif_jst(t timestamptz) RETURNS text LANGUAGE sql STABLE STRICT AS
$$ SELECT to_char(t AT TIME ZONE 'UTC' + interval '9 hours',
                  'YYYY-MM-DD"T"HH24:MI:SS.MS"+09:00"') $$;
