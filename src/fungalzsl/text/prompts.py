"""Prompt files: the paper's class-specific prompts (general + colour, structure, development, function),
kept as editable YAML (``prompts/paper.yaml``) so users can change the wording without touching code."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from fungalzsl.errors import fail
from fungalzsl.io import read_text_file


@dataclass(frozen=True)
class Prompt:
    id: str
    aspect: str
    text: str  # with {class}, {min_words}, {max_words} placeholders

    def render(self, cls: str, min_words: int, max_words: int) -> str:
        return self.text.format(**{"class": cls, "min_words": min_words, "max_words": max_words})


@dataclass(frozen=True)
class PromptSet:
    name: str
    system: str
    prompts: tuple[Prompt, ...]

    def system_text(self, min_words: int, max_words: int) -> str:
        return self.system.format(min_words=min_words, max_words=max_words)

    def rendered(self, cls: str, min_words: int, max_words: int) -> list[str]:
        """Every prompt as sent for ``cls``: what an echo in the output would look like."""
        return [p.render(cls, min_words, max_words) for p in self.prompts]


def _check_template(text: str, where: str) -> None:
    try:
        text.format(**{"class": "x", "min_words": 1, "max_words": 2})
    except (KeyError, IndexError, ValueError) as e:
        raise fail(
            f"{where} has a bad placeholder ({e})", "use only {class}, {min_words} and {max_words}"
        ) from None


def load_prompts(path: str | Path | None = None) -> PromptSet:
    """The shipped paper prompts, or the user's prompt file (same layout as prompts/paper.yaml)."""
    if path is None:
        source = "prompts/paper.yaml"
        raw = (resources.files("fungalzsl") / "text" / "prompts" / "paper.yaml").read_text(encoding="utf-8")
    else:
        p = Path(path)
        if not p.is_file():
            raise fail(f"prompt file {p} does not exist", "check the --prompts path")
        source, raw = str(p), read_text_file(p, "prompt file")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise fail(f"{source} is not valid YAML ({str(e).splitlines()[0]})", "fix the prompt file") from None
    if not isinstance(data, dict) or not isinstance(data.get("prompts"), list) or not data["prompts"]:
        raise fail(f"{source} needs a non-empty 'prompts' list", "see src/fungalzsl/text/prompts/paper.yaml")
    prompts = []
    for i, item in enumerate(data["prompts"]):
        where = f"{source}: prompts[{i}]"
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("text"), str)
            or "{class}" not in item["text"]
        ):
            raise fail(f"{where} needs a 'text' string containing {{class}}", "fix the prompt file")
        _check_template(item["text"], where)
        prompts.append(
            Prompt(
                id=str(item.get("id", f"p{i}")), aspect=str(item.get("aspect", "general")), text=item["text"]
            )
        )
    if len({p.id for p in prompts}) != len(prompts):
        raise fail(f"{source}: prompt ids must be unique", "rename the duplicates")
    system = data.get("system") or ""
    if not isinstance(system, str):
        raise fail(f"{source}: 'system' must be a string", "fix the prompt file")
    _check_template(system, f"{source}: system")
    return PromptSet(name=Path(source).stem, system=system.strip(), prompts=tuple(prompts))
