"""Multi-digit addition with a checkable scratchpad: the verifiable task family of the self-improvement
benchmark.

A problem ``Q:347+86=`` is answered with a rationale, right to left, one column per step with its carry,
then the answer: ``7+6+0=13;4+8+1=13;3+0+1=4;A:433``. The answer is checked exactly (the verifier), and
the rationale is checkable too, so the share of right answers reached by wrong reasoning (STaR's known
weakness) can be measured. A *hinted* prompt ``H:433|Q:347+86=`` gives the answer away; STaR's
rationalization asks for a rationale under such a hint and keeps it, without the hint, if it reaches the
answer.

>>> p = Problem(347, 86)
>>> p.prompt(), p.rationale()
('Q:347+86=', '7+6+0=13;4+8+1=13;3+0+1=4;A:433')
>>> parse_answer("7+6+0=13;A:433"), rationale_is_valid(p, p.rationale())
(433, True)
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

CHARS = "0123456789+=;:|AHQ\n"
_ANSWER = re.compile(r"A:(\d+)")
_STEP = re.compile(r"^(\d)\+(\d)\+(\d)=(\d+)$")


@dataclass(frozen=True)
class Problem:
    """a + b, with a stable id."""

    a: int
    b: int

    @property
    def id(self) -> str:
        """A stable item id."""
        return f"{self.a}+{self.b}"

    @property
    def answer(self) -> int:
        """The true sum."""
        return self.a + self.b

    def prompt(self, hint: bool = False) -> str:
        """The question, optionally with the answer given away as a hint."""
        return (f"H:{self.answer}|" if hint else "") + f"Q:{self.a}+{self.b}="

    def rationale(self) -> str:
        """The correct scratchpad and answer."""
        xs, ys = str(self.a)[::-1], str(self.b)[::-1]
        carry, steps = 0, []
        for i in range(max(len(xs), len(ys))):
            x = int(xs[i]) if i < len(xs) else 0
            y = int(ys[i]) if i < len(ys) else 0
            total = x + y + carry
            steps.append(f"{x}+{y}+{carry}={total}")
            carry = total // 10
        return ";".join(steps) + f";A:{self.answer}"

    @property
    def digits(self) -> int:
        """Digits of the longer operand."""
        return max(len(str(self.a)), len(str(self.b)))


def parse_answer(text: str) -> int | None:
    """The integer after ``A:``, or None when the output has no well-formed answer."""
    m = _ANSWER.search(text)
    return int(m.group(1)) if m else None


def answer_is_correct(problem: Problem, text: str) -> bool:
    """The verifier: the stated answer equals the true sum (anything malformed is wrong)."""
    return parse_answer(text) == problem.answer


def rationale_is_valid(problem: Problem, text: str) -> bool:
    """Every column step is right, uses the right digits and carries, and leads to the answer."""
    body, _, _ = text.partition(";A:")
    steps = body.split(";") if body else []
    return steps == problem.rationale().partition(";A:")[0].split(";") and answer_is_correct(problem, text)


def sample_problems(n: int, digits: tuple[int, int], seed: int, exclude: set[str] | None = None) -> list[Problem]:
    """``n`` distinct problems whose operands have between digits[0] and digits[1] digits."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    out: list[Problem] = []
    guard = 0
    while len(out) < n:
        guard += 1
        if guard > 100 * n:
            raise ValueError(f"cannot draw {n} distinct problems with {digits} digits; widen the range")
        da, db = rng.randint(*digits), rng.randint(*digits)
        a = rng.randint(10 ** (da - 1) if da > 1 else 0, 10**da - 1)
        b = rng.randint(10 ** (db - 1) if db > 1 else 0, 10**db - 1)
        p = Problem(a, b)
        if p.id not in seen:
            seen.add(p.id)
            out.append(p)
    return out
