"""Text-space memory: a typed, versioned, multi-tenant store that learners change only through
validated operations, with hybrid retrieval, a token-budget packer and ledger versioning.

>>> from lifelong.context import open_store, Add, Supersede, HashingEmbedder
>>> store = open_store(":memory:", tenant="alice", create=True, embedder=HashingEmbedder(64))
>>> _ = store.apply([Add("Alice lives in Paris", id="home", kind="fact")])
>>> _ = store.apply([Supersede(id="home", new=Add("Alice lives in Berlin", id="home2", kind="fact"))])
>>> [h.item.id for h in store.search("where does Alice live")], store.get("home").superseded_by
(['home2'], 'home2')
"""

from lifelong.context.embed import Embedder, HashingEmbedder, MiniLMEmbedder, VectorsOnly
from lifelong.context.errors import (
    BlockLimitError,
    DimensionError,
    DuplicateIdError,
    EmbedderMismatchError,
    InvalidOpError,
    ItemNotFoundError,
    MemoryStoreError,
    StalePlanError,
    StoreFormatError,
    StoreLockedError,
    TextEncodingError,
    UnknownTenantError,
)
from lifelong.context.forgetting import (
    Consolidator,
    ContradictionResolver,
    ForgettingPolicy,
    LLMContradiction,
    RuleContradiction,
)
from lifelong.context.items import Item, ItemKind, Provenance, Status, TagValue, Trust
from lifelong.context.notes import NoteLearner
from lifelong.context.ops import Add, Delete, Merge, Op, Supersede, Tag, Update, op_from_dict, ops_from_json
from lifelong.context.packer import Packed, pack
from lifelong.context.plan import Plan
from lifelong.context.ranking import Hit, Weights
from lifelong.context.reflexion import Reflexion
from lifelong.context.skills import Skill, SkillError, SkillLibrary, export_playbook, read_skill, write_skill
from lifelong.context.store import Applied, MemoryStore, open_store
from lifelong.context.tiers import CoreMemory, TieredMemory

__all__ = [
    "Add", "Applied", "BlockLimitError", "Delete", "DimensionError", "DuplicateIdError", "Embedder",
    "EmbedderMismatchError", "HashingEmbedder", "Hit", "InvalidOpError", "Item", "ItemKind", "ItemNotFoundError",
    "MemoryStore", "MemoryStoreError", "Merge", "MiniLMEmbedder", "Op", "Packed", "Plan", "Provenance",
    "StalePlanError", "Status", "StoreFormatError", "StoreLockedError", "Supersede", "Tag", "TagValue",
    "TextEncodingError", "Trust", "UnknownTenantError", "Update", "VectorsOnly", "Weights", "op_from_dict",
    "ops_from_json", "open_store", "pack",
]
# The learners (notes, reflexion, tiers, skills, forgetting).
__all__ += [
    "Consolidator", "ContradictionResolver", "CoreMemory", "ForgettingPolicy", "LLMContradiction", "NoteLearner",
    "Reflexion", "RuleContradiction", "Skill", "SkillError", "SkillLibrary", "TieredMemory", "export_playbook",
    "read_skill", "write_skill",
]
# The ACE playbook learner and its roles.
from lifelong.context.playbook import Playbook, PlaybookLearner, Refiner  # noqa: E402
from lifelong.context.roles import CuratorOutputError, RuleCurator, RuleGenerator, RuleReflector  # noqa: E402

__all__ += ["CuratorOutputError", "Playbook", "PlaybookLearner", "Refiner", "RuleCurator", "RuleGenerator",
            "RuleReflector"]
