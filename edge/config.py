"""The pipeline config (TOML): models, devices, budgets. Unknown keys are errors, not
silently ignored, so a typo in a budget never turns a CI gate off."""
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from groundfloor.errors import BadInput

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")
TOP_KEYS = {"artifacts_dir", "reports_dir", "devices", "models", "budgets"}
MODEL_KEYS = {"task", "path", "data", "kind"}
KINDS = {"regression", "classification"}
# A model name becomes a folder under artifacts/ and reports/: no separators, no "..", so a
# config (or `edge export --name`) can never make the toolkit write outside those folders.
MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def refuse_unknown_keys(path, table: dict, allowed, where: str = ""):
    """BadInput naming the first key of a config table that is not `allowed` (and the allowed ones);
    `where` is the table's dotted prefix ("models.x.")."""
    bad = set(table) - set(allowed)
    if bad:
        raise BadInput(path, f"unknown key '{where}{sorted(bad)[0]}' (allowed: {', '.join(sorted(allowed))})")


def check_model_name(name, where) -> str:
    if not isinstance(name, str) or not MODEL_NAME.match(name) or ".." in name:
        raise BadInput(where, f"model name {name!r}: use letters, digits, '_', '-' and '.' (at most 64, "
                              "not starting with '.' or '-', no '..'): it names folders under artifacts/ "
                              "and reports/")
    return name


@dataclass
class ModelEntry:
    name: str
    task: str | None = None
    path: Path | None = None
    data: Path | None = None
    kind: str = "regression"


@dataclass
class Config:
    path: Path
    artifacts_dir: Path
    reports_dir: Path
    devices: list
    models: dict
    budgets: dict = field(default_factory=dict)

    def model(self, name) -> ModelEntry:
        check_model_name(name, self.path)
        if name in self.models:
            return self.models[name]
        # A model exported with `edge export --model ...` is usable by name without a config entry.
        manifest = self.artifacts_dir / name / "manifest.json"
        if manifest.exists():
            import json
            kind = json.loads(manifest.read_text()).get("task", "regression")
            return ModelEntry(name, kind=kind)
        raise BadInput(self.path, f"no model '{name}' in the config or in {self.artifacts_dir}/; "
                                  f"known: {', '.join(self.models)}")

    def select(self, names=None):
        if not names:
            return list(self.models.values())
        return [self.model(n) for n in names]


def load_config(path=None) -> Config:
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise BadInput(path, "config file not found")
    except UnicodeDecodeError as e:
        raise BadInput(path, f"not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(path, f"invalid TOML: {e}")
    refuse_unknown_keys(path, raw, TOP_KEYS)
    base = path.parent if path != DEFAULT_CONFIG else Path.cwd()
    models = {}
    for name, entry in raw.get("models", {}).items():
        check_model_name(name, path)
        if not isinstance(entry, dict):
            raise BadInput(path, f"models.{name} must be a table")
        refuse_unknown_keys(path, entry, MODEL_KEYS, f"models.{name}.")
        if "task" in entry:
            from edge.tasks import TASKS
            if entry["task"] not in TASKS:
                raise BadInput(path, f"models.{name}.task: unknown reference task '{entry['task']}'; known: {', '.join(TASKS)}")
            models[name] = ModelEntry(name, task=entry["task"], kind=TASKS[entry["task"]].kind)
        else:
            for k in ("path", "data"):
                if k not in entry:
                    raise BadInput(path, f"models.{name} needs 'task', or both 'path' and 'data' (missing '{k}')")
            kind = entry.get("kind", "regression")
            if kind not in KINDS:
                raise BadInput(path, f"models.{name}.kind must be one of {', '.join(sorted(KINDS))}, not '{kind}'")
            models[name] = ModelEntry(name, path=base / entry["path"], data=base / entry["data"], kind=kind)
    devices = raw.get("devices", [])
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise BadInput(path, "devices must be a list of profile names or profile file paths")
    return Config(path=path, artifacts_dir=Path(raw.get("artifacts_dir", "artifacts")),
                  reports_dir=Path(raw.get("reports_dir", "reports")), devices=devices, models=models,
                  budgets=raw.get("budgets", {}))
