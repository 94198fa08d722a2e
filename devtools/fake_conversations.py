"""Generates realistic conversations for measuring and testing the console.

    python -m devtools.fake_conversations --conversations 10000 [--days 90] [--seed 1] [--force]

Writes into the assistant's database (CLINIC_DB_URL, or the endpoints file's tracker store) the events Rasa
would have stored: session start, visitor messages with intent and confidence, actions and bot messages, plus
a consultation request for most conversations that completed the form. Conversation ids start with
``fixture-``. It refuses to write into a database that holds real conversations unless given --force.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from console import db
from core.settings import database_url
from core.store import consultation_requests, make_engine

TOPIC_TEXTS = {
    "ask_what_is_fibromyalgia": ["what is fibromyalgia?", "what exactly is fibro", "can you explain fibromyalgia"],
    "ask_symptoms": ["what are the symptoms", "typical symptoms of fibromyalgia?", "is fatigue a symptom"],
    "ask_causes": ["what causes fibromyalgia", "why do people get fibro"],
    "ask_who_gets_it": ["is it more common in women?", "who gets fibromyalgia"],
    "ask_related_conditions": ["is fibro linked to depression", "insomnia and fibromyalgia?"],
    "ask_back_pain": ["does fibromyalgia cause back pain", "my lower back hurts, is it fibro"],
    "ask_treatment": ["what treatments are there", "does water therapy help?", "can physio help with fibro",
                      "is biofeedback useful", "what medications are prescribed"],
    "ask_combined_approach": ["can treatments be combined"],
    "ask_surgery": ["is surgery ever needed", "would I need spine surgery"],
    "ask_surgery_candidate": ["am I a candidate for surgery"],
    "ask_clinic": ["where is the clinic", "are you in santa monica"],
    "ask_doctor": ["who is the doctor", "who is the medical director"],
    "ask_contact": ["what's your phone number", "how can I reach you"],
    "ask_insurance": ["do you take blue shield insurance", "is it covered by medicare"],
    "ask_cost": ["how much does a visit cost"],
    "ask_hours": ["when are you open"],
    "medical_advice": ["how many mg of gabapentin should I take", "should I stop my meds"],
    "greet": ["hi", "hello", "good morning"],
    "thank": ["thanks", "thank you!"],
}
FALLBACK_TEXTS = ["qwzx vbnm", "asdf", "do you sell cbd gummies", "is the parking validated",
                  "my cat has fibro?", "<b>bold</b> question", "'; drop table events; --"]
OUT_OF_SCOPE_TEXTS = ["what's the weather", "can you book me a flight", "tell me a joke"]
EMERGENCY_TEXTS = ["I lost control of my bladder and my back is on fire", "my legs went numb suddenly"]
CRISIS_TEXTS = ["I don't see a reason to keep living"]
NAMES = ["Maria Lopez", "James Chen", "Ana Ruiz", "Sam Lee", "Priya Patel", "Tom O'Brien", "Lee Kim"]


class Writer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.events: List[Dict[str, Any]] = []
        self.requests: List[Dict[str, Any]] = []

    def event(self, sender: str, kind: str, at: float, intent: Optional[str] = None, action: Optional[str] = None,
              **data: Any) -> None:
        body = {"event": kind, "timestamp": at, "metadata": {"fixture": True}, **data}
        self.events.append({"sender_id": sender, "type_name": kind, "timestamp": at, "intent_name": intent,
                            "action_name": action, "data": json.dumps(body)})
        if len(self.events) >= 5000:
            self.flush()

    def flush(self) -> None:
        with self.engine.begin() as connection:
            if self.events:
                connection.execute(db.events.insert(), self.events)
            if self.requests:
                connection.execute(consultation_requests.insert(), self.requests)
        self.events, self.requests = [], []


def conversation(writer: Writer, rng: random.Random, sender: str, at: float) -> None:
    def act(name: str, confidence: Optional[float] = 1.0) -> None:
        nonlocal at
        at += 0.01
        writer.event(sender, "action", at, action=name, name=name, policy="RulePolicy", confidence=confidence)

    def bot(text: str, buttons: Optional[list] = None) -> None:
        nonlocal at
        at += 0.01
        writer.event(sender, "bot", at, text=text, data={"buttons": buttons})

    def user(text: str, intent: str, confidence: float) -> None:
        nonlocal at
        at += rng.uniform(5, 90)
        writer.event(sender, "user", at, intent=intent, text=text,
                     parse_data={"intent": {"name": intent, "confidence": confidence}, "entities": [], "text": text})
        writer.event(sender, "user_featurization", at + 0.005, use_text_for_featurization=False)

    act("action_session_start", None)
    bot("I'm a virtual assistant, not a doctor. In an emergency, call 911.")
    writer.event(sender, "session_started", at)
    act("action_listen", None)
    roll = rng.random()
    turns = rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 8])
    for _ in range(turns):
        kind = rng.random()
        if kind < 0.08:
            user(rng.choice(FALLBACK_TEXTS), "nlu_fallback", 0.4)
            act("action_fallback")
            bot("Sorry, I'm not sure I understood. You can call the clinic at (310) 828-7757.")
        elif kind < 0.12:
            user(rng.choice(OUT_OF_SCOPE_TEXTS), "out_of_scope", rng.uniform(0.5, 0.99))
            act("action_answer")
            bot("I can only answer questions about fibromyalgia and its treatments.")
        else:
            intent = rng.choice(list(TOPIC_TEXTS))
            user(rng.choice(TOPIC_TEXTS[intent]), intent, rng.uniform(0.45, 0.999))
            act("action_answer")
            bot(f"An answer about {intent[4:] if intent.startswith('ask_') else intent} from the article.",
                [{"title": "Symptoms", "payload": "/ask_symptoms"}])
        act("action_listen")
    if roll < 0.03:
        text, intent = (rng.choice(EMERGENCY_TEXTS), "emergency") if rng.random() < 0.7 \
            else (rng.choice(CRISIS_TEXTS), "crisis")
        user(text, intent, 1.0)
        act("action_safety")
        bot("This may be a medical emergency. Please call 911." if intent == "emergency"
            else "Please call or text 988, or 911 in an emergency.")
        act("action_listen")
    elif roll < 0.11:
        user("I'd like to book a consultation", "request_consultation", 0.99)
        act("consultation_form")
        bot("Happy to help you request a consultation. What's your name?")
        act("action_listen")
        name = rng.choice(NAMES)
        phone = f"+1310555{rng.randint(0, 9999):04d}"
        email = f"{name.split()[0].lower()}@example.com" if rng.random() < 0.5 else None
        for text in (name, f"({phone[2:5]}) {phone[5:8]}-{phone[8:]}", "weekday mornings", email or "skip",
                     "back pain", "yes"):
            user(text, "affirm" if text == "yes" else "inform", 0.99)
            act("consultation_form")
            bot("Thanks. Next question." if text != "yes" else "Thanks, the clinic will call you back.")
            act("action_listen")
        if rng.random() < 0.9:
            created = dt.datetime.fromtimestamp(at, dt.timezone.utc)
            status = rng.choice(["new", "new", "contacted", "closed"])
            writer.requests.append({
                "request_key": f"{sender}-{int(at)}", "conversation_id": sender, "name": name, "phone": phone,
                "callback_time": "weekday mornings", "email": email, "reason": "back pain", "status": status,
                "created_at": created,
                "status_changed_at": None if status == "new" else created + dt.timedelta(days=1),
                "status_changed_by": None if status == "new" else "fixture@clinic.example"})


def generate(engine: Engine, count: int, days: int = 90, seed: int = 1, now: Optional[float] = None) -> List[str]:
    """Writes ``count`` conversations started over the last ``days`` days; their ids."""
    db.rasa_metadata.create_all(engine)  # only when Rasa has not created it yet
    db.create_schema(engine)
    rng = random.Random(seed)
    now = now or time.time()
    writer = Writer(engine)
    senders = []
    for _ in range(count):
        sender = f"fixture-{rng.getrandbits(96):024x}"
        senders.append(sender)
        conversation(writer, rng, sender, now - rng.uniform(0, days * 86400))
    writer.flush()
    return senders


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.fake_conversations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=10000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="write even where real conversations are")
    args = parser.parse_args(argv)
    engine = make_engine(database_url())
    if db.has_events(engine) and not args.force:
        with engine.connect() as connection:
            real = connection.execute(sa.select(db.events.c.id).where(
                sa.not_(db.events.c.sender_id.like("fixture-%"))).limit(1)).first()
        if real:
            print(f"{engine.url!r} holds real conversations: refusing to add fixtures there (use --force, or "
                  "CLINIC_DB_URL=sqlite:///var/fixtures.db).", file=sys.stderr)
            return 1
    started = time.monotonic()
    generate(engine, args.conversations, args.days, args.seed)
    print(f"Wrote {args.conversations} conversations in {time.monotonic() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
