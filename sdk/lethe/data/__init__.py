"""Datasets: the embedded digits, MNIST-format IDX files, CIFAR-10 / ``.npz`` archives and
ImageFolder trees, all as :class:`ImageArrays`, plus model-driven preprocessing."""

from lethe.data._arrays import ImageArrays, stratified_split
from lethe.data._loaders import (
    default_data_dir,
    load_cifar10,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_idx,
    load_image_folder,
    load_mnist,
    load_npz,
)
from lethe.data._preprocess import INTERPOLATIONS, Preprocess, to_dataset

__all__ = [
    "INTERPOLATIONS",
    "ImageArrays",
    "Preprocess",
    "default_data_dir",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_idx",
    "load_image_folder",
    "load_mnist",
    "load_npz",
    "stratified_split",
    "to_dataset",
]
