import pytest

from edge.config import load_config
from groundfloor.errors import BadInput


def test_default_config_has_the_reference_zoo():
    cfg = load_config()
    assert {"seattle_temp", "victoria_demand", "japanese_vowels"} <= set(cfg.models)
    assert cfg.models["japanese_vowels"].kind == "classification"
    assert "cortex_m4f" in cfg.devices


@pytest.mark.parametrize("text,expected", [
    ("colour = 1", "unknown key 'colour'"),
    ("[models.a]\ntask = 'nope'", "unknown reference task 'nope'"),
    ("[models.a]\npath = 'm.keras'", "missing 'data'"),
    ("[models.a]\ntask = 'seattle_temp'\nepochs = 3", "unknown key 'models.a.epochs'"),
    ("devices = 'cortex_m4f'", "devices must be a list"),
    ("x = [", "invalid TOML"),
])
def test_bad_config_is_one_clear_line(tmp_path, text, expected):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(BadInput) as e:
        load_config(p)
    assert expected in str(e.value) and "c.toml" in str(e.value)


def test_every_command_checks_the_whole_config_before_it_runs(tmp_path, capsys):
    """A broken budget table stops `edge export` at once, not only `edge check` after the export."""
    from edge.cli import main
    from edge.config import DEFAULT_CONFIG
    bad = tmp_path / "bad.toml"
    text = DEFAULT_CONFIG.read_text()
    bad.write_text(text.replace("\nmax_rmse_increase = 0.", '\nmax_rmse_increase = "x"  # 0.', 1))
    assert bad.read_text() != text
    from edge.budgets import budgets_from_config
    with pytest.raises(BadInput):   # the table really is broken (a test of the test)
        budgets_from_config(load_config(bad))
    assert main(["--config", str(bad), "export", "--artifacts-dir", str(tmp_path / "art")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.toml" in err[0] and "max_rmse_increase" in err[0]
    assert not (tmp_path / "art").exists()
