"""The project's additions to the Rasa server process: the start-up entry point (``python -m rasa_ext``), the
dialogue policy named in config.yml (:mod:`rasa_ext.rule_policy`), the tracker and lock stores named in
endpoints.yml, and the changes of Rasa's internals that no extension point reaches, listed in
:mod:`rasa_ext.patches` (never silent, databases, speed)."""
