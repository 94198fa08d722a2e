"""The assistant's Rasa-free core: what the action server, the channels, the NLU components, the Rasa
server's additions and the staff console all build on. It imports neither Rasa nor rasa_sdk.

Modules:
    settings: paths and environment settings (the project's folder, the database's URL).
    limits: the length of text every pattern sees; the abuse limits' settings.
    intents: the intents the code names, which intents are answered how, and the safety patterns' matcher.
    knowledge: the knowledge as typed data (topics, replies, safety and booking texts).
    knowledge_loader: reads and checks the knowledge files, one ``_load_*`` per file; loads them once.
    language: is a message in another language?
    parsing: reading the consultation form's answers (phone, email, name, time, yes/no): plain text functions.
    store: the ``consultation_requests`` table.
    privacy: keeps visitors' text and raw conversation ids out of every log line of a process.
"""
