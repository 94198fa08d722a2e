"""The staff console: a small Flask app that reads the assistant's conversations (Rasa's ``events`` table) and
the consultation requests, in the same database (SQLite or PostgreSQL). ``python -m console`` serves it."""
