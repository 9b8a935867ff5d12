"""One definition of manifest.json and bench.json: the docs page shows it, the writers and the
report tests' fixture follow it, and the check catches what a reader would trip over."""
import copy
from pathlib import Path

import pytest

from groundfloor import contracts
from groundfloor.fileio import read_json
from test_report import make_fake

ROOT = Path(__file__).resolve().parent.parent


def test_docs_page_shows_the_current_schemas():
    page = (ROOT / "docs" / "CONTRACTS.md").read_text()
    assert contracts.docs_with_schemas(page) == page, \
        "docs/CONTRACTS.md is stale: run `python -m groundfloor.contracts docs/CONTRACTS.md`"
    for kind in contracts.SCHEMAS:
        assert contracts.BEGIN.format(kind=kind) in page


def test_report_fixture_follows_the_contracts(tmp_path):
    make_fake(tmp_path, streaming=True, emulated=True, per_step=True, quant_search=True)
    contracts.require("manifest", read_json(tmp_path / "artifacts" / "tiny" / "manifest.json"))
    contracts.require("bench", read_json(tmp_path / "reports" / "tiny" / "bench.json"))


def _manifest(tmp_path):
    make_fake(tmp_path)
    return read_json(tmp_path / "artifacts" / "tiny" / "manifest.json")


@pytest.mark.parametrize("break_it, found", [
    (lambda m: m.pop("float_metric"), "float_metric: missing"),
    (lambda m: m["source"].update(params="100"), "source.params: expected int, got str"),
    (lambda m: m["artifacts"]["tflite_int8"].update(bytes=True), "artifacts.tflite_int8.bytes: expected int"),
    (lambda m: m["artifacts"]["tflite_int8"].pop("status"), "artifacts.tflite_int8.status: missing"),
    (lambda m: m.update(artifacts=[]), "artifacts: expected an object"),
])
def test_departures_are_named(tmp_path, break_it, found):
    m = _manifest(tmp_path)
    assert contracts.problems(contracts.MANIFEST, m) == []
    broken = copy.deepcopy(m)
    break_it(broken)
    assert any(p.startswith(found) for p in contracts.problems(contracts.MANIFEST, broken))
    with pytest.raises(contracts.ContractBroken, match=found.split(":")[0]):
        contracts.require("manifest", broken)


def test_optional_and_nullable_keys(tmp_path):
    m = _manifest(tmp_path)
    art = m["artifacts"]["tflite_int8"]
    art.pop("ops")                  # optional: a failed artifact has no ops
    art["error"] = None             # nullable: the streaming twins write null
    m["extra_figure"] = 1           # open records: a new key does not break readers
    assert contracts.problems(contracts.MANIFEST, m) == []
