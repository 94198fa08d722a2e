"""The project's additions to the Rasa server process: the start-up entry point that applies them,
and the version-pinned patch module (see :mod:`rasa_ext.patches`)."""
