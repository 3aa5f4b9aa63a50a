"""Stand-in for google.colab.output: the custom widget manager has nothing to switch on outside Colab."""


def enable_custom_widget_manager() -> None:
    """Colab renders third-party widgets after this call; here there is no front end, so it does nothing."""
