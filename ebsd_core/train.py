"""Fine-tune (or train from scratch) a CNN on a few labelled patterns per class.

AdamW with linear warm-up and cosine decay, label smoothing, class-preserving
augmentations, early stopping on validation loss (the best epoch's weights are
kept), an optional frozen-backbone warm-up, channels_last, and on CUDA the
augmentation on the GPU and bf16 autocast from 128 px inputs. A progress callback
receives :class:`TrainProgress`; ``should_stop`` cancels between batches.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ebsd_core.augment import NOMINAL_PC, AugmentConfig, augment_batch
from ebsd_core.backbones import (
    DEFAULT_FINETUNE_LR,
    classifier_parameters,
    create_model,
    finetune_lr,
    select_device,
)
from ebsd_core.depthwise import fast_depthwise_grads
from ebsd_core.errors import CancelledError, ModelError
from ebsd_core.evaluate import evaluate_predictions
from ebsd_core.fewshot import FewShotSplit, few_shot_split
from ebsd_core.inference import autocast_context, bf16_check, predict_tensor
from ebsd_core.io.dataset import Dataset, take
from ebsd_core.preprocess import PreprocessConfig, bin_patterns, preprocess, square_crop_pc
from ebsd_core.rehearsal import Rehearsal, rehearsal_for, repeats_for
from ebsd_core.shared_state import GLOBAL_RNG
from ebsd_core.store import META, ModelCard, load_model, resolve_model_dir

BF16_CHECK_PATTERNS = 256
SCRATCH_LR = 3e-3
MIN_STEPS_PER_EPOCH = 25  # few-shot sets are tiny: an epoch is at least this many batches (8 gave 0.61, 25 gave 0.75)


@dataclass
class TrainConfig:
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    weights_file: str | None = None
    channel_mode: str = "adapt"
    input_size: int = 64
    shots: int = 20
    epochs: int = 30
    batch_size: int = 32
    lr: float | None = None  # default: see learning_rate
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    frozen_warmup_epochs: int = 0
    patience: int = 8
    seed: int = 0
    device: str = "auto"
    augment: bool = True
    val_per_class: int = 10
    unknown_threshold: float = 0.5
    views: int = 4  # test-time views the model predicts with (stored in its card): +0.03-0.04 accuracy
    # the other views only for patterns whose first view's top probability is below this (stored in its card):
    # the same answers as every pattern getting every view, for a fraction of the work (bench/RESULTS.md)
    views_below: float | None = 0.8
    min_steps_per_epoch: int = MIN_STEPS_PER_EPOCH
    # > 0: simulate this many patterns per space group of the start model's materials (weights_file must be an
    # EBSD prior or a model trained on simulated patterns) and train on them alongside the shots, weighted equally
    # (ebsd_core.rehearsal)
    rehearsal_per_class: int = 0
    rehearsal_source: str = "prior"  # or "catalogue": every catalogue material the dataset does not name
    augment_config: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def learning_rate(self) -> float:
        """``lr``, or by default: the backbone's fine-tuning rate from its ImageNet weights, 1e-3 from a
        weights file or saved model (an EBSD prior), and 3e-3 from scratch."""
        if self.lr is not None:
            return self.lr
        if not self.pretrained:
            return SCRATCH_LR
        return DEFAULT_FINETUNE_LR if self.weights_file else finetune_lr(self.backbone)

    def to_dict(self) -> dict:
        return asdict(self) | {"learning_rate": self.learning_rate}

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """The inverse of :meth:`to_dict` (unknown keys are ignored). The recorded ``learning_rate`` is kept,
        so that a job queued before a default changed resumes at the rate it was queued with."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "augment_config"}
        if known.get("lr") is None and data.get("learning_rate") is not None:
            known["lr"] = float(data["learning_rate"])
        augment = data.get("augment_config") or {}
        fields = AugmentConfig.__dataclass_fields__
        known["augment_config"] = AugmentConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in augment.items() if k in fields}
        )
        return cls(**known)


@dataclass
class TrainProgress:
    epoch: int
    epochs: int
    batch: int
    batches: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    eta_seconds: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, ((self.epoch - 1) + self.batch / max(self.batches, 1)) / max(self.epochs, 1))


@dataclass
class TrainResult:
    model: nn.Module
    card: ModelCard
    split: FewShotSplit
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    best_epoch: int = 0


