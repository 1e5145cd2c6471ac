"""The batch losses of the contrastive objective, one class each (``train.loss`` picks one):

* :class:`MultiPositiveContrastiveLoss` (``multi_positive``, the default): the paper's Eq. 7–9;
* :class:`ClipContrastiveLoss` (``clip``): the standard one-positive CLIP loss;
* :class:`SigmoidContrastiveLoss` (``sigmoid``): SigLIP's pairwise loss, with a learnable bias.

With many images of the same class in a batch, the one-positive CLIP loss punishes the model for
matching an image to a *correct* description that happens to be paired with another image. Eq. 7–8
instead average the log-softmax over every same-class text (P_q) or image (P_r):

    L_image = -1/N Σ_q 1/|P_q| Σ_{r∈P_q} log softmax_r(S_qr / τ)
    L_text  = -1/N Σ_r 1/|P_r| Σ_{q∈P_r} log softmax_q(S_qr / τ)
    L_total = L_image + L_text                                    (Eq. 9: a sum, not a mean)

The loss has a floor above zero (:func:`multi_positive_floor`). Row q's term is the mean of
−log p_r over its |P_q| positives with Σ_r p_r = 1, smallest when the softmax splits evenly over the
positives and gives the negatives nothing: −log(1/|P_q|) = ln |P_q|. Positives of row q and column q
are the images of q's class in the batch (n_y of them), so the infimum, reached as τ → 0 by a model
that maps every class to one point, is

    floor = 2 · (1/N) Σ_q ln n_{y_q} = 2 · Σ_k (n_k/N) ln n_k      ≈ 2 · ln(B/K) for B images, K balanced classes

(64 images of 3 classes: 2·ln(64/3) ≈ 6.12), so a training loss near it means converged, not stuck.

``loss: sigmoid`` is SigLIP's pairwise binary loss (Zhai et al. 2023) with the same multi-positive
labels: every (image, text) pair of the batch is an independent binary problem, positive when both are
of the same class, with a learnable bias b (SigLIP checkpoints bring theirs; other models start at −10,
the paper's value, so the many negatives do not dominate the first steps):

    L = -1/N Σ_q Σ_r log σ(z_qr · (S_qr / τ + b)),   z_qr = +1 if same class else −1

Under DDP, features and labels of every rank are gathered *with gradients*
(``torch.distributed.nn.functional.all_gather``) so the negatives span the global batch."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank, keeping the autograd graph (the plain all_gather cuts it)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def gather_labels(labels: torch.Tensor) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return labels
    out = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(out, labels)
    return torch.cat(out)


def multi_positive_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    labels: torch.Tensor,
    scale: torch.Tensor,
    positives: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_image, L_text) for normalised features (N, D), class ``labels`` (N,) and ``scale`` = 1/τ.

    ``positives`` (N, N) bool, when given, replaces "same class" as P_q (row q) and P_r (column r):
    with grounded captions a caption is a positive of its own image only (train.inputs)."""
    logits = scale * image.float() @ text.float().T  # S_qr / τ, rows = images, columns = texts
    pos = same_class(labels) if positives is None else positives.float()
    l_image = -((pos * F.log_softmax(logits, dim=1)).sum(1) / pos.sum(1)).mean()
    l_text = -((pos * F.log_softmax(logits, dim=0)).sum(0) / pos.sum(0)).mean()
    return l_image, l_text


def same_class(labels: torch.Tensor) -> torch.Tensor:
    """(N, N) float: 1 where image q and text r are of the same class (P_q per row, P_r per column)."""
    return (labels[:, None] == labels[None, :]).float()


