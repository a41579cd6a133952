from __future__ import annotations

import numpy as np
import pytest

from trtq.errors import DataError
from trtq.eval.masks import decode_rle, encode_rle, mask_iou
from trtq.eval.sam_eval import EvalResult, _reference_index, format_table


def test_mask_iou_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 shared
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    with pytest.raises(ValueError):
        mask_iou(a, np.zeros((3, 3), bool))


def test_rle_round_trip_is_json_safe():
    import json

    mask = np.random.default_rng(0).random((37, 53)) > 0.6
    rle = json.loads(json.dumps(encode_rle(mask)))
    assert np.array_equal(decode_rle(rle), mask)


def test_summary_and_table():
    result = EvalResult(per_instance=[{"image_id": 1, "iou": 0.5}, {"image_id": 2, "iou": 1.0}])
    assert result.summary() == {"miou": 0.75, "instances": 2, "images": 2}
    table = format_table([("run", result.summary())])
    assert "| run | 2 | 0.7500 | — |" in table


def test_reference_must_be_an_eval_result():
    with pytest.raises(DataError, match="not a trtq eval result"):
        _reference_index({"miou": 0.5})
