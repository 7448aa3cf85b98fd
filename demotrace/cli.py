def app() -> None:
    pass
