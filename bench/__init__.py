"""``make bench``: the project against a stock Rasa bot (see bench/__main__.py)."""
