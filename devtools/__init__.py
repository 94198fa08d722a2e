"""Tools for developers that tests, the benchmark and the scripts share: the harness that starts the real
servers on free local ports (``devtools.servers``) and the generator of fake conversations for the console
(``devtools.fake_conversations``). Nothing here is imported by the assistant at run time, and nothing here
imports from ``tests/``."""
