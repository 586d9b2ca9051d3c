"""LongBench-style question answering over real prose with planted facts, generated offline from a seed.

The prose is the Python documentation that ships with CPython itself (``pydoc_data.topics``: 79 reference
topics, ~110k tokens of English technical prose), so no data file is needed. A prompt is prose sentences
filling the target length (in the model's own tokens) with a **planted fact** at a controlled depth and
**distractor facts** of the same kind (other names, codes, places, dates) at random depths; the question
asks about the planted fact only. Two variants, with LongBench's own prompt templates:

- ``prose_qa`` (single document, LongBench ``multifieldqa_en`` template): consecutive sentences of one
  topic (continuing into the next topics when one is too short);
- ``prose_qa_multi`` (several documents, LongBench ``hotpotqa`` template): ``Passage k:`` blocks of
  different topics in a shuffled order.

Train and held-out episodes never share a source document: ``split`` selects the topics (about a quarter
of them, chosen by a stable hash of the topic name, are held out). Scored with LongBench's ``qa_f1``.
Each episode exposes ``inputs["context"]`` and ``inputs["question"]`` beside the whole ``prompt``, and
:func:`longbench_record` turns it into a LongBench JSON-lines record.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..base import Episode, TaskDataError, register_task
from .haystack import Haystack, fit, tokens_per_unit
from .metrics import best_score
from .synthetic import _ADJECTIVES, _NOUNS, _check_int, _DepthTask
from .truncation import answer_cue

SINGLE_TEMPLATE = (
    "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based "
    "on the above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\n"
    "Answer:")
MULTI_TEMPLATE = (
    "Answer the question based on the given passages. Only give me the answer and do not output any other "
    "words.\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given "
    "passages. Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:")
SPLITS = ("train", "heldout", "all")

_FIRST = ("Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kira",
          "Lars", "Maya", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tomas", "Uma", "Viktor", "Wanda",
          "Yusuf", "Zofia", "Amara", "Bodhi", "Carmen", "Declan", "Esme")
_LAST = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Castillo", "Brennan", "Haddad", "Kowalski",
         "Ferreira", "Ivanova", "Achebe", "Dubois", "Larsen", "Rossi", "Schmidt", "Nakamura", "Oyelaran",
         "Petrov", "Quispe")
_CITIES = ("Lisbon", "Nairobi", "Oslo", "Quito", "Hanoi", "Tbilisi", "Montreal", "Valparaiso", "Kraków",
           "Adelaide", "Marrakesh", "Reykjavik", "Cusco", "Ljubljana", "Osaka", "Tallinn", "Accra", "Bergen",
           "Porto", "Seville", "Lyon", "Gdansk", "Zanzibar", "Halifax", "Kyoto")
_PLACES = ("the blue mailbox", "the old oak tree", "the north gate", "the clock tower", "the fountain",
           "the red bridge", "the bakery", "the train platform", "the library steps", "the lighthouse",
           "the boathouse", "the stone well")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


@cache
def topics() -> dict[str, list[str]]:
    """Topic name -> its prose sentences (code blocks and very short or long lines dropped), sorted by name."""
    from pydoc_data.topics import topics as raw

    out = {}
    for name in sorted(raw):
        sentences = []
        for paragraph in re.split(r"\n\s*\n", raw[name]):
            lines = paragraph.strip().splitlines()
            if not lines or any(line.startswith(("   ", ">>>", "...")) for line in lines):
                continue  # code and indented grammar blocks
            text = " ".join(line.strip() for line in lines)
            for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
                if 30 <= len(sentence) <= 400 and sentence[-1] in ".!?:" and "*" not in sentence:
                    sentences.append(sentence)
        if len(sentences) >= 5:
            out[name] = sentences
    return out


def split_of(topic: str) -> str:
    """``"heldout"`` for about a quarter of the topics (stable hash of the name), else ``"train"``."""
    return "heldout" if hashlib.sha256(topic.encode()).digest()[0] % 4 == 0 else "train"


def documents(split: str) -> list[str]:
    """Names of the topics in ``split`` (``"all"``: every topic)."""
    if split not in SPLITS:
        raise TaskDataError(f"must be one of {SPLITS}, got {split!r}", field="split")
    return [name for name in topics() if split == "all" or split_of(name) == split]


@dataclass(frozen=True)
class Fact:
    """A planted fact: the sentence, the question about it and its answer."""

    sentence: str
    question: str
    answer: str


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def make_facts(rng: random.Random, n: int) -> list[Fact]:
    """``n`` facts of one randomly chosen kind about ``n`` different subjects (the first one is asked)."""
    kind = rng.choice(("city", "year", "code", "date", "place"))
    subjects: list[str] = []
    while len(subjects) < n:
        subject = _person(rng) if kind in ("city", "year", "place") else f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
        if subject not in subjects:
            subjects.append(subject)
    facts = []
    for subject in subjects:
        if kind == "city":
            city = rng.choice(_CITIES)
            facts.append(Fact(f"{subject} moved to {city} to open a small workshop.",
                              f"Which city did {subject} move to?", city))
        elif kind == "year":
            year = str(rng.randint(1901, 1999))
            facts.append(Fact(f"{subject} was born in {year} in a small village.",
                              f"In which year was {subject} born?", year))
        elif kind == "code":
            code = f"{rng.choice('BCDFGHKLMPRSTVXZ')}{rng.choice('BCDFGHKLMPRSTVXZ')}-{rng.randint(1000, 9999)}"
            facts.append(Fact(f"The access code of the {subject} archive is {code}.",
                              f"What is the access code of the {subject} archive?", code))
        elif kind == "date":
            date = f"{rng.choice(_MONTHS)} {rng.randint(1, 28)}"
            facts.append(Fact(f"The {subject} festival is held every year on {date}.",
                              f"On which date is the {subject} festival held?", date))
        else:
            place = rng.choice(_PLACES)
            facts.append(Fact(f"{subject} hid the spare key near {place}.",
                              f"Where did {subject} hide the spare key?", place))
    return facts


@register_task("prose_qa")
@dataclass
class ProseQATask(_DepthTask):
    """LongBench-style single-document QA over Python's own documentation prose with a planted fact.

    Attributes:
        split: ``"train"``, ``"heldout"`` (documents never used for training) or ``"all"``.
        n_distractors: other facts of the same kind at random depths, in [0, 16].
    """

    split: str = "heldout"
    n_distractors: int = 3
    max_new_tokens: int = 16

    metric = "qa_f1_score"
    source = "generated offline from the seed over pydoc_data.topics (ships with CPython)"
    description = "planted fact (name, code, place, date) with distractors in real prose; LongBench QA format"
    template = SINGLE_TEMPLATE
    multi_document = False

    def __post_init__(self) -> None:
        super().__post_init__()
        documents(self.split)  # validates the split
        _check_int(self.n_distractors, "n_distractors", 0, 16)

    def build(self, tokenizer, length, depth, rng):
        names = documents(self.split)
        facts = make_facts(rng, 1 + self.n_distractors)
        depths = [depth] + [rng.random() for _ in range(self.n_distractors)]
        order = names[:]
        rng.shuffle(order)
        stream: list[str] = []  # sentences in reading order, passage headers included
        for k, name in enumerate(order):
            body = topics()[name]
            if self.multi_document:  # a passage of up to 12 sentences of each topic
                start = rng.randrange(max(1, len(body) - 12))
                header = f"\n\nPassage {k + 1}:\n" if k else ""  # "Passage 1:" ends the prompt's prefix
                body = [header + body[start]] + body[start + 1:start + 12]
            stream += body
            if len(stream) > length:  # more sentences than any fitted prompt can hold
                break
        sep = " "

        def unit(i: int) -> str:
            return stream[i % len(stream)]

        prefix, suffix = self.template.split("{context}")
        prefix += "Passage 1:\n" if self.multi_document else ""
        suffix = suffix.replace("{input}", facts[0].question)
        haystack = Haystack(prefix, suffix, unit, [(d, f.sentence) for d, f in zip(depths, facts)], sep=sep)
        fitted = fit(tokenizer, length, haystack.render, tokens_per_unit(tokenizer, unit, sep))
        context = fitted.prompt[len(prefix) - len("Passage 1:\n" if self.multi_document else ""):
                                len(fitted.prompt) - len(suffix)]
        extra = {"question": facts[0].question, "context": context, "fact": facts[0].sentence,
                 "documents": order[:3]}
        return fitted, (facts[0].answer,), extra

    def episodes(self, context) -> list[Episode]:
        out = []
        for episode in super().episodes(context):
            meta = dict(episode.metadata)
            question, text = meta.pop("question"), meta.pop("context")
            inputs = {**episode.inputs, "context": text, "question": question, "cue": answer_cue(self.template)}
            out.append(Episode(episode.task, episode.episode_id, inputs, episode.references,
                               episode.max_new_tokens, meta))
        return out

    def score(self, prediction: str, episode: Episode) -> float:
        """LongBench ``qa_f1_score``, the best over the references."""
        return best_score("qa_f1_score", prediction, episode.references)


@register_task("prose_qa_multi")
@dataclass
class MultiDocProseQATask(ProseQATask):
    """LongBench-style multi-document QA (``Passage k:`` blocks of different topics) with a planted fact."""

    template = MULTI_TEMPLATE
    multi_document = True
    description = "planted fact with distractors across several prose passages; LongBench hotpotqa format"


def longbench_record(episode: Episode) -> dict[str, Any]:
    """The episode as a LongBench JSON-lines record (``input``, ``context``, ``answers``, ``length``, ...)."""
    return {"input": episode.inputs["question"], "context": episode.inputs["context"],
            "answers": list(episode.references), "length": len(episode.inputs["context"].split()),
            "dataset": episode.task, "language": "en", "all_classes": None, "_id": episode.episode_id}
