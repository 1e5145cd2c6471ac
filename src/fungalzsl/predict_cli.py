def predict() -> None:
    """Classify images (not implemented yet)."""
    raise NotImplementedError
