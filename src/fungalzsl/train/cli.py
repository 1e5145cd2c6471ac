def train() -> None:
    """Fine-tune a two-tower model (not implemented yet)."""
    raise NotImplementedError
