-- Cancelling an order (SPEC §8) and the durable log of order updates that live streams read
-- (SPEC §9).

-- A cancel lives in the order's row, like placement: asked when cancel_requested_at is set,
-- PENDING until the exchange has answered for it, then CANCELED or REFUSED (cancel_error: why).
ALTER TABLE orders
    ADD COLUMN cancel_requested_at timestamptz,
    ADD COLUMN cancel_status       text CHECK (cancel_status IN ('PENDING', 'CANCELED', 'REFUSED')),
    ADD COLUMN cancel_error        text,
    ADD COLUMN cancel_attempts     integer NOT NULL DEFAULT 0 CHECK (cancel_attempts >= 0),
    ADD CONSTRAINT orders_cancel_requested_check
        CHECK ((cancel_status IS NULL) = (cancel_requested_at IS NULL));

-- Work is due for an order while it is being placed or its cancel is pending; the claim, the
-- lease and next_attempt_at serve both. coalesce: a NULL cancel_status must not pass the check.
ALTER TABLE orders DROP CONSTRAINT orders_check4;
ALTER TABLE orders ADD CONSTRAINT orders_work_check
    CHECK (status = 'IN PROGRESS' OR coalesce(cancel_status = 'PENDING', false)
           OR (lease_owner IS NULL AND next_attempt_at IS NULL AND pending_deadline IS NULL));

-- The sweep: next_attempt_at is set exactly while work is due (placement or cancel).
DROP INDEX orders_due_idx;
CREATE INDEX orders_due_idx ON orders (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
DROP INDEX orders_lease_owner_idx;
CREATE INDEX orders_lease_owner_idx ON orders (lease_owner) WHERE lease_owner IS NOT NULL;
-- The tracker's report of cancels stuck PENDING, oldest first.
CREATE INDEX orders_cancel_pending_idx ON orders (cancel_requested_at)
    WHERE cancel_status = 'PENDING';

ALTER TABLE order_history DROP CONSTRAINT order_history_event_check;
ALTER TABLE order_history ADD CONSTRAINT order_history_event_check
    CHECK (event IN ('placement_sent', 'placement_answered', 'lookup', 'cancel_requested',
                     'cancel_answered'));

-- The update log. Every committed change of an order that its client sees (placement status,
-- cancel status, the exchange's status and filled quantity) adds one row, written by triggers in
-- the same transaction as the change, carrying the order as GET /orders/{id} returns it.
--
-- Its cursor is `seq`, given after commit: a sequence value taken when the row is written could
-- become visible after a larger one (transactions commit in any order), and a reader resuming
-- from the larger one would miss it. So rows are written with seq NULL, and a sequencer (any API
-- instance, one at a time under a transaction-level advisory lock) numbers the committed ones in
-- the order of `id`. The per-order order holds because every writer holds the order's row lock
-- when it writes the row (an UPDATE of `orders` does; the exchange-status triggers take it), so
-- for one order `id` follows the commit order.
CREATE TABLE order_updates (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq        bigint      UNIQUE,
    account_id uuid        NOT NULL,
    order_id   uuid        NOT NULL,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    body       jsonb       NOT NULL
);
CREATE SEQUENCE order_updates_seq AS bigint OWNED BY order_updates.seq;
CREATE INDEX order_updates_unsequenced_idx ON order_updates (id) WHERE seq IS NULL;
CREATE INDEX order_updates_account_idx ON order_updates (account_id, seq) WHERE seq IS NOT NULL;

-- How far retention has purged the log: a stream resuming from an older cursor may have missed
-- events, and is told so instead of silently skipping them.
CREATE TABLE order_updates_horizon (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    purged_through bigint  NOT NULL DEFAULT 0
);
INSERT INTO order_updates_horizon DEFAULT VALUES;

-- The order as the API returns it (orders_api.schemas.OrderModel), for an update's body.
-- PL/pgSQL, not SQL: a session keeps its plan, where an SQL function called from a trigger is
-- planned again on every call (measured: 0.6 ms of CPU per order).
CREATE FUNCTION order_update_body(o orders) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
            'id', o.id, 'created_at', o.created_at, 'type', o.type, 'side', o.side,
            'instrument', o.instrument, 'limit_price', o.limit_price::text,
            'quantity', o.quantity, 'status', o.status,
            'stock_market_order_status', s.stock_market_order_status,
            'filled_quantity', s.filled_quantity, 'attempts', o.attempts,
            'last_error', o.last_error, 'failed_at', o.failed_at, 'updated_at', o.updated_at,
            'cancel_requested_at', o.cancel_requested_at, 'cancel_status', o.cancel_status,
            'cancel_error', o.cancel_error)
          FROM (SELECT) AS one
          LEFT JOIN exchange_order_status AS s ON s.order_id = o.id);