def initial_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The network before training: ImageNet or scratch, a weights file, or a saved model of the store.

    ``config.weights_file`` may name a saved model (a folder such as ``models/prior`` or a bare
    store name), e.g. an EBSD prior from :mod:`ebsd_core.prior`: its checksum is verified, its
    backbone and channel mode must match, and its classifier is kept only if the classes match.
    """
    weights = config.weights_file
    folder = resolve_model_dir(weights) if weights and not Path(weights).is_file() else None
    if folder is None or not (folder / META).is_file():
        return create_model(config.backbone, num_classes, config.pretrained, weights, config.channel_mode)
    donor, card = load_model(folder)
    if (card.backbone, card.channel_mode) != (config.backbone, config.channel_mode):
        raise ModelError(
            f"this model is {card.backbone} with {card.channel_mode} channels; the training asks for "
            f"{config.backbone} with {config.channel_mode} channels: choose the same backbone to start from it",
            folder,
        )
    return create_model(
        config.backbone,
        num_classes,
        pretrained=False,
        channel_mode=config.channel_mode,
        initial_state=donor.state_dict(),
    )


def _prepared(dataset: Dataset, index: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    return preprocess(take(dataset.patterns, index), config, dataset.static_background)


def _projection_centres(dataset: Dataset, index: np.ndarray) -> torch.Tensor | None:
    """The training patterns' projection centres in the square model frame, when the data has them."""
    if dataset.pc is None:
        return None
    pc = np.asarray(dataset.pc, dtype=np.float32).reshape(-1, 3)
    pc = pc[index] if len(pc) == len(dataset) else np.repeat(pc[:1], len(index), axis=0)
    pc = np.where(np.isfinite(pc).all(axis=1, keepdims=True), pc, np.asarray(NOMINAL_PC, dtype=np.float32))
    return torch.from_numpy(square_crop_pc(pc, *dataset.patterns.shape[1:3]))


def _with_rehearsal(
    x_shots: np.ndarray, y_shots: np.ndarray, pc_shots: torch.Tensor | None, rehearsal: Dataset, pre: PreprocessConfig
) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
    """The shots, repeated to weigh as much as the rehearsal patterns, followed by those."""
    repeat = repeats_for(len(x_shots), len(rehearsal))
    everything = np.arange(len(rehearsal))
    x = np.concatenate([np.tile(x_shots, (repeat, 1, 1)), _prepared(rehearsal, everything, pre)])
    y = np.concatenate([np.tile(y_shots, repeat), rehearsal.labels.astype(np.int64)])
    pc_rehearsal = _projection_centres(rehearsal, everything)
    if pc_shots is None and pc_rehearsal is None:
        return x, y, None
    nominal = torch.from_numpy(square_crop_pc(np.asarray([NOMINAL_PC], dtype=np.float32), *x_shots.shape[1:3]))
    pc_shots = nominal.expand(len(x_shots), 3) if pc_shots is None else pc_shots
    pc_rehearsal = nominal.expand(len(rehearsal), 3) if pc_rehearsal is None else pc_rehearsal
    return x, y, torch.cat([pc_shots.repeat(repeat, 1), pc_rehearsal])


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    head = {id(p) for p in classifier_parameters(model)}
    for p in model.parameters():
        if id(p) not in head:
            p.requires_grad_(trainable)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: np.ndarray, batch_size: int = 64) -> None:
    """Recompute BatchNorm running statistics on un-augmented training patterns.

    With a few dozen patterns per epoch, the exponential running averages still
    carry ImageNet statistics (or those of augmented batches), and the model
    behaves very differently in eval mode than in training (seen here: 0.90
    training accuracy in train mode, 0.28 in eval mode). A cumulative average
    over the training set fixes that.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    device = next(model.parameters()).device
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        if len(chunk) < 2:
            continue
        model(torch.from_numpy(np.ascontiguousarray(chunk))[:, None].to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def _validate(model: nn.Module, x: np.ndarray, y: np.ndarray, smoothing: float) -> tuple[float, float]:
    model.eval()
    probs = np.concatenate([predict_tensor(model, x[i : i + 256]) for i in range(0, len(x), 256)])
    loss = F.cross_entropy(
        torch.log(torch.from_numpy(probs).clamp_min(1e-8)), torch.from_numpy(y), label_smoothing=smoothing
    )
    return float(loss), float((probs.argmax(1) == y).mean())


@dataclass
class _TrainingData:
    """The preprocessed patterns a training uses: the shots (with any rehearsal patterns) and validation."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    pc_train: torch.Tensor | None
    rehearsal: Rehearsal | None


