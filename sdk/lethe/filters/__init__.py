"""Weight filtering (Poppi et al. 2024): per-class channel filters for every target layer,
trained in one round, composed for any set of classes, and folded into a plain model."""

from lethe.filters._apply import FilteredModel, filtered, fold
from lethe.filters._bank import BANK_FORMAT, FilterBank
from lethe.filters._erase import ERASE_METHODS, EraseConfig, EraseReport, erase
from lethe.filters._explain import ExplainResult, channel_overlap, explain, suppression_by_layer
from lethe.filters._targets import Target, TargetSpec, select_targets
from lethe.filters._train import FORGET_LOSSES, TrainConfig, class_report, knob_hints, train

__all__ = [
    "BANK_FORMAT",
    "ERASE_METHODS",
    "FORGET_LOSSES",
    "EraseConfig",
    "EraseReport",
    "ExplainResult",
    "FilterBank",
    "FilteredModel",
    "Target",
    "TargetSpec",
    "TrainConfig",
    "channel_overlap",
    "class_report",
    "erase",
    "explain",
    "filtered",
    "fold",
    "knob_hints",
    "select_targets",
    "suppression_by_layer",
    "train",
]