END $$;

CREATE FUNCTION order_updates_from_orders() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_updates (account_id, order_id, body)
    VALUES (NEW.account_id, NEW.id, order_update_body(NEW));
    RETURN NULL;
END $$;

CREATE TRIGGER orders_update_log_insert AFTER INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION order_updates_from_orders();
-- Leases, attempts counted, keys forgotten: no event (the WHEN costs no function call).
CREATE TRIGGER orders_update_log_update AFTER UPDATE ON orders
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.cancel_status IS DISTINCT FROM NEW.cancel_status)
    EXECUTE FUNCTION order_updates_from_orders();

-- The listener's batches: one statement for many orders. The orders' rows are locked (in id
-- order, so two writers never deadlock) before their updates are written: see order_updates.
CREATE FUNCTION order_updates_from_exchange_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_updates (account_id, order_id, body)
    SELECT o.account_id, o.id, order_update_body(o)
      FROM (SELECT * FROM orders WHERE id IN (SELECT order_id FROM new_rows)
             ORDER BY id FOR NO KEY UPDATE) AS o
     ORDER BY o.id;
    RETURN NULL;
END $$;

CREATE FUNCTION order_updates_from_exchange_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_updates (account_id, order_id, body)
    SELECT o.account_id, o.id, order_update_body(o)
      FROM (SELECT * FROM orders
             WHERE id IN (SELECT n.order_id FROM new_rows AS n JOIN old_rows AS p USING (order_id)
                           WHERE (n.stock_market_order_status, n.filled_quantity)
                                 IS DISTINCT FROM (p.stock_market_order_status, p.filled_quantity))
             ORDER BY id FOR NO KEY UPDATE) AS o
     ORDER BY o.id;
    RETURN NULL;
END $$;

CREATE TRIGGER exchange_status_update_log_insert AFTER INSERT ON exchange_order_status
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION order_updates_from_exchange_insert();
CREATE TRIGGER exchange_status_update_log_update AFTER UPDATE ON exchange_order_status
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION order_updates_from_exchange_update();

-- orders_failed_total (the `entered` count of FAILURE) counts orders that failed to be placed:
-- a client's cancel that ends an order FAILURE before placement (cancel_status set) is no
-- failure to page about. orders_by_status still counts every order where it is.
CREATE OR REPLACE FUNCTION orders_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE orders_status_counts AS c
       SET orders = c.orders + d.delta, entered = c.entered + d.arrived
      FROM (SELECT v.status, sum(v.delta) AS delta, sum(v.arrived) AS arrived
              FROM new_rows AS n JOIN old_rows AS o USING (id),
                   LATERAL (VALUES (n.status, 1, CASE WHEN n.status = 'FAILURE'
                                                       AND n.cancel_status IS NOT NULL
                                                      THEN 0 ELSE 1 END),
                                   (o.status, -1, 0)) AS v (status, delta, arrived)
             WHERE n.status <> o.status
             GROUP BY v.status) AS d
     WHERE c.status = d.status AND c.shard = pg_backend_pid() % 16;
    RETURN NULL;
END $$;

-- The tracker reports cancels stuck PENDING (TRACKER_CANCEL_STUCK_AFTER_S), once each.
ALTER TABLE tracker_reports DROP CONSTRAINT tracker_reports_kind_check;
ALTER TABLE tracker_reports ADD CONSTRAINT tracker_reports_kind_check
    CHECK (kind IN ('failure', 'stuck', 'cancel_stuck'));
ALTER TABLE tracker_watermarks DROP CONSTRAINT tracker_watermarks_kind_check;
ALTER TABLE tracker_watermarks ADD CONSTRAINT tracker_watermarks_kind_check
    CHECK (kind IN ('failure', 'stuck', 'cancel_stuck'));
INSERT INTO tracker_watermarks (kind) VALUES ('cancel_stuck');

-- Retention of the update log walks it by `at`.
CREATE INDEX order_updates_at_idx ON order_updates (at) WHERE seq IS NOT NULL;
