"""Data: validated image folders and COCO-format datasets with box prompts."""

from trtq.data.coco import CocoBoxDataset, Instance, Sample
from trtq.data.images import ImageFolder, load_rgb

__all__ = ["CocoBoxDataset", "ImageFolder", "Instance", "Sample", "load_rgb"]
