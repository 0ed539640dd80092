-- The exchange's status stream (SPEC §4): every event once, the current status per order, and the
-- listener's committed position. Separate from `orders`: the stream never blocks the API.

-- Forward-only moves: new < partially_filled < terminal; partial fills only grow; a terminal
-- status stays, except the late fill that may follow canceled/expired.
CREATE FUNCTION exchange_status_rank(status text) RETURNS int
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE status WHEN 'new' THEN 0 WHEN 'partially_filled' THEN 1 ELSE 2 END;

CREATE FUNCTION exchange_status_moves_forward(
    old_status text, old_filled bigint, new_status text, new_filled bigint
) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN new_filled >= old_filled AND (
        exchange_status_rank(new_status) > exchange_status_rank(old_status)
        OR (new_status = 'partially_filled' AND old_status = 'partially_filled'
            AND new_filled > old_filled)
        OR (new_status = 'filled' AND old_status IN ('canceled', 'expired'))
    );

CREATE TABLE exchange_events (
    epoch             text        NOT NULL,
    seq               bigint      NOT NULL CHECK (seq > 0),
    order_id          uuid        NOT NULL,
    exchange_order_id text        NOT NULL,
    status            text        NOT NULL CHECK (status IN
                          ('new', 'partially_filled', 'filled', 'canceled', 'rejected', 'expired')),
    filled_quantity   bigint      NOT NULL CHECK (filled_quantity >= 0),
    quantity          bigint      NOT NULL CHECK (quantity > 0),
    avg_price         numeric(18, 4),
    exchange_ts       timestamptz NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- 'stream', or 'resync' for an order's state fetched over REST after a gap or a reset.
    source            text        NOT NULL CHECK (source IN ('stream', 'resync')),
    PRIMARY KEY (epoch, seq)
);
CREATE INDEX exchange_events_order_idx ON exchange_events (order_id, epoch, seq);

CREATE TABLE exchange_order_status (
    order_id                  uuid        PRIMARY KEY,
    exchange_order_id         text        NOT NULL,
    stock_market_order_status text        NOT NULL,
    filled_quantity           bigint      NOT NULL,
    quantity                  bigint      NOT NULL,
    avg_price                 numeric(18, 4),
    epoch                     text        NOT NULL,
    seq                       bigint      NOT NULL,
    updated_at                timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row: how far the stream is ingested, and how far the exchange said it was.
CREATE TABLE exchange_stream_position (
    id            boolean     PRIMARY KEY DEFAULT true CHECK (id),
    epoch         text,
    seq           bigint      NOT NULL DEFAULT 0,
    exchange_seq  bigint      NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO exchange_stream_position DEFAULT VALUES;
