"""Custom actions of the clinic's assistant, served by the rasa-sdk action server.

Modules:
    settings: paths and environment settings.
    knowledge: loads and validates the knowledge files (article, clinic facts, replies).
    base: the base class every action shares (never silent, never a stack trace).
    answers: article answers, conversation replies, the fallback and the session start.
    safety: emergency and crisis routing.
    booking: the consultation request form, its validation and submission.
    store: the ``consultation_requests`` table.

Start the server with ``python -m actions`` (see ``actions/__main__.py``).
"""
