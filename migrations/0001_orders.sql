-- Orders and their placement (retry) state. One row per order; the row is the truth for retries:
-- any API instance claims due work from it with FOR UPDATE SKIP LOCKED and a lease.
CREATE TABLE orders (
    id                  uuid        PRIMARY KEY,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    type                text        NOT NULL CHECK (type IN ('market', 'limit')),
    side                text        NOT NULL CHECK (side IN ('buy', 'sell')),
    instrument          text        NOT NULL CHECK (instrument ~ '^[A-Z]{2}[A-Z0-9]{9}[0-9]$'),
    limit_price         numeric(18, 2) CHECK (limit_price > 0),
    quantity            bigint      NOT NULL CHECK (quantity BETWEEN 1 AND 1000000000),
    status              text        NOT NULL DEFAULT 'IN PROGRESS'
                                    CHECK (status IN ('SUCCESS', 'IN PROGRESS', 'FAILURE')),
    -- Placement state.
    attempts            integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- valid_until of the latest placement request whose outcome is not known yet; NULL when none is.
    -- While set, nobody may place again before looking the order up past this deadline.
    pending_deadline    timestamptz,
    next_attempt_at     timestamptz,
    lease_owner         text,
    lease_expires_at    timestamptz,
    -- True from the insert until the synchronous attempt's outcome is recorded (idempotent repeats get 409).
    sync_pending        boolean     NOT NULL DEFAULT false,
    last_error          text,
    exchange_order_id   text,
    failed_at           timestamptz,
    idempotency_key     text        CHECK (idempotency_key ~ '^[!-~]{1,255}$'),
    request_hash        text,
    CHECK ((type = 'limit') = (limit_price IS NOT NULL)),
    CHECK ((idempotency_key IS NULL) = (request_hash IS NULL)),
    CHECK ((status = 'FAILURE') = (failed_at IS NOT NULL)),
    CHECK (status <> 'SUCCESS' OR exchange_order_id IS NOT NULL),
    CHECK (status = 'IN PROGRESS' OR (lease_owner IS NULL AND next_attempt_at IS NULL
                                      AND pending_deadline IS NULL))
);

-- Newest-first listing with keyset pagination.
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
-- Listing by status: the unfinished and failed sets are small, so partial indexes keep them cheap.
CREATE INDEX orders_in_progress_created_idx ON orders (created_at DESC, id DESC)
    WHERE status = 'IN PROGRESS';
CREATE INDEX orders_failure_created_idx ON orders (created_at DESC, id DESC)
    WHERE status = 'FAILURE';
-- The retry sweep: due, unfinished work.
CREATE INDEX orders_due_idx ON orders (next_attempt_at) WHERE status = 'IN PROGRESS';
-- Idempotency-Key: one order per key.
CREATE UNIQUE INDEX orders_idempotency_key_idx ON orders (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
