"""Every benchmark script runs under `make bench` (`--quick`) and ends with a `RESULT key=value` line."""

import ast
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_takes_quick_and_prints_a_result_line(script):
    tree = ast.parse(script.read_text(encoding="utf-8"))
    flags = {
        arg.value
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "add_argument"
        for arg in call.args
        if isinstance(arg, ast.Constant)
    }
    strings = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    assert "--quick" in flags, f"{script.name}: no --quick flag (make bench passes it)"
    assert any(s.startswith("RESULT ") for s in strings), f"{script.name}: prints no RESULT line"
