"""Device profiles: built-ins by name, user files by path, clear errors for bad input."""
import pytest
from export_helpers import text_file

from groundfloor.errors import BadInput
from firmware_sim.profiles import PROFILE_DIR, builtin_names, load_profile, load_profiles


def test_builtins_load_with_the_documented_figures():
    assert builtin_names() == ["cortex_a53", "cortex_m4f", "cortex_m7", "esp32_s3"]
    m4 = load_profile("cortex_m4f")
    assert (m4.clock_hz, m4.sram_bytes, m4.flash_bytes, m4.device_class) == (80_000_000, 256 * 1024, 1024 * 1024, "mcu")
    m7 = load_profile("cortex_m7")
    assert (m7.clock_hz, m7.sram_bytes, m7.flash_bytes) == (480_000_000, 1024 * 1024, 2 * 1024 * 1024)
    esp = load_profile("esp32_s3")
    assert (esp.clock_hz, esp.sram_bytes, esp.flash_bytes) == (240_000_000, 512 * 1024, 8 * 1024 * 1024)
    a53 = load_profile("cortex_a53")
    assert (a53.clock_hz, a53.sram_bytes, a53.device_class) == (1_200_000_000, 1024 ** 3, "linux")
    for p in (m4, m7, esp, a53):
        assert p.cycles_per_mac("int8") > 0 and p.cycles_per_mac("float32") > 0 and p.cycles_per_instruction > 0


def test_every_numeric_field_in_builtin_files_is_commented_with_unit_or_source():
    for path in PROFILE_DIR.glob("*.toml"):
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                assert "#" in line, f"{path.name}: undocumented field: {line}"


def test_unknown_device_lists_known_names():
    with pytest.raises(BadInput) as e:
        load_profile("cortex_m99")
    msg = str(e.value)
    assert "cortex_m99" in msg and "cortex_m4f" in msg and "esp32_s3" in msg


def _write(tmp_path, text, name="board.toml"):
    return text_file(tmp_path, name, text)


def _m4_text():
    return (PROFILE_DIR / "cortex_m4f.toml").read_text()


def test_user_profile_by_path(tmp_path):
    p = _write(tmp_path, _m4_text().replace('name = "cortex_m4f"', 'name = "my_board"'))
    prof = load_profile(str(p))
    assert prof.name == "my_board" and prof.source_file == str(p)
    assert [q.name for q in load_profiles(f"cortex_m7,{p}")] == ["cortex_m7", "my_board"]


def test_missing_field_names_field_and_file(tmp_path):
    text = "\n".join(l for l in _m4_text().splitlines() if not l.startswith("sram_bytes"))
    p = _write(tmp_path, text)
    with pytest.raises(BadInput) as e:
        load_profile(str(p))
    assert "sram_bytes" in str(e.value) and str(p) in str(e.value)


def test_negative_field_names_field_and_file(tmp_path):
    p = _write(tmp_path, _m4_text().replace("cycles_per_mac_int8 = 1.5", "cycles_per_mac_int8 = -1.5"))
    with pytest.raises(BadInput) as e:
        load_profile(str(p))
    assert "cycles_per_mac_int8" in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize("text, word", [
    ("name = [", "TOML"),
    ('name = "x"\ncore = "c"\ndevice_class = "fpga"\n', "device_class"),
])
def test_malformed_profiles(tmp_path, text, word):
    with pytest.raises(BadInput) as e:
        load_profile(str(_write(tmp_path, text)))
    assert word in str(e.value)


def test_missing_profile_file(tmp_path):
    with pytest.raises(BadInput):
        load_profile(str(tmp_path / "nope.toml"))


@pytest.mark.parametrize("edit, words", [
    (lambda t: t + "\nturbo_mode = true\n", ["unknown field", "turbo_mode"]),
    (lambda t: t.replace("sram_bytes = 262_144", "sram_bytes = 1.5"), ["sram_bytes", "whole number of bytes"]),
    (lambda t: t.replace("clock_hz = 80_000_000", "clock_hz = 0"), ["clock_hz", "> 0"]),
    (lambda t: t.replace("flash_bytes = 1_048_576", "flash_bytes = true"), ["flash_bytes", "must be a number"]),
    (lambda t: t.replace('core = "cortex-m4f"', 'core = " "'), ["core", "non-empty text"]),
])
def test_invalid_field_values_are_refused(tmp_path, edit, words):
    p = _write(tmp_path, edit(_m4_text()))
    with pytest.raises(BadInput) as e:
        load_profile(str(p))
    for w in words + [str(p)]:
        assert w in str(e.value)


def test_optional_fields_default_and_duplicate_names_are_refused(tmp_path):
    text = "\n".join(l for l in _m4_text().splitlines() if not l.startswith("cycles_per_mac_int16"))
    prof = load_profile(str(_write(tmp_path, text)))
    assert prof.cycles_per_mac_int16 == 0.0 and prof.cycles_per_mac("int16") == prof.cycles_per_mac_int8
    with pytest.raises(BadInput, match="given twice: cortex_m4f"):
        load_profiles(["cortex_m4f", str(_write(tmp_path, _m4_text(), "copy.toml"))])


def test_a_bad_profile_gives_exit_code_2_on_the_command_line(tmp_path, capsys):
    from edge.cli import main
    p = _write(tmp_path, _m4_text() + "\nturbo_mode = true\n")
    assert main(["bench", "--models", "seattle_temp", "--devices", str(p)]) == 2
    assert "turbo_mode" in capsys.readouterr().err
