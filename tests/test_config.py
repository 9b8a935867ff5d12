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
