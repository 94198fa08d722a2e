"""The clinic's web chat widget and the demo page's static server (``python -m web.server``)."""
