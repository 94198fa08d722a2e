"""Custom Rasa NLU components of the clinic's assistant."""
