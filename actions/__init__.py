"""Custom actions of the clinic's assistant, served by the rasa-sdk action server.

Modules:
    settings: paths and environment settings.
    knowledge: the knowledge as typed data (topics, replies, safety and booking texts), loaded once.
    knowledge_loader: reads and checks the knowledge files, one ``_load_*`` per file.
    intents: the intents the code names, which intents are answered how, and the safety patterns' matcher.
    language: is a message in another language?
    limits: the length of text every pattern sees; the abuse limits' settings.
    retrieval: the article's sentences, for verbatim quotes as the last resort.
    base: the base class every action shares (never silent, never a stack trace).
    answers: article answers, conversation replies, the fallback and the session start.
    safety: emergency and crisis routing.
    parsing: reading the consultation form's answers (phone, email, name, yes/no): plain text functions.
    booking: the consultation request form, its validation and submission.
    store: the ``consultation_requests`` table.
    list_requests: ``python -m actions.list_requests``, the staff's list of requests.

Start the server with ``python -m actions`` (see ``actions/__main__.py``).
"""
