-- unknown_since: the start (claim time) of the earliest attempt whose outcome is unknown (the
-- worker died with the request out, or the provider timed out after the request was sent).
-- Set by the reaper and by a retry after such an attempt; while set, a worker first asks the
-- provider whether it has the message (SendGrid Email Activity, Twilio message list) and
-- records it as sent instead of sending it again. Cleared once an outcome is known.
ALTER TABLE notifications ADD COLUMN unknown_since timestamptz;
