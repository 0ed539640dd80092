"""orders_api."""
