-- The tracker (SPEC §5): orders counted by status without count(*), and what it has reported.

-- Orders per status, kept by statement-level triggers on `orders`. Sharded: each statement adds
-- to the row of shard pg_backend_pid() % 16, so concurrent API connections rarely wait on one
-- row; a scrape sums 16 rows per status. `orders` is what is there now; `entered` only grows
-- (rows that reached the status), which makes orders_failed_total a true counter.
CREATE TABLE orders_status_counts (
    status   text     NOT NULL CHECK (status IN ('SUCCESS', 'IN PROGRESS', 'FAILURE')),
    shard    smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    orders   bigint   NOT NULL DEFAULT 0,
    entered  bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (status, shard)
);
INSERT INTO orders_status_counts (status, shard)
SELECT s, g FROM unnest(ARRAY['SUCCESS', 'IN PROGRESS', 'FAILURE']) AS s,
                 generate_series(0, 15) AS g;

CREATE FUNCTION orders_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE orders_status_counts AS c
       SET orders = c.orders + d.n, entered = c.entered + d.n
      FROM (SELECT status, count(*) AS n FROM new_rows GROUP BY status) AS d
     WHERE c.status = d.status AND c.shard = pg_backend_pid() % 16;
    RETURN NULL;
END $$;

-- Most updates (a lease taken, an attempt counted) leave the status alone: they write nothing.
CREATE FUNCTION orders_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE orders_status_counts AS c
       SET orders = c.orders + d.delta, entered = c.entered + d.arrived
      FROM (SELECT v.status, sum(v.delta) AS delta, sum(v.arrived) AS arrived
              FROM new_rows AS n JOIN old_rows AS o USING (id),
                   LATERAL (VALUES (n.status, 1, 1), (o.status, -1, 0)) AS v (status, delta, arrived)
             WHERE n.status <> o.status
             GROUP BY v.status) AS d
     WHERE c.status = d.status AND c.shard = pg_backend_pid() % 16;
    RETURN NULL;
END $$;

CREATE FUNCTION orders_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE orders_status_counts AS c
       SET orders = c.orders - d.n
      FROM (SELECT status, count(*) AS n FROM old_rows GROUP BY status) AS d
     WHERE c.status = d.status AND c.shard = pg_backend_pid() % 16;
    RETURN NULL;
END $$;

CREATE TRIGGER orders_count_insert AFTER INSERT ON orders
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION orders_count_insert();
CREATE TRIGGER orders_count_update AFTER UPDATE ON orders
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders_count_update();
CREATE TRIGGER orders_count_delete AFTER DELETE ON orders
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION orders_count_delete();

-- Rows that existed before the triggers. CREATE TRIGGER holds a lock that blocks every write to
-- `orders` until this migration commits, so nothing is counted twice or missed.
UPDATE orders_status_counts AS c
   SET orders = d.n, entered = d.n
  FROM (SELECT status, count(*) AS n FROM orders GROUP BY status) AS d
 WHERE c.status = d.status AND c.shard = 0;

-- Failures in the order they happened: the tracker's watermark walks this index.
CREATE INDEX orders_failed_at_idx ON orders (failed_at, id) WHERE status = 'FAILURE';

-- What the tracker reported: one row per order and kind ('failure', 'stuck'). The primary key
-- makes "exactly once" hold across restarts and between two trackers. Webhook delivery state
-- lives here too (NULL next_delivery_at: nothing to deliver).
CREATE TABLE tracker_reports (
    order_id             uuid        NOT NULL,
    kind                 text        NOT NULL CHECK (kind IN ('failure', 'stuck')),
    reported_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    webhook_attempts     integer     NOT NULL DEFAULT 0,
    next_delivery_at     timestamptz,
    webhook_delivered_at timestamptz,
    last_delivery_error  text,
    PRIMARY KEY (order_id, kind)
);
CREATE INDEX tracker_reports_undelivered_idx ON tracker_reports (next_delivery_at)
    WHERE webhook_delivered_at IS NULL AND next_delivery_at IS NOT NULL;

-- How far each kind of scan has reported: failed_at (failures) or created_at (stuck orders) of
-- the latest order reported. Scans start a margin before it and skip what is already reported.
CREATE TABLE tracker_watermarks (
    kind     text        PRIMARY KEY CHECK (kind IN ('failure', 'stuck')),
    position timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO tracker_watermarks (kind) VALUES ('failure'), ('stuck');
