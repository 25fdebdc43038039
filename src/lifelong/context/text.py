"""Text helpers shared by every backend: the BM25 tokenizer and the packer's token counter.

Both backends index the *same* terms, produced here, so BM25 ranks identically on SQLite (FTS5) and
PostgreSQL (BM25 in SQL). Terms are NFKC-normalised, lowercased, stripped of diacritics, and reduced
with Harman's S-stemmer (plurals only: conservative, so "2 s" and "429" survive as written).

>>> terms("On HTTP 429 responses, wait 2 s; retries are idempotent-only.")
['on', 'http', '429', 'response', 'wait', '2', 's', 'retry', 'are', 'idempotent', 'only']
>>> count_tokens("Wait 2 s, then retry.")
7
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+", re.UNICODE)
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def s_stem(word: str) -> str:
    """Harman's (1991) S-stemmer: ies -> y, es -> e, s -> '' with its exceptions.

    >>> [s_stem(w) for w in ("queries", "responses", "bus", "class", "was", "s")]
    ['query', 'response', 'bus', 'class', 'was', 's']
    """
    if len(word) <= 3:
        return word  # "was", "is", "its", "s": too short to be a plural worth folding
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def normalise(text: str) -> str:
    """NFKC, lowercase, diacritics removed (as FTS5's ``remove_diacritics``)."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).lower())
    return "".join(c for c in text if not unicodedata.combining(c))


def terms(text: str) -> list[str]:
    """The BM25 terms of a text, in order, with repeats."""
    return [s_stem(w) for w in _WORD.findall(normalise(text))]


def query_terms(text: str) -> list[str]:
    """Distinct terms of a query, in first-seen order (each counts once in BM25)."""
    return list(dict.fromkeys(terms(text)))


def count_tokens(text: str) -> int:
    """A deterministic token count: words and punctuation marks. Close to BPE counts for English prose
    (a word is ~1.3 BPE tokens); pass a real tokenizer's count to the packer when it matters."""
    return len(_TOKEN.findall(text))
