"""The project's dialogue policy: Rasa's ``RulePolicy``, predicting from the states of the last few turns only.

Named in ``config.yml`` (``rasa_ext.rule_policy.WindowedRulePolicy``), so it is Rasa's own extension point:
training is ``RulePolicy``'s, unchanged, and so is every prediction; only the work done to reach it shrinks.

Rasa 3.6.21's ``RulePolicy.predict_action_probabilities`` builds the state of *every* past turn
(``Domain.get_active_state`` on each prior tracker) up to three times per message, and deep-copies and
formats them all for a debug log even when debug logging is off, so the cost of a message grew with the
conversation. Only the last ``M`` states can decide which rule applies, ``M`` being the length of the
longest rule in the trained lookup (``_is_rule_applicable`` accepts any rule at a turn further back than its
length), so :meth:`WindowedRulePolicy.predict_action_probabilities` builds those ``M`` states once per
prediction (the tracker is still replayed, which is cheap) and runs Rasa's own matching on them.

Rasa's ``_predict`` also returns, when no rule applies, a key made of *all* states; at prediction time it
only decides ``hide_rule_turn`` (whether the key is one of the lookup's ``rules_not_in_stories``). Those
keys are at most ``K`` states long, so when the history has more than ``K`` states no key can match; when
it has ``K`` or fewer, Rasa's own prediction runs. It also runs when debug logging is on for
``rasa.core.policies.rule_policy`` (its log shows all states), for another featurizer, and for a tracker
with a rule snippet action. ``tests/test_patches.py`` holds every prediction to Rasa's own.

Because the class is not ``RulePolicy`` itself, ``rasa train`` warns that "'RulePolicy' is not included"
(Rasa's check compares the class, not its parents) and skips its domain check for ``RulePolicy``;
:meth:`WindowedRulePolicy.train` runs that check itself. The warning is harmless: the default intents'
rules (restart, back) are ``RulePolicy``'s, which this class inherits.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
from typing import Any, Dict, List, Optional, Tuple

from rasa.core.featurizers.tracker_featurizers import MaxHistoryTrackerFeaturizer
from rasa.core.policies.policy import PolicyPrediction
from rasa.core.policies.rule_policy import (
    DO_NOT_PREDICT_LOOP_ACTION,
    LOOP_WAS_INTERRUPTED,
    RULES,
    RULES_FOR_LOOP_UNHAPPY_PATH,
    RULES_NOT_IN_STORIES,
    RulePolicy,
)
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.shared.core.constants import ACTION_LISTEN_NAME, RULE_SNIPPET_ACTION_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker, get_active_loop_name

from rasa_ext.version import require_rasa_version

_rule_logger = logging.getLogger("rasa.core.policies.rule_policy")
_STATES = "_rasa_ext_states"  # the replay kept on a tracker between two predictions


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.POLICY_WITH_END_TO_END_SUPPORT, is_trainable=True)
class WindowedRulePolicy(RulePolicy):
    """``RulePolicy`` whose predictions build the states of the last few turns only (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        require_rasa_version("rasa_ext.rule_policy.WindowedRulePolicy")  # it reads RulePolicy's internals
        super().__init__(*args, **kwargs)
        self._window: Optional[Tuple[Any, Optional[Tuple[int, int]]]] = None

    def train(self, training_trackers: List[TrackerWithCachedStates], domain: Domain, **kwargs: Any) -> Resource:
        """``RulePolicy.train``, after the domain check Rasa runs for ``RulePolicy`` only."""
        self.raise_if_incompatible_with_domain(self.config, domain)
        return super().train(training_trackers, domain, **kwargs)

    def _plan(self) -> Optional[Tuple[int, int]]:
        """(states needed, longest key of rules_not_in_stories) for this policy's lookup; None: Rasa's own."""
        if self._window is not None and self._window[0] is self.lookup:
            return self._window[1]
        result = None
        if type(self.featurizer) is MaxHistoryTrackerFeaturizer:
            rules = list(self.lookup.get(RULES, {})) + list(self.lookup.get(RULES_FOR_LOOP_UNHAPPY_PATH, {}))
            needed = max([len(self._rule_key_to_state(key)) for key in rules] + [1])
            longest = 0
            for key in self.lookup.get(RULES_NOT_IN_STORIES, []):
                try:
                    value = json.loads(key)
                except ValueError:
                    continue
                if isinstance(value, list):
                    longest = max(longest, len(value))
            result = (needed, longest)
        self._window = (self.lookup, result)
        return result

    def predict_action_probabilities(self, tracker: DialogueStateTracker, domain: Domain,
                                     rule_only_data: Optional[Dict[str, Any]] = None,
                                     **kwargs: Any) -> PolicyPrediction:
        """``RulePolicy``'s prediction, from the last states only."""
        window = self._plan()
        if (window is None or _rule_logger.isEnabledFor(logging.DEBUG)
                or any(isinstance(event, ActionExecuted) and event.action_name == RULE_SNIPPET_ACTION_NAME
                       for event in tracker.events)):
            return super().predict_action_probabilities(tracker, domain, rule_only_data, **kwargs)
        needed, longest_unmatched_key = window
        computed: list = []

        def find(use_text: bool) -> tuple:
            """``_find_action_from_rules`` on the last states: (action, rule key or None, returning from
            an unhappy path, number of states)."""
            if use_text and tracker.latest_action_name != ACTION_LISTEN_NAME:
                return None, None, False, 0
            if not computed:
                computed.append(last_states(tracker, domain, needed))
            total, raw = computed[0]
            featurizer = self.featurizer
            states = featurizer.slice_state_history(copy.deepcopy(raw), featurizer.max_history)
            featurizer._choose_last_user_input([states], use_text)
            count = total if featurizer.max_history is None else min(total, featurizer.max_history)
            returning = False
            rule_keys = self._get_possible_keys(self.lookup[RULES], states)
            name = None
            best = ""
            if rule_keys:
                best = max(rule_keys, key=len)
                name = self.lookup[RULES].get(best)
            loop = tracker.active_loop_name
            if loop:
                unhappy = [self.lookup[RULES_FOR_LOOP_UNHAPPY_PATH].get(key)
                           for key in self._get_possible_keys(self.lookup[RULES_FOR_LOOP_UNHAPPY_PATH], states)]
                if name == ACTION_LISTEN_NAME and not get_active_loop_name(self._rule_key_to_state(best)[-1]):
                    if DO_NOT_PREDICT_LOOP_ACTION not in unhappy:
                        return loop, best, returning, count
                    name = None
                if LOOP_WAS_INTERRUPTED in unhappy:
                    returning = True
            return name, best or None, returning, count

        text_name, text_key, text_returning, _ = find(True)
        default_name, default_source = self._find_action_from_default_actions(tracker)
        if default_name and not text_name:
            return self._rule_prediction(self._prediction_result(default_name, tracker, domain), default_source)
        loop_name, loop_source = self._find_action_from_loop_happy_path(tracker)
        if loop_name:
            return self._rule_prediction(self._prediction_result(loop_name, tracker, domain), loop_source,
                                         is_no_user_prediction=True)
        if text_name:
            return self._rule_prediction(self._prediction_result(text_name, tracker, domain), text_key,
                                         returning_from_unhappy_path=text_returning, is_end_to_end_prediction=True)
        name, key, returning, count = find(False)
        if key is None and count <= longest_unmatched_key:
            # Rasa's key of all states might be one of rules_not_in_stories: let Rasa decide.
            return super().predict_action_probabilities(tracker, domain, rule_only_data, **kwargs)
        probabilities = (self._prediction_result(name, tracker, domain) if name
                         else self._default_predictions(domain))
        # With no rule, Rasa's key has more states than any of rules_not_in_stories: hide_rule_turn False.
        return self._rule_prediction(probabilities, key, returning_from_unhappy_path=text_returning or returning,
                                     is_end_to_end_prediction=False)


def last_states(tracker: DialogueStateTracker, domain: Domain, window: int) -> tuple:
    """(number of states, the last ``window`` states): what ``Domain.states_for_tracker_history`` gives
    (without rule-only turns ignored), only the last ``window`` computed.

    The replay is kept on the tracker: the next prediction on the same tracker (the processor predicts
    again after each action) replays only the applied events added since, when the applied events start
    with exactly those replayed (the same objects); otherwise it replays them all."""
    applied = tracker.applied_events()
    memo = tracker.__dict__.get(_STATES)
    if (memo is not None and memo[0] is domain and memo[1] == window and len(applied) >= len(memo[2])
            and all(a is b for a, b in zip(applied, memo[2]))):
        _, _, seen, replay, index, before = memo
        new, first = applied[len(seen):], 0
    else:
        replay, index, before, new = tracker.init_copy(), 0, collections.deque(maxlen=max(window - 1, 0)), applied
        first = 1 + sum(isinstance(event, ActionExecuted) for event in applied) - window
    for event in new:
        if isinstance(event, ActionExecuted):
            if index >= first:
                before.append(domain._clean_state(domain.get_active_state(replay)))
            index += 1
        replay.update(event)
    tracker.__dict__[_STATES] = (domain, window, applied, replay, index, before)
    return 1 + index, [*before, domain._clean_state(domain.get_active_state(replay))]
