-- The transactional outbox (common/outbox.h): messages for other services, written in the
-- same transaction as the change they describe and posted by the relay. The same text in
-- every service. dead_at: a permanent refusal (4xx), kept for inspection, never retried.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    dead_at timestamptz,
    last_error text
);
CREATE INDEX outbox_pending_idx ON outbox (topic, id) WHERE sent_at IS NULL AND dead_at IS NULL;
-- Rows waiting for a retry: the relay keeps later rows of a topic behind them (order).
CREATE INDEX outbox_retry_idx ON outbox (topic, id)
    WHERE sent_at IS NULL AND dead_at IS NULL AND attempts > 0;
CREATE INDEX outbox_sent_idx ON outbox (sent_at) WHERE sent_at IS NOT NULL;