def _training_data(dataset: Dataset, split: FewShotSplit, config: TrainConfig, pre: PreprocessConfig) -> _TrainingData:
    x_train = _prepared(dataset, split.train, pre)
    y_train = dataset.labels[split.train].astype(np.int64)
    x_val = _prepared(dataset, split.val, pre)
    y_val = dataset.labels[split.val].astype(np.int64)
    pc_train = _projection_centres(dataset, split.train)
    rehearsal = None
    if config.rehearsal_per_class > 0:
        rehearsal = rehearsal_for(config.weights_file, dataset, config.rehearsal_per_class, config.rehearsal_source)
        x_train, y_train, pc_train = _with_rehearsal(x_train, y_train, pc_train, rehearsal.dataset, pre)
    return _TrainingData(x_train, y_train, x_val, y_val, pc_train, rehearsal)


class _Batches:
    """Random augmented batches of the training patterns, drawn with replacement (an epoch is ``steps`` of them)."""

    def __init__(self, data: _TrainingData, config: TrainConfig, device: torch.device) -> None:
        self.batch_size = min(config.batch_size, len(data.x_train))
        self.steps = max(math.ceil(len(data.x_train) / self.batch_size), config.min_steps_per_epoch)
        self.augment = config.augment_config if config.augment else None
        self.device = device
        self.x = torch.from_numpy(data.x_train)[:, None]
        self.y = torch.from_numpy(data.y_train)
        self.pc = data.pc_train
        self.generator = torch.Generator().manual_seed(config.seed)
        self.augment_generator = self.generator
        if device.type == "cuda":  # augmented there: on the CPU it kept a GPU waiting
            self.x = self.x.to(device)
            self.pc = None if self.pc is None else self.pc.to(device)
            self.augment_generator = torch.Generator(device=device).manual_seed(config.seed)

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(0, len(self.x), (self.batch_size,), generator=self.generator)
        xb = self.x[pick]
        if self.augment is not None:
            pc = None if self.pc is None else self.pc[pick]
            xb = augment_batch(xb, self.augment, self.augment_generator, pc)
        xb = xb.to(self.device).contiguous(memory_format=torch.channels_last)
        return xb, self.y[pick].to(self.device)


def _optimiser(
    model: nn.Module, config: TrainConfig, device: torch.device, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a linear warm-up over the first epoch and cosine decay over the rest."""
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=device.type in ("cpu", "cuda"),  # one kernel for all parameters: 6.7 -> 2.7 ms per step on 2 cores
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(steps * config.epochs, steps))
    return optimizer, scheduler


def _train_epoch(
    model: nn.Module,
    batches: _Batches,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    epoch: int,
    on_step: Callable[[int, float, float], None],
    should_stop: Callable[[], bool] | None,
) -> tuple[float, float]:
    """Epoch ``epoch``: ``batches.steps`` batches, ``on_step(step, loss, accuracy)`` after each (running means),
    cancelled before any batch once ``should_stop()``. Returns the epoch's mean loss and accuracy."""
    model.train()
    losses, correct, seen = 0.0, 0, 0
    for step in range(1, batches.steps + 1):
        if should_stop and should_stop():
            raise CancelledError(f"training cancelled in epoch {epoch}")
        xb, yb = batches.draw()
        with autocast_context(batches.device, config.input_size):
            logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses += float(loss.detach()) * len(yb)
        correct += int((logits.argmax(1) == yb).sum())
        seen += len(yb)
        on_step(step, losses / seen, correct / seen)
    return losses / seen, correct / seen


def train_model(
    dataset: Dataset,
    config: TrainConfig,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    split: FewShotSplit | None = None,
) -> TrainResult:
    """Train on ``config.shots`` patterns per class; returns the best-validation model."""
    start_time = time.perf_counter()
    split = split or few_shot_split(dataset, config.shots, config.seed, config.val_per_class)
    pre = PreprocessConfig(size=config.input_size)
    data = _training_data(dataset, split, config, pre)
    device = select_device(config.device)
    with GLOBAL_RNG:  # the new head's random weights come from the global generator
        torch.manual_seed(config.seed)
        model = initial_model(config, len(dataset.classes)).to(device)
    model = model.to(memory_format=torch.channels_last)
    batches = _Batches(data, config, device)
    optimizer, scheduler = _optimiser(model, config, device, batches.steps)
    steps = batches.steps

    history: list[dict] = []
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    with fast_depthwise_grads(model, device):
        for epoch in range(1, config.epochs + 1):
            _set_backbone_trainable(model, epoch > config.frozen_warmup_epochs)

            def on_step(step: int, loss: float, accuracy: float, epoch: int = epoch) -> None:
                if progress:
                    done = (epoch - 1) * steps + step
                    eta = (time.perf_counter() - start_time) / done * (config.epochs * steps - done)
                    progress(TrainProgress(epoch, config.epochs, step, steps, loss, accuracy, eta_seconds=eta))

            train_loss, train_accuracy = _train_epoch(
                model, batches, optimizer, scheduler, config, epoch, on_step, should_stop
            )
            recalibrate_batchnorm(model, data.x_train)
            val_loss, val_acc = _validate(model, data.x_val, data.y_val, config.label_smoothing)
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "seconds": round(time.perf_counter() - start_time, 2),
            }
            history.append(record)
            if progress:
                message = f"epoch {epoch}: val loss {val_loss:.3f}, val accuracy {val_acc:.3f}"
                progress(
                    TrainProgress(
                        epoch,
                        config.epochs,
                        steps,
                        steps,
                        train_loss,
                        train_accuracy,
                        val_loss,
                        val_acc,
                        message=message,
                    )
                )
            if val_loss < best[0] - 1e-4:
                best = (val_loss, epoch, copy.deepcopy(model.state_dict()))
            elif epoch - best[1] >= config.patience:
                break
    model.load_state_dict(best[2])
    model.eval()
    card = _model_card(model, dataset, config, split, data, best_epoch=best[1], device=device, history=history)
    return TrainResult(model, card, split, history, time.perf_counter() - start_time, best[1])


