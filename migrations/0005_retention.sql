-- Retention (TRACKER's housekeeping, tracker/retention.py): what is kept for a bounded window.
-- Each purge takes the oldest rows past its window in batches, through these indexes, so it never
-- scans what it keeps.
CREATE INDEX exchange_events_received_idx ON exchange_events (received_at);
CREATE INDEX tracker_reports_reported_idx ON tracker_reports (reported_at);
-- Orders whose Idempotency-Key is still kept, oldest first: a key is forgotten (the order stays)
-- once its window has passed, and a repeat after that is a new order.
CREATE INDEX orders_idempotency_created_idx ON orders (created_at)
    WHERE idempotency_key IS NOT NULL;
