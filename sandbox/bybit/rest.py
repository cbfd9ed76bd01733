"""Placeholder: filled in by its owner."""


def install(app, world) -> None:
    return None
