-- What happened to each order, durably (issue 13): every placement request sent and answered,
-- every lookup, written by the same statement as the change it explains (one round trip, one
-- transaction). GET /orders/{id}/history lists it with the exchange's status events.
CREATE TABLE order_history (
    order_id uuid        NOT NULL,
    seq      bigint      GENERATED ALWAYS AS IDENTITY,
    at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    event    text        NOT NULL CHECK (event IN ('placement_sent', 'placement_answered', 'lookup')),
    attempt  integer     CHECK (attempt > 0),
    outcome  text,
    detail   text,
    PRIMARY KEY (order_id, seq)
);
