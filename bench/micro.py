"""The two speed patches alone, in-process: ``python -m bench.micro``.

Times deserialising a 100-turn session (501 events, as the tracker store does on every message) and
validating one action-server response, with Rasa as released and then with ``rasa_ext.patches`` applied.
"""

from __future__ import annotations

import timeit
from typing import Any, Dict, List, Tuple

from rasa.core.actions.action import RemoteAction
from rasa.shared.core.events import ActionExecuted, BotUttered, Event, SessionStarted, SlotSet, UserUttered
from rasa.utils.endpoints import EndpointConfig


def session(turns: int = 100) -> List[Dict[str, Any]]:
    """The stored events of a conversation of ``turns`` questions and answers."""
    intent = {"name": "ask_what_is_fibromyalgia", "confidence": 0.9}
    events = [SessionStarted().as_dict()]
    for _ in range(turns):
        events += [
            UserUttered("what is fibromyalgia", intent,
                        parse_data={"intent": intent, "entities": [], "text": "what is fibromyalgia"}).as_dict(),
            ActionExecuted("action_answer").as_dict(),
            BotUttered("an answer", {"buttons": [{"title": "More", "payload": "/ask_symptoms"}]}).as_dict(),
            SlotSet("topic", "what_is").as_dict(),
            ActionExecuted("action_listen").as_dict(),
        ]
    return events


def measure() -> Tuple[float, float]:
    """Seconds to deserialise :func:`session` and to validate one action response."""
    events = session()
    response = {"events": [SlotSet("topic", "what_is").as_dict()], "responses": [{"text": "hello"}]}
    action = RemoteAction("action_answer", EndpointConfig("http://127.0.0.1:1/webhook"))
    deserialise = timeit.timeit(lambda: [Event.from_parameters(dict(e)) for e in events], number=5) / 5
    validate = timeit.timeit(lambda: action._validate_action_result(response), number=20) / 20
    return deserialise, validate


def main() -> None:
    before = measure()
    from rasa_ext import patches

    patches.apply()
    after = measure()
    print(f"deserialise a 100-turn session (501 events): {before[0] * 1000:.1f} ms -> {after[0] * 1000:.1f} ms")
    print(f"validate one action response: {before[1] * 1000:.1f} ms -> {after[1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
