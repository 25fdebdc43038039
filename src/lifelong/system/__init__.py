"""One system: a model, a memory, its learners and one set of controls, on one ledger.

- :class:`System` and :class:`Session` (:mod:`lifelong.system.runtime`): scopes per session, routing of
  events to learners, promotions through the gate, :meth:`System.explain` for credit assignment;
- typed learning signals (:mod:`lifelong.system.signals`): :class:`Input`, :class:`Output`,
  :class:`ToolCall`, :class:`ToolOutcome`, :class:`Feedback`, :class:`Implicit`;
- policies in one TOML file (:mod:`lifelong.system.policy`): :class:`Policies`, validated with errors
  that name the key and the fix;
- learners (:mod:`lifelong.system.learners`): :class:`FeedbackMemory` (feedback to memory, gated on a
  feedback suite), :class:`TentLearner` (Tent in a session weight scope) and :class:`ReaderLearner`
  (learn-while-you-read LoRA adapters of a language model, in a session weight scope).

>>> from lifelong.system import Feedback, System
>>> System.__name__, Feedback.kind
('System', 'feedback')
"""

from lifelong.system.learners import (
    LEARNERS,
    FeedbackMemory,
    Learner,
    PromotionResult,
    ReaderLearner,
    TentLearner,
    WeightLearner,
    contains_answer,
)
from lifelong.system.policy import (
    BudgetPolicy,
    GatePolicy,
    LearnerPolicy,
    MonitorPolicy,
    Policies,
    PolicyError,
    PromotionPolicy,
    ResetSpec,
    parse_trigger,
    to_toml,
)
from lifelong.system.runtime import Answerer, Explanation, Reply, Session, System, context_echo_chat
from lifelong.system.signals import SIGNALS, Feedback, Implicit, Input, Output, Signal, ToolCall, ToolOutcome

__all__ = [
    "LEARNERS", "SIGNALS", "Answerer", "BudgetPolicy", "Explanation", "Feedback", "FeedbackMemory", "GatePolicy",
    "Implicit", "Input", "Learner", "LearnerPolicy", "MonitorPolicy", "Output", "Policies", "PolicyError",
    "PromotionPolicy", "PromotionResult", "ReaderLearner", "Reply", "ResetSpec", "Session", "Signal", "System", "TentLearner",
    "ToolCall", "ToolOutcome", "WeightLearner", "contains_answer", "context_echo_chat", "parse_trigger", "to_toml",
]
