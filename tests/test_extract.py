import json
import shutil

import numpy as np
import pytest
import torch

from neuronaudit.activations.extract import TooManyFailedImages, extract_activations
from neuronaudit.activations.models import LoadedModel, image_transform
from neuronaudit.data.images import ImageSource
from neuronaudit.io import read_matrix


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        h = self.conv(x)
        return self.fc(h.mean((2, 3)))


@pytest.fixture
def images(tmp_path, imagenet_jpegs):
    paths = []
    for f, _ in imagenet_jpegs[:6]:
        shutil.copy(f, tmp_path / f.name)
        paths.append(tmp_path / f.name)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return paths + [tmp_path / "corrupt.jpg"]


def _model():
    torch.manual_seed(0)
    return LoadedModel(Tiny().eval(), image_transform(16, (0.5,) * 3, (0.5,) * 3), 16, {})


def test_extraction_matches_direct_forward_and_keeps_manifest_order(tmp_path, images):
    src = ImageSource([p.stem for p in images[:6]], [str(p) for p in images[:6]])
    m = _model()
    extract_activations(src, m, {"conv": "conv", "fc": "fc"}, {"conv": tmp_path / "c.parquet", "fc": tmp_path / "f.parquet"},
                        batch_size=4, progress=False)
    x = torch.stack([m.transform(src.load(i)) for i in range(6)])
    with torch.inference_mode():
        direct_fc = m.model(x).numpy()
        direct_conv = m.model.conv(x).mean((2, 3)).numpy()
    fc = read_matrix(tmp_path / "f.parquet")
    np.testing.assert_allclose(fc["activation"], direct_fc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(read_matrix(tmp_path / "c.parquet")["activation"], direct_conv, rtol=1e-5, atol=1e-5)
    assert list(fc.image_ids) == [p.stem for p in images[:6]]


def test_corrupt_image_skipped_and_reported(tmp_path, images):
    src = ImageSource([p.stem for p in images], [str(p) for p in images])
    rep = extract_activations(src, _model(), {"fc": "fc"}, {"fc": tmp_path / "f.parquet"}, batch_size=3,
                              max_failed_fraction=0.5, progress=False)
    assert rep.n_written == 6 and [i for i, _ in rep.failed] == ["corrupt"]
    rep.write(tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text())["failed"][0]["image_id"] == "corrupt"
    assert "corrupt" not in set(read_matrix(tmp_path / "f.parquet").image_ids)


def test_too_many_failures_fail_the_run_without_output(tmp_path, images):
    src = ImageSource([p.stem for p in images], [str(p) for p in images])
    with pytest.raises(TooManyFailedImages, match="max_failed_fraction"):
        extract_activations(src, _model(), {"fc": "fc"}, {"fc": tmp_path / "f.parquet"}, max_failed_fraction=0.01,
                            progress=False)
    assert not (tmp_path / "f.parquet").exists()


def test_peak_memory_does_not_grow_with_images(tmp_path, imagenet_jpegs):
    """Streamed writes: Python-heap peak for 8x the images stays about the same (tracemalloc)."""
    import tracemalloc

    f = str(imagenet_jpegs[0][0])
    m = _model()
    peaks = []
    for n in (32, 256):
        src = ImageSource([f"i{i}" for i in range(n)], [f] * n)
        tracemalloc.start()
        extract_activations(src, m, {"conv": "conv"}, {"conv": tmp_path / f"c{n}.parquet"}, batch_size=16, progress=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 2 * peaks[0], peaks


def test_decode_workers_and_one_behind_writes_give_the_same_rows(tmp_path, images):
    """DataLoader workers (the GPU path's default) and the pipelined writes (each batch written while
    the next runs) change nothing: same rows, same order, same values, failed image still skipped."""
    src = ImageSource([p.stem for p in images], [str(p) for p in images])
    m = _model()
    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}.parquet"
        rep = extract_activations(src, m, {"fc": "fc"}, {"fc": out}, batch_size=2, workers=workers,
                                  max_failed_fraction=0.5, progress=False)
        assert rep.n_written == 6 and [i for i, _ in rep.failed] == ["corrupt"]
        runs[workers] = read_matrix(out)
    assert list(runs[0].image_ids) == list(runs[2].image_ids) == [p.stem for p in images[:6]]
    np.testing.assert_array_equal(runs[0]["activation"], runs[2]["activation"])
