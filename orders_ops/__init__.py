"""orders_ops: running the system rather than being it. `orders-stack` (the whole system on one
machine, for development) and `orders-healthcheck` (the container image's HEALTHCHECK). It knows
every service by name and port; no service, and not orders_core, imports it."""
