"""The command line: every ledger command on a real ledger, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from lifelong.cli import app
from lifelong.control.gate import Gate, PairedScores
from lifelong.control.ledger import Ledger
from lifelong.core import Change

runner = CliRunner()


@pytest.fixture()
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as led:
        led.commit("model/global", tensors={"w": torch.zeros(4), "b": torch.ones(2)}, message="base")
        verdict = Gate(n_resamples=100).decide(PairedScores("feedback", [0] * 40 + [1] * 60, [1] * 100))
        change = Change("weights", "session", "tent", tensors={"w": torch.full((4,), 0.5)})
        led.record_change("model/global", change, verdict)
    return path


def invoke(*args: str):  # noqa: ANN201
    return runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})


def test_help_explains_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("demo", "bench", "log", "show", "diff", "rollback", "checkout", "verify"):
        assert command in result.output
    assert "governor" in invoke("demo", "--help").output


def test_log_show_diff_rollback_checkout_verify(ledger_path: Path, tmp_path: Path) -> None:
    log = invoke("log", "--ledger", str(ledger_path))
    assert log.exit_code == 0 and "commit" in log.output and "base" in log.output
    show = invoke("show", "model/global", "--ledger", str(ledger_path))
    assert show.exit_code == 0 and "tent" in show.output and "ACCEPT" in show.output
    with Ledger.open(ledger_path) as led:
        first = led.log("model/global")[-1].to_version
    diff = invoke("diff", first[:10], "model/global", "--ledger", str(ledger_path))
    assert diff.exit_code == 0 and "w" in diff.output and "changed" in diff.output and "1 changed" in diff.output
    back = invoke("rollback", "--ledger", str(ledger_path), "--reason", "testing")
    assert back.exit_code == 0 and first[:12] in back.output
    out = tmp_path / "w.safetensors"
    assert invoke("checkout", "model/global", "--out", str(out), "--ledger", str(ledger_path)).exit_code == 0
    assert torch.equal(load_file(str(out))["w"], torch.zeros(4))
    verify = invoke("verify", "--ledger", str(ledger_path))
    assert verify.exit_code == 0 and "ledger ok" in verify.output
    as_json = invoke("log", "--json", "--type", "rollback", "--ledger", str(ledger_path))
    assert '"type": "rollback"' in as_json.output and "testing" in as_json.output


def test_bad_input_gets_clear_errors(ledger_path: Path, tmp_path: Path) -> None:
    missing = invoke("log", "--ledger", str(tmp_path / "missing.db"))
    assert missing.exit_code == 1 and "no ledger at" in missing.output
    junk = tmp_path / "junk.db"
    junk.write_text("not a database at all" * 20)
    bad = invoke("log", "--ledger", str(junk))
    assert bad.exit_code == 1 and "not a lifelong ledger" in bad.output
    unknown = invoke("show", "abcdef12", "--ledger", str(ledger_path))
    assert unknown.exit_code == 1 and "no version starts with" in unknown.output
    assert invoke("bench", "nope").exit_code == 1
    assert not (tmp_path / "missing.db").exists()
