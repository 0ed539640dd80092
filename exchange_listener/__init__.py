"""exchange_listener."""
