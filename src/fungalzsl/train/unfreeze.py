"""Progressive unfreezing (paper §3): start with the pretrained towers frozen, unfreeze one more layer
group every ``every`` epochs from the top down, per tower, up to a per-tower maximum.

Frozen parts get ``requires_grad=False`` and stay in eval mode (BatchNorm statistics and dropout
frozen too), so the trainer can compute their outputs once per stage and cache them."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fungalzsl.models.base import TOWERS, TwoTowerModel, set_bn_eval
from fungalzsl.models.lora import is_adapted, is_adapter_param


@dataclass
class UnfreezeSchedule:
    """How many top layer groups of each tower are trainable at a given epoch."""

    sizes: dict[str, int]  # layer groups per tower
    every: int = 5  # epochs per stage; 0 = never unfreeze beyond ``start``
    max_unfrozen: dict[str, int | None] | None = None  # None = the whole tower may unfreeze
    start: dict[str, int] | None = None  # groups trainable from epoch 0

    def stage(self, epoch: int) -> int:
        return epoch // self.every if self.every > 0 else 0

    def unfrozen_at(self, epoch: int) -> dict[str, int]:
        out = {}
        for tower in TOWERS:
            size = self.sizes.get(tower, 0)
            cap = (self.max_unfrozen or {}).get(tower)
            cap = size if cap is None else min(cap, size)
            start = (self.start or {}).get(tower, 0)
            out[tower] = max(0, min(start + self.stage(epoch), cap))
        return out

    def frozen_at(self, epoch: int) -> dict[str, int]:
        """Bottom groups frozen per tower: the cacheable prefix."""
        un = self.unfrozen_at(epoch)
        return {t: self.sizes.get(t, 0) - un[t] for t in TOWERS}

    def final_frozen(self, epochs: int) -> dict[str, int]:
        """The fewest frozen groups any epoch of the run will have (where the base cache is cut)."""
        return self.frozen_at(max(0, epochs - 1))

    def changes(self, epochs: int) -> list[int]:
        """Epochs at which the trainable set changes (for docs and logs)."""
        return [e for e in range(1, epochs) if self.unfrozen_at(e) != self.unfrozen_at(e - 1)]


def trainable_groups(model: TwoTowerModel, unfrozen: dict[str, int]) -> list[tuple[str, list[nn.Parameter]]]:
    """(name, params) of the unfrozen layer groups, top group first per tower: the order they unfreeze."""
    groups = model.layer_groups()
    adapted = is_adapted(model)
    out = []
    for tower in TOWERS:
        gs = groups[tower]
        for k in range(unfrozen[tower]):
            i = len(gs) - 1 - k
            out.append((f"{tower}.{i}", group_parameters(gs[i], adapted)))
    return out


def group_parameters(group: nn.Module, adapted: bool) -> list[nn.Parameter]:
    """What training a layer group trains: all of it, or with LoRA adapters only theirs (the base stays)."""
    return [p for n, p in group.named_parameters() if not adapted or is_adapter_param(n)]


def apply_unfreeze(model: TwoTowerModel, unfrozen: dict[str, int]) -> None:
    """Set requires_grad and train/eval modes for this stage: heads, temperature and top groups train."""
    model.requires_grad_(False)
    model.eval()  # frozen parts: BN uses running stats, dropout off, so cached prefixes stay valid
    for p in model.head_parameters():
        p.requires_grad_(True)
    model.logit_scale.requires_grad_(True)
    groups = model.layer_groups()
    adapted = is_adapted(model)
    for tower in TOWERS:
        gs = groups[tower]
        for k in range(unfrozen[tower]):
            group = gs[len(gs) - 1 - k]
            for p in group_parameters(group, adapted):
                p.requires_grad_(True)
            # with adapters the base layers stay in eval (BatchNorm statistics, dropout): only LoRA's
            # own dropout trains
            for name, m in group.named_modules():
                if not adapted or is_adapter_param(name):
                    m.train()
    # A group can share a module with a frozen one (e.g. a container); frozen BN must stay in eval.
    for tower in TOWERS:
        gs = groups[tower]
        for g in gs[: len(gs) - unfrozen[tower]]:
            set_bn_eval(g)


def text_head_parameters(model: TwoTowerModel) -> list[nn.Parameter]:
    """The text tower's projection head, which ``lock_text`` (LiT) keeps out of the optimiser."""
    proj = getattr(model, "text_proj", None)
    if not isinstance(proj, nn.Module):
        from fungalzsl.errors import fail

        raise fail(
            f"lock_text: {type(model).__name__} has no separate text projection head to lock",
            "use lock_text with the lite model, or keep the text side frozen with unfreeze_max text 0",
        )
    return list(proj.parameters())
