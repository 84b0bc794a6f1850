-- notification: the first migration. Later issues add their tables as 002_*.sql, ...
CREATE TABLE service_meta (
    key text PRIMARY KEY,
    value text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO service_meta (key, value) VALUES ('service', 'notification');
