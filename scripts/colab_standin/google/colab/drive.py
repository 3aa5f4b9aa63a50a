"""Stand-in for google.colab.drive: no Google Drive outside Colab."""


def mount(mountpoint: str, force_remount: bool = False) -> None:
    """Colab mounts Drive at `mountpoint`; the check runs with HF_HOME_ON_DRIVE=False, so this is never reached."""
    raise NotImplementedError(f"no Google Drive in make colab-check (asked to mount it at {mountpoint})")
