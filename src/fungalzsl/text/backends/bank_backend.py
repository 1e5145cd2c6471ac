"""``bank``: the offline backend, no model. See ``fungalzsl.text.bank`` for how descriptions are composed."""

from __future__ import annotations

from fungalzsl.text.backends.base import Backend, BackendOptions, Request, Sampling
from fungalzsl.text.bank import BankComposer, load_bank


class BankBackend(Backend):
    kind = "bank"

    def __init__(self, bank_path: str | None, options: BackendOptions) -> None:
        self.bank = load_bank(bank_path or options.bank_path)
        self.model = self.bank.name
        self._composer = BankComposer(self.bank)

    def complete(self, requests: list[Request], sampling: Sampling) -> list[str | BaseException]:
        # The prompt's aspect steers which attributes lead; temperature does not apply to a bank.
        return [
            self._composer.compose(r.cls, r.prompt.aspect, r.seed, sampling.min_words, sampling.max_words)
            for r in requests
        ]

    def class_names(self, cls: str) -> list[str]:
        bc = self.bank.classes.get(cls)
        return bc.names if bc else []
