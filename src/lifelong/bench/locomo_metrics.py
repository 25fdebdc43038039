"""LoCoMo's scoring: the official answer normalisation and token F1, and evidence recall@k.

The QA scorer follows the benchmark's own ``task_eval/evaluation.py`` (Maharana et al., ACL 2024):
lower case, commas and punctuation removed, the words a/an/the/and removed, whitespace collapsed, then
every token Porter-stemmed (NLTK's ``PorterStemmer``, as the official script) before a bag-of-tokens
F1. Per category:

- 1, multi-hop: the gold answer is split on commas and each part is scored against the best-matching
  comma-separated part of the prediction; the parts' F1 are averaged;
- 2, temporal, and 4, single-hop: plain token F1;
- 3, open-domain: the gold answer is cut at the first ``;`` first;
- 5, adversarial: 1 when the prediction says the information is not there ("not mentioned" or "no
  information available"), else 0.

>>> normalize_answer("The cat, and a Hat!")
'cat hat'
>>> round(token_f1("Caroline went hiking", "went hiking"), 3)   # P = 2/3, R = 1
0.8
>>> locomo_f1("painting, swimming", "swimming, pottery, painting", category=1)  # (1 + 0 + 1) / 3
0.6666666666666666
>>> evidence_recall(["D1:3", "D4:1", "D2:8"], ["D1:3", "D4:1", "D9:9"], k=2)  # 2 of 3 in the top 2
0.6666666666666666
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_PUNCT = set(string.punctuation)
ADVERSARIAL_MARKERS = ("no information available", "not mentioned")


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    try:
        from nltk.stem import PorterStemmer
    except ImportError:
        raise ImportError("LoCoMo's F1 uses NLTK's Porter stemmer: pip install nltk (in the `bench` extra)") from None
    return PorterStemmer()


def normalize_answer(text: object) -> str:
    """The official normalisation: commas dropped, lower case, punctuation removed, a/an/the/and
    removed, whitespace collapsed (numbers such as ``2022`` are scored as text).

    >>> normalize_answer("  7 May, 2023. ")
    '7 may 2023'
    """
    s = str(text).replace(",", "").lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def answer_tokens(text: object) -> list[str]:
    """Normalised, Porter-stemmed tokens.

    >>> answer_tokens("The kids were running")
    ['kid', 'were', 'run']
    """
    stem = _stemmer().stem
    return [stem(w) for w in normalize_answer(text).split()]


def token_f1(prediction: object, gold: object) -> float:
    """Bag-of-tokens F1 between a prediction and one gold answer (0 when nothing is shared).

    >>> token_f1("on 7 May 2023", "7 May 2023")    # P = 3/4, R = 1 -> 6/7
    0.8571428571428571
    >>> token_f1("", "yes")
    0.0
    """
    p, g = answer_tokens(prediction), answer_tokens(gold)
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def multi_answer_f1(prediction: object, gold: object) -> float:
    """Category 1: mean over the gold's comma-separated parts of the best F1 against the prediction's parts.

    >>> multi_answer_f1("yoga", "yoga, running")
    0.5
    """
    preds = [p.strip() for p in str(prediction).split(",")]
    golds = [g.strip() for g in str(gold).split(",")]
    return sum(max(token_f1(p, g) for p in preds) for g in golds) / len(golds)


def adversarial_correct(prediction: object) -> float:
    """Category 5: 1.0 when the prediction says the information is not available.

    >>> adversarial_correct("That is not mentioned in the conversation."), adversarial_correct("Paris")
    (1.0, 0.0)
    """
    low = str(prediction).lower()
    return 1.0 if any(m in low for m in ADVERSARIAL_MARKERS) else 0.0


def locomo_f1(prediction: object, gold: object, *, category: int) -> float:
    """The official per-category QA score (see the module docstring).

    >>> locomo_f1("Psychology", "Psychology; counseling", category=3)
    1.0
    """
    if category == 5:
        return adversarial_correct(prediction)
    if category == 1:
        return multi_answer_f1(prediction, gold)
    if category == 3:
        gold = str(gold).split(";")[0].strip()
    if category in (2, 3, 4):
        return token_f1(prediction, gold)
    raise ValueError(f"LoCoMo categories are 1-5, got {category!r}")


def evidence_recall(ranked: Sequence[str], evidence: Sequence[str], k: int) -> float:
    """Share of the evidence dialog ids found among the first ``k`` ranked ids.

    >>> evidence_recall(["D1:1", "D1:2"], ["D1:2"], k=1)
    0.0
    """
    if not evidence:
        raise ValueError("evidence_recall needs at least one evidence id")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    top = set(ranked[:k])
    wanted = set(evidence)
    return sum(e in top for e in wanted) / len(wanted)