def _model_card(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    split: FewShotSplit,
    data: _TrainingData,
    best_epoch: int,
    device: torch.device,
    history: list[dict],
) -> ModelCard:
    """What the store records of a trained model: how to use it, and how it was trained."""
    rehearsal = data.rehearsal
    return ModelCard(
        backbone=config.backbone,
        classes=list(dataset.classes),
        preprocess=PreprocessConfig(size=config.input_size),
        channel_mode=config.channel_mode,
        pretrained=config.pretrained or config.weights_file is not None,
        unknown_threshold=config.unknown_threshold,
        views=config.views,
        views_below=config.views_below,
        training={
            "config": config.to_dict(),
            "augment": config.augment_config.to_dict(),
            "split": split.sizes(),
            "best_epoch": best_epoch,
            "device": str(device),
            "dataset": dataset.provenance.get("generator", "user data"),
            "materials": sorted({str(m) for m in dataset.material[split.train]}),
            **({"rehearsal": rehearsal.summary()} if rehearsal else {}),
            "pattern_size": int(dataset.patterns.shape[-1]),
            "bf16_check": bf16_check(model, np.concatenate([data.x_train, data.x_val])[:BF16_CHECK_PATTERNS]),
        },
        history=history,
    )


def evaluate_split(model: nn.Module, card: ModelCard, dataset: Dataset, index: np.ndarray, binning: int = 1) -> dict:
    """Metrics of a model on the patterns ``index`` of a dataset, as recorded or ``binning`` times binned
    (how the model fares on a camera with fewer pixels)."""
    from ebsd_core.inference import predict_patterns

    if len(index) == 0:
        return {"patterns": 0}
    order = np.sort(index)
    patterns = bin_patterns(take(dataset.patterns, order), binning)
    background = None if dataset.static_background is None else bin_patterns(dataset.static_background, binning)
    probs = predict_patterns(model, card, patterns, background)
    return evaluate_predictions(probs, dataset.labels[order], card.classes, dataset.material[order])


def record_metrics(result: TrainResult, dataset: Dataset) -> dict:
    """Evaluate a trained model on its unseen orientations (``test``) and held-out materials (``holdout``)
    and store the metrics in its card, as the Results page and ``evaluate`` read them."""
    metrics = {"test": evaluate_split(result.model, result.card, dataset, result.split.test)}
    if len(result.split.holdout):
        metrics["holdout"] = evaluate_split(result.model, result.card, dataset, result.split.holdout)
    result.card.metrics = {"accuracy": metrics["test"].get("accuracy"), **metrics}
    return metrics
