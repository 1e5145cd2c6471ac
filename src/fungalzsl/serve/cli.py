def serve() -> None:
    """Web page (not implemented yet)."""
    raise NotImplementedError
