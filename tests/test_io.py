import numpy as np
import pandas as pd
import pytest

from neuronaudit.io import MatrixWriter, read_matrix, read_meta, read_table, write_matrix, write_table


def test_matrix_roundtrip_streamed(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1000, 37)).astype(np.float32)
    b = rng.random(size=(1000, 5)).astype(np.float32)
    ids = [f"img{i}" for i in range(1000)]
    with MatrixWriter(tmp_path / "m.parquet", {"activation": 37, "other": 5}, columns=list("abcde"), meta={"k": 1},
                      row_group_size=128) as w:
        for s in range(0, 1000, 100):
            w.write(ids[s : s + 100], activation=a[s : s + 100], other=b[s : s + 100])
    m = read_matrix(tmp_path / "m.parquet")
    np.testing.assert_array_equal(m["activation"], a)
    np.testing.assert_array_equal(m["other"], b)
    assert list(m.image_ids) == ids and m.columns == list("abcde") and m.meta == {"k": 1}
    assert read_matrix(tmp_path / "m.parquet", ["other"]).values.keys() == {"other"}


def test_matrix_writer_rejects_bad_shapes_and_leaves_no_file(tmp_path):
    path = tmp_path / "bad.parquet"
    with pytest.raises(ValueError, match="shape"):
        with MatrixWriter(path, {"activation": 3}) as w:
            w.write(["a", "b"], activation=np.zeros((2, 4)))
    assert not path.exists()
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_read_matrix_unknown_column(tmp_path):
    write_matrix(tmp_path / "m.parquet", ["a"], {"activation": np.ones((1, 2))})
    with pytest.raises(KeyError, match="no matrix column"):
        read_matrix(tmp_path / "m.parquet", ["probability"])


def test_table_roundtrip_with_meta(tmp_path):
    df = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    write_table(df, tmp_path / "t.parquet", {"config": "abc"})
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), df)
    assert read_meta(tmp_path / "t.parquet") == {"config": "abc"}
