"""A rich progress bar for training (loss, lr, s/it) and one summary line per epoch on stderr."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class TrainProgress:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.progress: Progress | None = None
        self.task: Any = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if not self.enabled:
            return
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[s_it]:.3f} s/it"
            ),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,  # logs get the per-epoch line instead
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=steps, epoch=f"{epoch + 1}/{epochs}", loss=0.0, lr=0.0, s_it=0.0
        )

    def advance(self, loss: float, lr: float, s_it: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, loss=loss, lr=lr, s_it=s_it)

    def end_epoch(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def log_epoch(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        val = rec["val_recall@1"]
        val_s = f"val R@1 {val:.4f}" if val is not None else "no val split"
        un = rec["unfrozen"]
        self.console.print(
            f"epoch {rec['epoch']}: loss {rec['train_loss']:.4f}  {val_s}  "
            f"unfrozen image {un['image']} text {un['text']}  {rec['epoch_s']:.1f}s"
            + ("  *best" if rec["best"] else ""),
            highlight=False,
        )

    def log_finish(self, result: dict[str, Any], batch_size: int, num_classes: int) -> None:
        """The last epoch's loss beside the loss's floor, so a loss that stopped falling there reads as
        converged, not stuck."""
        if not self.enabled or result.get("final_train_loss") is None:
            return
        self.console.print(finish_line(result, batch_size, num_classes), highlight=False)


def finish_line(result: dict[str, Any], batch_size: int, num_classes: int) -> str:
    """``final loss 6.14 (floor 6.12 for batch 64, 3 classes)``; the floor only for losses with one."""
    line = f"final loss {result['final_train_loss']:.2f}"
    floor = result.get("loss_floor")
    if floor is not None:
        line += (
            f" (floor {floor:.2f} for batch {batch_size}, {num_classes} classes: every image has"
            f" ~{batch_size / num_classes:.0f} same-class positives, so the multi-positive loss"
            f" cannot go below ~2·ln({batch_size}/{num_classes}))"
        )
    return line
