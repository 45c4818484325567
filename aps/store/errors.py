"""What the store raises: one exception an operator can read."""


class StoreError(Exception):
    """The database cannot do what was asked (unknown tenant, ambiguous key, bad file)."""
