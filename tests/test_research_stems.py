"""The light stemmer every check compares words with (``graphs.research.stems.stem``): a
verb's -ing, -ed and -s forms meet its base form, also where the base ends in a silent "e"
("giving" is "give"), and words that only look alike stay apart."""

from __future__ import annotations

import pytest

from graphs.research.passages import bm25_scores
from graphs.research.stems import stem

SAME = [
    ("giving", "give"), ("gives", "give"), ("making", "make"), ("makes", "make"), ("made", "make"),
    ("used", "use"), ("using", "use"), ("uses", "use"), ("writing", "write"), ("storing", "store"),
    ("typing", "type"), ("types", "type"), ("handling", "handle"), ("handles", "handle"),
    ("parsing", "parse"), ("solving", "solve"), ("judging", "judge"), ("caring", "care"), ("rating", "rate"),
    ("running", "run"), ("stopped", "stop"), ("setting", "set"), ("singing", "sing"), ("looking", "look"),
    ("opening", "open"), ("visited", "visit"), ("falling", "fall"), ("passing", "pass"), ("fixing", "fix"),
    ("syncing", "sync"), ("classes", "class"), ("buses", "bus"), ("matches", "match"), ("boxes", "box"),
    ("sizes", "size"), ("cases", "case"), ("aliases", "alias"), ("kept", "keep"), ("fails", "failed"),
    ("caching", "cache"), ("caches", "cache"), ("cached", "cache"), ("causes", "cause"), ("caused", "cause"),
    ("statuses", "status"), ("focused", "focus"), ("gpus", "gpu"), ("cpus", "cpu"),
    ("embedding", "embed"), ("embeddings", "embed"), ("embedded", "embed"), ("embeds", "embed"),
    ("indexes", "index"), ("indexing", "index"), ("queues", "queue"), ("queued", "queue"), ("queuing", "queue"),
    ("queueing", "queue"), ("valued", "value"), ("retries", "retry"), ("retried", "retry"),
    ("speeds", "speed"), ("speeding", "speed"), ("exceeds", "exceed"), ("proceeding", "proceed"), ("needs", "need"),
]
APART = [
    ("car", "caring"), ("rat", "rating"), ("hop", "hoping"), ("hope", "hopping"), ("cod", "coding"),
    ("bit", "biting"), ("fill", "filing"), ("add", "ad"), ("sing", "singe"), ("need", "ne"), ("shed", "she"),
    ("running", "rune"), ("looking", "loke"), ("give", "gift"), ("use", "us"), ("cachet", "cache"),
    ("statue", "status"), ("ember", "embed"),
]


@pytest.mark.parametrize(("form", "base"), SAME)
def test_a_words_forms_share_its_stem(form, base):
    assert stem(form) == stem(base), (form, stem(form), base, stem(base))


@pytest.mark.parametrize(("first", "second"), APART)
def test_words_that_only_look_alike_keep_their_own_stems(first, second):
    assert stem(first) != stem(second), (first, second, stem(first))


def test_a_question_about_giving_ranks_first_the_source_that_says_give():
    documents = ["Tinyq keeps each job in memory.", "Tinyq can give each job a priority."]
    said_keep, said_give = bm25_scores("giving", documents)
    assert said_give > said_keep == 0.0
    said_store, said_small = bm25_scores("storing", ["Tinyq can store jobs in Redis.", "Tinyq is small."])
    assert said_store > said_small == 0.0
