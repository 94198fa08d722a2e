"""The conversation-level probe: how the assistant answers messages it never saw, through the real
servers (devtools/servers.py: the action server and the Rasa server over REST, a fresh SQLite database).

    python -m tests.answer_probe [tests/data/answer_probe.yml] [--show-misses] [--json OUT]
    python -m tests.answer_probe --write-nlu tests/data/nlu_probe_pain.yml

Each case is a fresh conversation; the answer to its last message is sorted into kinds (the topic or
treatment whose answer it holds, the refusal, crisis, emergency, fallback, "the article doesn't say",
"only English", a verbatim quote, a reply of replies.yml, the reply to repeated frustration) by finding the knowledge texts in it, so
the judgement follows the knowledge files, not the code that chose the answer. Not part of `make test`
(it is a measurement, not a pass/fail check): `make probe-answers`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Set

import yaml

from core.knowledge import Knowledge
from core.knowledge_loader import get_knowledge

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROBE = ROOT / "tests" / "data" / "answer_probe.yml"
# Before issue 10 the knowledge had no texts for these kinds; these markers find them in any version.
DOESNT_SAY = re.compile(r"article (doesn'?t|does not) (cover|say|speak|mention|answer)(?! more about it)", re.I)
ONLY_ENGLISH = re.compile(r"only (understand|speak|read)s? English", re.I)
QUOTE = re.compile(r"The article says: \u201c")


def load_cases(path: Path) -> List[Dict[str, Any]]:
    cases = yaml.safe_load(path.read_text())["cases"]
    for case in cases:
        case["say"] = [case["say"]] if isinstance(case["say"], str) else list(case["say"])
        case["expect"] = list(case["expect"])
        case["also"] = list(case.get("also") or [])
    return cases


def _optional_text(knowledge: Knowledge, name: str) -> str:
    """A text of the answering section (absent before issue 10)."""
    return str(getattr(getattr(knowledge, "answering", None), name, "") or "")


def kinds_of(answer: str, knowledge: Knowledge) -> Set[str]:
    """The kinds of answer ``answer`` holds (see the module docstring)."""
    found: Set[str] = set()
    flat = " ".join(answer.split())
    for key, topic in knowledge.topics.items():
        if " ".join(topic.answer.split()) in flat:
            found.add(f"topic:{key}")
    for key, therapy in knowledge.therapies.items():
        if " ".join(therapy.answer.split()) in flat:
            found.add(f"therapy:{key}")
    for intent, reply in knowledge.replies.items():
        if " ".join(reply.text.split()) in flat:
            found.add("refusal" if intent == "medical_advice" else f"reply:{intent}")
    if " ".join(knowledge.booking.fields["name"].ask.split()) in flat:
        found.add("reply:request_consultation")
    if " ".join(knowledge.crisis_text.split()) in flat:
        found.add("crisis")
    if " ".join(knowledge.emergency_text.split()) in flat:
        found.add("emergency")
    if " ".join(knowledge.fallback.text.split()) in flat:
        found.add("fallback")
    if DOESNT_SAY.search(flat):
        found.add("doesnt_say")
    if ONLY_ENGLISH.search(flat):
        found.add("non_english")
    if QUOTE.search(flat):
        found.add("quote")
    personal = _optional_text(knowledge, "personal_line")
    if personal and " ".join(personal.split()) in flat:
        found.add("personal")
    hopeless = _optional_text(knowledge, "hopeless_line")
    if hopeless and " ".join(hopeless.split()) in flat:
        found.add("hopeless")
    caregiver = _optional_text(knowledge, "caregiver_line")
    if caregiver and " ".join(caregiver.split()) in flat:
        # The caregiver line is the personal line addressed to the person helping: the decision is
        # for the person helped and their doctor.
        found.update(("caregiver", "personal"))
    again = getattr(getattr(knowledge, "again", None), "text", "")
    if again and " ".join(again.split()) in flat:
        found.add("again")
    return found


def judge(case: Dict[str, Any], kinds: Set[str]) -> Dict[str, bool]:
    """``right``: an expected kind and everything in ``also``; ``kind_right``: an expected kind."""
    # A "doesn't say" or a quote where the article does answer is wrong even though it holds a topic.
    unexpected = {"doesnt_say", "quote", "refusal", "fallback"} & kinds - set(case["expect"])
    kind_right = any(kind in kinds for kind in case["expect"]) and not unexpected
    safety = bool(kinds & {"crisis", "emergency"}) and bool(set(case["expect"]) & {"crisis", "emergency"})
    also_right = safety or all(extra in kinds for extra in case["also"])
    return {"kind_right": kind_right, "right": kind_right and also_right}


# On a busy machine the servers may take longer to start than the tests allow: a probe waits longer.
START_TIMEOUT = 900.0


def run(path: Path, show_misses: bool) -> Dict[str, Any]:
    return run_all([path], show_misses)[path]


def run_all(paths: List[Path], show_misses: bool) -> Dict[Path, Dict[str, Any]]:
    """Runs each probe of ``paths`` through one start of the servers."""
    from devtools.servers import Servers, Visitor

    class PatientServers(Servers):
        def _wait(self, url: str, name: str, timeout: float = START_TIMEOUT) -> None:
            super()._wait(url, name, max(timeout, START_TIMEOUT))

    knowledge = get_knowledge()
    reports: Dict[Path, Dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        servers = PatientServers(Path(folder)).start()
        try:
            for path in paths:
                cases = load_cases(path)
                results = []
                for case in cases:
                    visitor = Visitor(servers)
                    answer = ""
                    for text in case["say"]:
                        answer = visitor.says(text)
                    kinds = kinds_of(answer, knowledge)
                    results.append({"say": case["say"], "expect": case["expect"], "also": case["also"],
                                    "kinds": sorted(kinds), **judge(case, kinds), "answer": answer})
                reports[path] = summarise(cases, results, show_misses)
        finally:
            servers.stop()
    return reports


def summarise(cases: List[Dict[str, Any]], results: List[Dict[str, Any]], show_misses: bool) -> Dict[str, Any]:
    total = len(results)
    counts = Counter()
    for result in results:
        counts["right"] += result["right"]
        counts["kind_right"] += result["kind_right"]
        counts["fallback"] += "fallback" in result["kinds"]
        counts["refusal"] += "refusal" in result["kinds"]
        counts["expected_refusal"] += "refusal" in result["expect"]
    summary = {
        "cases": total,
        "right": counts["right"], "accuracy": round(counts["right"] / total, 3),
        "kind_right": counts["kind_right"], "kind_accuracy": round(counts["kind_right"] / total, 3),
        "fallback_share": round(counts["fallback"] / total, 3),
        "refusal_share": round(counts["refusal"] / total, 3),
        "refusal_expected_share": round(counts["expected_refusal"] / total, 3),
    }
    by_group: Dict[str, List[int]] = {}
    for result in results:
        group = result["expect"][0].split(":")[0] if len(result["say"]) == 1 else "follow_up"
        by_group.setdefault(group, [0, 0])
        by_group[group][0] += result["right"]
        by_group[group][1] += 1
    summary["by_expected_kind"] = {group: f"{right}/{n}" for group, (right, n) in sorted(by_group.items())}
    by_case_group: Dict[str, List[int]] = {}
    for case, result in zip(cases, results):
        if case.get("group"):
            by_case_group.setdefault(case["group"], [0, 0])
            by_case_group[case["group"]][0] += result["right"]
            by_case_group[case["group"]][1] += 1
    if by_case_group:
        summary["by_group"] = {group: f"{right}/{n}" for group, (right, n) in sorted(by_case_group.items())}
    if show_misses:
        for result in results:
            if not result["right"]:
                print(f"MISS {result['say']} expected {result['expect']}+{result['also']} got {result['kinds']}\n"
                      f"     {result['answer'][:160]!r}", file=sys.stderr)
    return {"summary": summary, "results": results}


def write_nlu(path: Path, target: Path) -> None:
    """Writes the single-message cases that carry an `intent` as a Rasa NLU test file."""
    by_intent: Dict[str, List[str]] = {}
    for case in load_cases(path):
        if case.get("intent") and len(case["say"]) == 1:
            by_intent.setdefault(case["intent"], []).append(case["say"][0])
    lines = ['version: "3.1"', "", f"# NOT training data: generated from {path.relative_to(ROOT)} by",
             "# `python -m tests.answer_probe --write-nlu`. Never copy these into data/nlu.yml.", "", "nlu:"]
    for intent, texts in sorted(by_intent.items()):
        lines.append(f"- intent: {intent}")
        lines.append("  examples: |")
        lines.extend(f"    - {text}" for text in texts)
    target.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probe", nargs="*", type=Path, default=[DEFAULT_PROBE],
                        help="one or more probe files, run through one start of the servers")
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--json", type=Path, help="write every case's answer and verdict here (with several "
                        "probes: a folder, one <probe>.json each)")
    parser.add_argument("--write-nlu", type=Path, help="write the NLU probe file and exit")
    args = parser.parse_args()
    if args.write_nlu:
        write_nlu(args.probe[0].resolve(), args.write_nlu.resolve())
        return
    reports = run_all(args.probe, args.show_misses)
    for path, report in reports.items():
        if args.json:
            target = args.json / f"{path.stem}.json" if len(reports) > 1 else args.json
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(report, indent=1))
        if len(reports) > 1:
            print(f"# {path}")
        print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    main()
