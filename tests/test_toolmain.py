"""edge.toolmain, the frame of the `python -m edge.X` maintenance tools: their parsers keep their
options and defaults, bad input is one line and exit 2, a campaign's verdict writes its report."""
import json
from pathlib import Path

import pytest

from edge import faults, fuzz, readme_figures, spread, toolmain
from groundfloor.errors import BadInput


def _options(main, monkeypatch) -> dict:
    """The options main's parser gives for an empty command line (the body is not run)."""
    got = {}
    monkeypatch.setattr(toolmain, "run", lambda p, argv, body: got.update(vars(p.parse_args(argv))) or 0)
    main([])
    return got


def test_each_tool_keeps_its_options_and_defaults(monkeypatch):
    assert _options(faults.main, monkeypatch) == {"out": Path("reports/faults.json"), "kills": 20, "seed": 0,
                                                  "work": Path("reports/faults")}
    assert _options(fuzz.main, monkeypatch) == {"artifacts": Path("artifacts"), "out": Path("reports/fuzz.json"),
                                                "models": 2000, "bad_inputs": 200, "seed": 0, "keep_crashers": None}
    assert _options(readme_figures.main, monkeypatch) == {"artifacts": Path("artifacts"), "reports": Path("reports"),
                                                          "readme": Path("README.md")}
    assert _options(spread.main, monkeypatch) == {"artifacts": Path("artifacts"), "out": Path("reports/spread.json"),
                                                  "models": None, "cpus": None, "max_windows": None,
                                                  "streaming": False, "no_conversion": False}


def test_parser_is_named_after_the_tool_and_described_by_its_first_paragraph():
    p = toolmain.parser("faults", faults.__doc__, out="reports/faults.json")
    assert p.prog == "python -m edge.faults"
    assert p.description.startswith("Kill -9") and p.description.endswith("rebuilding only what is missing.")


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    def body(artifacts, out):
        raise BadInput(artifacts, "no manifest.json")
    p = toolmain.parser("spread", spread.__doc__, artifacts=True, out="reports/spread.json")
    assert toolmain.run(p, ["--artifacts", str(tmp_path)], body) == 2
    err = capsys.readouterr().err
    assert err == f"edge.spread: error: {tmp_path}: no manifest.json\n"
    assert spread.main(["--cpus", "Pentium", "--out", str(tmp_path / "s.json")]) == 2   # before measuring
    assert capsys.readouterr().err.startswith("edge.spread: error: unknown CPU Pentium")
    assert not (tmp_path / "s.json").exists()
    with pytest.raises(SystemExit) as e:                                  # argparse's own refusals
        spread.main(["--no-such-option"])
    assert e.value.code == 2


def test_verdict_writes_the_report_and_returns_the_exit_code(tmp_path, capsys):
    assert toolmain.verdict(tmp_path / "r.json", {"n": 1}, True, ": 1 run") == 0
    assert json.loads((tmp_path / "r.json").read_text()) == {"n": 1}
    assert capsys.readouterr().out == f"-> {tmp_path / 'r.json'}: PASS: 1 run\n"
    assert toolmain.verdict(tmp_path / "r.json", {"n": 2}, False, "") == 1
    assert capsys.readouterr().out == f"-> {tmp_path / 'r.json'}: FAIL\n"
    assert json.loads((tmp_path / "r.json").read_text()) == {"n": 2}


def test_faults_and_fuzz_mains_end_in_their_verdicts(tmp_path, monkeypatch, capsys):
    """The wiring of two tools' mains (their campaigns stubbed: tests/test_hardening.py runs fuzz's)."""
    found = {"kills": 2, "finished_before_kill": 1, "inconsistent": ["kill 0: manifest.json does not parse"]}
    monkeypatch.setattr(faults, "campaign", lambda work, kills, seed: {**found, "asked": [kills, seed]})
    out = tmp_path / "faults.json"
    assert faults.main(["--kills", "2", "--seed", "5", "--work", str(tmp_path / "w"), "--out", str(out)]) == 1
    assert json.loads(out.read_text())["asked"] == [2, 5]
    assert capsys.readouterr().out == (f"-> {out}: FAIL: 2 kills (1 runs finished first), 1 inconsistencies\n"
                                       "    kill 0: manifest.json does not parse\n")
    clean = {"crashes": 0, "hangs": 0, "escaped_errors": 0, "hash_known:refused": 3}
    monkeypatch.setattr(fuzz, "run_models", lambda *a, **k: clean)
    monkeypatch.setattr(fuzz.fuzz_cli, "find_source", lambda artifacts: artifacts)
    monkeypatch.setattr(fuzz.fuzz_cli, "run", lambda *a, **k: {"data": {"one_line_exit_2": 4}})
    out = tmp_path / "fuzz.json"
    assert fuzz.main(["--models", "3", "--bad-inputs", "4", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["models"] == clean
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"-> {out}: PASS (crashes 0, hangs 0, exceptions escaping the API 0, hash-known corruptions not "
        "refused 0, bad inputs to `edge export` all one line, exit 2, existing export untouched)")