def multi_positive_floor(labels: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
    """The smallest value L_image + L_text can take on a batch with these class ``labels``:
    2 · mean over images of ln(number of same-class images in the batch). With ``positives`` (N, N):
    mean ln |P_q| over rows + mean ln |P_r| over columns (the same number when they are same-class)."""
    if positives is not None:
        p = positives.double()
        return p.sum(1).log().mean() + p.sum(0).log().mean()
    counts = torch.bincount(labels)[labels].double()
    return 2.0 * counts.log().mean()


def balanced_floor(batch_size: int, num_classes: int) -> float:
    """:func:`multi_positive_floor` of a batch of ``batch_size`` images, ``num_classes`` balanced classes."""
    return 2.0 * math.log(batch_size / num_classes)


def clip_loss(
    image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The standard CLIP loss: pair i is the only positive of row and column i."""
    logits = scale * image.float() @ text.float().T
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target), F.cross_entropy(logits.T, target)


SIGMOID_INIT_BIAS = -10.0


def sigmoid_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    labels: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """SigLIP's loss with same-class pairs (or ``positives``) as positives, summed over pairs and
    averaged over images."""
    logits = scale * image.float() @ text.float().T + bias
    sign = 2.0 * (same_class(labels) if positives is None else positives.float()) - 1.0
    return -F.logsigmoid(sign * logits).sum() / logits.shape[0]


class ContrastiveLoss(nn.Module):
    """A loss over the (global) batch of N normalised image and text features with class labels and
    ``scale`` = 1/τ, returning {"loss", "loss_image", "loss_text"}. ``gather=True`` first collects
    features and labels of every DDP rank, so the negatives span the global batch."""

    def __init__(self, gather: bool = True):
        super().__init__()
        self.gather = gather

    def forward(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        labels: torch.Tensor,
        scale: torch.Tensor,
        positives: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``positives`` (N, N) bool replaces same-class positives; it is per process (not gathered),
        so the trainer refuses it under DDP."""
        if self.gather and positives is None:
            image, text, labels = gather_with_grad(image), gather_with_grad(text), gather_labels(labels)
        return self.batch_loss(image, text, labels, scale, positives)

    def batch_loss(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        labels: torch.Tensor,
        scale: torch.Tensor,
        positives: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError  # each subclass is one loss


class MultiPositiveContrastiveLoss(ContrastiveLoss):
    """The paper's loss (Eq. 7–9): L_total = L_image + L_text, every same-class pair a positive."""

    def batch_loss(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        labels: torch.Tensor,
        scale: torch.Tensor,
        positives: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        l_image, l_text = multi_positive_loss(image, text, labels, scale, positives)
        floor = multi_positive_floor(labels, positives)  # of the gathered batch: the one the loss is over
        return {"loss": l_image + l_text, "loss_image": l_image, "loss_text": l_text, "floor": floor}


class ClipContrastiveLoss(ContrastiveLoss):
    """The standard one-positive CLIP loss: pair i is the only positive of row and column i."""

    def batch_loss(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        labels: torch.Tensor,
        scale: torch.Tensor,
        positives: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        l_image, l_text = clip_loss(image, text, scale)
        return {"loss": l_image + l_text, "loss_image": l_image, "loss_text": l_text}


class SigmoidContrastiveLoss(ContrastiveLoss):
    """SigLIP's pairwise loss with same-class positives (:func:`sigmoid_loss`). Its learnable bias b is
    this module's parameter ``logit_bias``: the trainer optimises it with the temperature and keeps it
    in the resume checkpoint as ``extra.logit_bias``."""

    def __init__(self, gather: bool = True, init_bias: float | None = None):
        super().__init__(gather)
        self.logit_bias = nn.Parameter(
            torch.tensor(SIGMOID_INIT_BIAS if init_bias is None else float(init_bias))
        )

    def batch_loss(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        labels: torch.Tensor,
        scale: torch.Tensor,
        positives: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        # the pair sum is symmetric in images and texts: report half on each side so that
        # loss = loss_image + loss_text holds as for the contrastive losses
        total = sigmoid_loss(image, text, labels, scale, self.logit_bias, positives)
        return {"loss": total, "loss_image": total / 2, "loss_text": total / 2}


def contrastive_loss(name: str, init_bias: float | None = None) -> ContrastiveLoss:
    """The loss ``train.loss`` names; ``init_bias`` is the model's own sigmoid bias (SigLIP), if any."""
    if name == "sigmoid":
        return SigmoidContrastiveLoss(init_bias=init_bias)
    if name == "clip":
        return ClipContrastiveLoss()
    if name == "multi_positive":
        return MultiPositiveContrastiveLoss()
    raise ValueError(f"unknown contrastive loss {name!r}")  # TrainConfig admits only the three
