"""Calibration tasks come from the model's adapter: SAM's box-prompted task for SAM models,
none for other modules (they pass a forward loop or a task object)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trtq.calib.tasks import ClassifierTask, as_task
from trtq.errors import CalibrationError
from trtq.models import load_model
from trtq.models.sam_calibration import SamTask


def test_sam_models_get_the_box_prompted_task_from_their_adapter():
    model = load_model("tiny_litemedsam")
    task = as_task([], model)
    assert isinstance(task, SamTask) and task.probe() is None  # no sample with boxes


def test_a_task_object_is_used_as_it_is_and_other_data_needs_one():
    task = ClassifierTask([torch.zeros(1, 3, 8, 8)])
    assert as_task(task, nn.Linear(2, 2)) is task
    with pytest.raises(CalibrationError, match="forward loop"):
        as_task([object()], nn.Linear(2, 2))
