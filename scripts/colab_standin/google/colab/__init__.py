"""A stand-in for Colab's `google.colab` package, for `make colab-check` only (not the real one).

The real package (googlecolab/colabtools) is not on PyPI. The check copies this folder into its venv and imports it
when each kernel starts, as Colab's kernel does, so `"google.colab" in sys.modules` is true and the notebooks take
their Colab branch. It has only what the course calls: `output.enable_custom_widget_manager`, `userdata.get`
(no secrets: every name is missing, as in a runtime where none was added) and `drive.mount` (refused: no Drive here).
"""

__version__ = "0.0.0+standin"
