"""Is a message in a language the assistant does not speak?

The assistant understands English only; a Spanish question would otherwise be classified as some
English intent and answered about something else. This is a small heuristic, not a language model
(no new dependency): a message is "not English" when most of its letters are from a non-Latin script
(Chinese, Korean, Cyrillic, Arabic…), or when it holds at least two function words or marks of
another language (Spanish, Portuguese, French, German, Italian, Tagalog; Vietnamese by its letters)
and more of them than English function words. Its false positives are measured on every English
training and probe message (tests/test_language.py, README).
"""

from __future__ import annotations

import re

from core.limits import bounded

# Common words of other languages that are not (or hardly ever) English words. Ambiguous ones
# ("a", "me", "no", "die", "was", "do", "son", "non", "per", "pour", "ma", "ai"…) are left out.
FOREIGN_WORDS = frozenset("""
 que qué cómo como cuál cual cuándo cuando dónde donde por para pero muy mucho mucha muchos tengo
 cuánto cuanto cuesta consulta falam português portugues sprechen deutsch français francais parlez
 tiene tienen tienes duele dolor dolores espalda ayuda ayudar hola gracias necesito quiero puedo
 puede hablan habla hablas español usted ustedes estoy está están es soy los las del una uno unos
 con mis tus sus nuestra nuestro cita favor buenos buenas días dias tardes noches clínica
 clinica médico medico doctora número numero teléfono telefono también tambien ella él ellos
 ahora hoy mañana semana años siempre nunca nada algo bien malo
 je j'ai besoin mal au aux depuis des mois faire le les et une avec mes vous nous
 bonjour merci très pas ne suis c'est qu'est dois peux quoi
 estou muita muito nas nos costas vocês você voce não nao eu minha meu obrigado obrigada olá ola
 uma dor
 ich habe und starke rückenschmerzen nicht ist der das ein eine mit mein meine bitte danke hallo
 wie sie wir auch rücken schmerzen ärztin arzt
 di schiena il che sono ciao grazie della molto
 ang ko ng sa mga ano dapat kong gawin masakit likod po salamat ako ka hindi paano ba
""".split())

ENGLISH_WORDS = frozenset("""
    the is are was what how why who when where my i i'm im you your it it's its and or to of for with can
    could do does did have has had back pain hurt hurts help should would will this that there be
    not any anything about from in on at get me we they he she his her them if
""".split())

# Letters that English never uses but Spanish, Portuguese, French, German or Vietnamese do.
FOREIGN_MARKS = re.compile(r"[ñ¿¡ãõçœßđơưèàùâêîôûëï\u1EA0-\u1EF9]", re.IGNORECASE)
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def _non_latin(char: str) -> bool:
    code = ord(char)
    return code > 0x024F and not 0x1E00 <= code <= 0x1EFF


def looks_non_english(text: str) -> bool:
    """True when ``text`` is most likely not English (see the module docstring)."""
    text = bounded(text)
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return False
    if sum(map(_non_latin, letters)) / len(letters) > 0.5:
        return True
    words = WORD.findall(text.lower().replace("’", "'"))
    foreign = sum(word in FOREIGN_WORDS for word in words) + len(FOREIGN_MARKS.findall(text))
    english = sum(word in ENGLISH_WORDS for word in words)
    return foreign >= 2 and foreign > english
