"""Image input/output, preprocessing and labelled datasets.

Images are float32 RGB tensors in [0, 1]: (3, H, W) for one image, (N, 3, H, W) for a batch.
"""

from .datasets import (
    IMAGE_EXTENSIONS,
    Batch,
    CsvDataset,
    DatasetError,
    EmbeddedSamples,
    ImageDataset,
    ImageNetFolder,
    Sample,
    SampleError,
    collate,
    iter_batches,
    iter_samples,
    load_dataset,
)
from .io import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    ImageTooLargeError,
    NotAnImageError,
    decode_image,
    encode_png,
    read_image,
    to_uint8,
    write_png,
)
from .samples import SamplesNotFoundError, embedded_samples, samples_dir
from .transforms import Preprocess, center_crop, preprocess, resize_center_crop, resize_shorter

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "Batch",
    "CsvDataset",
    "DatasetError",
    "EmbeddedSamples",
    "ImageDataset",
    "ImageNetFolder",
    "ImageReadError",
    "ImageTooLargeError",
    "NotAnImageError",
    "Preprocess",
    "Sample",
    "SampleError",
    "SamplesNotFoundError",
    "center_crop",
    "collate",
    "decode_image",
    "embedded_samples",
    "encode_png",
    "iter_batches",
    "iter_samples",
    "load_dataset",
    "preprocess",
    "read_image",
    "resize_center_crop",
    "resize_shorter",
    "samples_dir",
    "to_uint8",
    "write_png",
]
