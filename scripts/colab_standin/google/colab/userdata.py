"""Stand-in for google.colab.userdata (Colab's secrets): a runtime where no secret was added."""


class SecretNotFoundError(KeyError):
    """Colab raises this for a secret name it does not have."""


class NotebookAccessError(PermissionError):
    """Colab raises this when the notebook was not given access to the secret."""


def get(key: str) -> str:
    """Colab returns the secret's value; this runtime has none, so every name is missing."""
    raise SecretNotFoundError(f"Secret {key} does not exist.")
