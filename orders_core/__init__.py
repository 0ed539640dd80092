"""orders_core."""
