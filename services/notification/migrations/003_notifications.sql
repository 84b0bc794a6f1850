-- notifications: every accepted message, stored before delivery (workers claim rows with
-- FOR UPDATE SKIP LOCKED). params loses its secret values and body is set NULL (kinds carrying
-- initial passwords, codes or reset links) once the provider accepted the message.
CREATE TABLE notifications (
    id uuid PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    request_sha256 text,
    kind text NOT NULL,
    channel text NOT NULL CHECK (channel IN ('email', 'sms')),
    to_account_id uuid,
    to_address text NOT NULL,
    locale text NOT NULL DEFAULT 'ja',
    params jsonb NOT NULL DEFAULT '{}',
    subject text,
    body text,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'bounced', 'failed', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_at timestamptz,
    provider text,
    provider_message_id text,
    last_error text,
    notice_id uuid,
    incident_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Due work: queued rows by next attempt; stale claims by claimed_at.
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at) WHERE status = 'queued';
CREATE INDEX notifications_claimed_idx ON notifications (claimed_at) WHERE status = 'sending';
CREATE INDEX notifications_provider_msg_idx ON notifications (provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX notifications_notice_idx ON notifications (notice_id) WHERE notice_id IS NOT NULL;
CREATE INDEX notifications_incident_idx ON notifications (incident_id)
    WHERE incident_id IS NOT NULL;

-- The status history of each notification (webhook events deduplicated by provider_event_id).
CREATE TABLE notification_events (
    id bigserial PRIMARY KEY,
    notification_id uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    status text NOT NULL,
    detail text,
    provider_event_id text UNIQUE,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_events_nid_idx ON notification_events (notification_id, id);
