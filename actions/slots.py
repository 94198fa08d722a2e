"""The consultation request's slots, shared by the booking form and the actions that end it."""

from __future__ import annotations

from typing import List

from rasa_sdk.events import ActiveLoop, EventType, SlotSet

from actions.knowledge import BOOKING_FIELDS

FAILURES_SLOT = "booking_failures"
CHANGING_SLOT = "booking_changing"


def reset_booking() -> List[EventType]:
    """Events that clear every detail of a consultation request, so the next one starts afresh."""
    return [SlotSet(slot, None) for slot in (*BOOKING_FIELDS, FAILURES_SLOT, CHANGING_SLOT)]


def end_booking() -> List[EventType]:
    """Events that end a consultation request in progress (cancel, emergency, crisis) and drop it."""
    return [ActiveLoop(None), SlotSet("requested_slot", None), *reset_booking()]
