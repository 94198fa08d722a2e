"""The project's Rasa input channels (see credentials.yml)."""
