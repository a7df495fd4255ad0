"""Domain-free building blocks: money, time, pagination, errors, ids."""
