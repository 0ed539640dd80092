-- Accounts and API keys (SPEC §7). Every order belongs to the account whose key created it;
-- reads, lists and Idempotency-Keys are scoped to it.
CREATE TABLE accounts (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text        NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- A key is `ok_<id>_<secret>`; only the SHA-256 of the secret is stored (the secret has 256 bits
-- of entropy: a slow hash would add nothing but latency to every request).
CREATE TABLE api_keys (
    id            text        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
    account_id    uuid        NOT NULL REFERENCES accounts (id),
    scope         text        NOT NULL CHECK (scope IN ('trade', 'read')),
    secret_sha256 bytea       NOT NULL CHECK (length(secret_sha256) = 32),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at    timestamptz
);
CREATE INDEX api_keys_account_idx ON api_keys (account_id);

-- Orders placed before accounts existed belong to the account `legacy`, made only when there are
-- such orders; `orders-keys create --account legacy` gives their owner a key to read them.
-- (No foreign key from orders: every insert would share-lock its account's row, a hot spot under
-- load; account ids come from verified keys only.)
ALTER TABLE orders ADD COLUMN account_id uuid;
INSERT INTO accounts (name) SELECT 'legacy' WHERE EXISTS (SELECT 1 FROM orders);
UPDATE orders SET account_id = (SELECT id FROM accounts WHERE name = 'legacy');
ALTER TABLE orders ALTER COLUMN account_id SET NOT NULL;

-- Idempotency-Keys are per account.
DROP INDEX orders_idempotency_key_idx;
CREATE UNIQUE INDEX orders_account_idempotency_key_idx ON orders (account_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Listing, newest first, within one account (and its IN PROGRESS and FAILURE subsets).
DROP INDEX orders_created_idx;
DROP INDEX orders_failure_created_idx;
CREATE INDEX orders_account_created_idx ON orders (account_id, created_at DESC, id DESC);
CREATE INDEX orders_account_in_progress_idx ON orders (account_id, created_at DESC, id DESC)
    WHERE status = 'IN PROGRESS';
CREATE INDEX orders_account_failure_idx ON orders (account_id, created_at DESC, id DESC)
    WHERE status = 'FAILURE';
