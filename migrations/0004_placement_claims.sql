-- Placement under faults (SPEC §2, "What the placement rule implies").
--
-- lease_token: every claim of an order (the insert's first attempt, each sweep's claim) takes a
-- new token from one sequence, and every write of that claim's outcome is fenced by it: a writer
-- whose claim was taken over, by another instance or by its own sweeper, matches no row. The
-- instance (lease_owner) no longer fences anything; it only says who holds the lease, so that a
-- clean stop can give its leases back.
CREATE SEQUENCE orders_lease_token_seq AS bigint;
ALTER TABLE orders ADD COLUMN lease_token bigint;
-- Rows claimed before this migration keep working: their claim is simply gone (a new one is
-- taken when they come due), which the fencing treats as "taken over".
UPDATE orders SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner IS NOT NULL;

-- Failed lookups in a row, for their backoff: an exchange that cannot be asked is asked less and
-- less often (capped), not once a second for as long as it is down.
ALTER TABLE orders ADD COLUMN lookup_failures integer NOT NULL DEFAULT 0
    CHECK (lookup_failures >= 0);

-- A clean stop gives back the leases of one instance: find them without scanning every
-- unfinished order.
CREATE INDEX orders_lease_owner_idx ON orders (lease_owner)
    WHERE status = 'IN PROGRESS' AND lease_owner IS NOT NULL;
