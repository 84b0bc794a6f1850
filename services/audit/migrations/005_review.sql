-- audit: the monthly access review (issue 6). A snapshot of every staff and operator account is
-- taken at 00:00 JST on the 1st for the month that just ended; a past month is answered from it.
-- Reviewers' decisions are appended (the latest per account counts), never updated.
CREATE TABLE access_review_snapshots (
    month text PRIMARY KEY CHECK (month ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    taken_at timestamptz NOT NULL DEFAULT now(),
    accounts integer NOT NULL
);
-- One AccessReviewLine (without its attestation) per account, as of the snapshot.
CREATE TABLE access_review_lines (
    month text NOT NULL REFERENCES access_review_snapshots (month),
    account_id uuid NOT NULL,
    org_id uuid,
    line jsonb NOT NULL,
    PRIMARY KEY (month, account_id)
);
CREATE INDEX access_review_lines_org_idx ON access_review_lines (org_id, month, account_id);
CREATE TABLE access_review_attestations (
    id bigserial PRIMARY KEY,
    month text NOT NULL CHECK (month ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    account_id uuid NOT NULL,
    reviewer_org_id uuid, -- the reviewing admin's organization; NULL for an operator
    decision text NOT NULL CHECK (decision IN ('keep', 'change', 'remove')),
    comment text CHECK (char_length(comment) <= 500),
    by_account_id uuid NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    event_id uuid NOT NULL
);
CREATE INDEX access_review_attestations_idx ON access_review_attestations (month, account_id, id);
