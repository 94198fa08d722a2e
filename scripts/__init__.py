"""Commands run by people and by the Makefile, on top of everything else: ``python -m scripts.serve``
(``make run``), ``scripts.cluster`` (``make cluster``), ``scripts.migrate``, ``scripts.credentials``,
``scripts.build_spacy_pipeline``, and the supervisor they share."""
