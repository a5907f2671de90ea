"""Routing policies: prompt hashing, the prefix index, affinity and the load guard."""
