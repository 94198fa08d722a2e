"""Custom actions of the clinic's assistant, served by the rasa-sdk action server. They build on the
Rasa-free :mod:`core` (knowledge, intents, parsing, limits, settings, the request store).

Modules:
    retrieval: the article's sentences, for verbatim quotes as the last resort.
    base: the base class every action shares (never silent, never a stack trace).
    answers: article answers, conversation replies, the fallback and the session start.
    safety: emergency and crisis routing.
    booking: the consultation request form, its validation and submission.
    list_requests: ``python -m actions.list_requests``, the staff's list of requests.

Start the server with ``python -m actions`` (see ``actions/__main__.py``).
"""
