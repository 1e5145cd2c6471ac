def evaluate() -> None:
    """Zero-shot evaluation (not implemented yet)."""
    raise NotImplementedError


def compare() -> None:
    """Compare description sets (not implemented yet)."""
    raise NotImplementedError


def table() -> None:
    """Table 1 over runs (not implemented yet)."""
    raise NotImplementedError
