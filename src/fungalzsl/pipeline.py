def run() -> None:
    """Whole pipeline (not implemented yet)."""
    raise NotImplementedError
