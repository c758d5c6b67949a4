"""The object-store mirror's pure parts: where a URI lands, which config values are replaced."""

from __future__ import annotations

import json

import pytest

from engine.config import ConfigError
from engine.staging import Staging
from engine.store_mirror import mirror_path, store_uri


def test_a_uri_lands_at_one_place_under_the_mirror_root(tmp_path, monkeypatch):
    monkeypatch.setenv("QUARRY_STORE_MIRROR", str(tmp_path))
    assert mirror_path("s3://bucket/a/b.parquet") == tmp_path / "s3" / "bucket" / "a" / "b.parquet"
    assert mirror_path("gs://b/dir/") == tmp_path / "gs" / "b" / "dir"


def test_a_mirror_path_names_its_uri_again(tmp_path, monkeypatch):
    """What a Ray Train worker on another node uses to fetch an input the driver mirrored."""
    monkeypatch.setenv("QUARRY_STORE_MIRROR", str(tmp_path))
    for uri in ("s3://bucket/a/b.parquet", "gs://b/dir", "s3://whole-bucket"):
        assert store_uri(mirror_path(uri)) == uri
    assert store_uri(tmp_path / "s3" / "bucket" / "a", root=tmp_path) == "s3://bucket/a"
    assert store_uri(tmp_path.parent / "elsewhere" / "data") is None  # a local input
    assert store_uri(tmp_path / "s3") is None and store_uri(tmp_path) is None


@pytest.mark.reliability("security")
@pytest.mark.parametrize("uri", ["s3://bucket/../../etc/passwd", "s3:///key-without-bucket"])
def test_a_uri_cannot_reach_outside_the_mirror(uri, tmp_path, monkeypatch):
    monkeypatch.setenv("QUARRY_STORE_MIRROR", str(tmp_path))
    with pytest.raises(ConfigError, match="expected scheme://bucket/key"):
        mirror_path(uri)


def test_only_remote_values_under_the_jobs_keys_are_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("QUARRY_STORE_MIRROR", str(tmp_path))
    data = {"out_dir": "s3://b/out/", "data": "runs/dataset", "other": "s3://b/not-a-path-key",
            "models": [{"source": "s3://b/m1.pt"}, {"source": "models:/quarry@champion"}],
            "variants": {"a": {"checkpoint": "gs://c/a.pt"}, "b": {"checkpoint": None}}}
    staging = Staging(lambda d: (["data", "models.*.source", "variants.*.checkpoint"], ["out_dir"]))
    staging.localise(data)
    assert data["out_dir"] == str(tmp_path / "s3" / "b" / "out")
    assert data["data"] == "runs/dataset" and data["other"] == "s3://b/not-a-path-key"
    assert data["models"] == [{"source": str(tmp_path / "s3" / "b" / "m1.pt")}, {"source": "models:/quarry@champion"}]
    assert data["variants"]["a"]["checkpoint"] == str(tmp_path / "gs" / "c" / "a.pt")
    assert [(t.key, t.uri, t.output) for t in staging.transfers] == [
        ("models[0].source", "s3://b/m1.pt", False), ("variants['a'].checkpoint", "gs://c/a.pt", False),
        ("out_dir", "s3://b/out", True)]


def test_an_output_key_naming_a_file_makes_its_folder_the_output(tmp_path, monkeypatch):
    """`quarry review accept`: the manifest is read (with its folder) and the answers are written
    beside it, so the manifest's folder is pulled and pushed; the key keeps naming the file."""
    monkeypatch.setenv("QUARRY_STORE_MIRROR", str(tmp_path))
    data = {"candidates": "s3://b/mine/candidates.parquet", "reviews": "s3://b/answers/reviews.jsonl"}
    staging = Staging(lambda d: (["candidates"], ["reviews", "candidates"]))
    staging.localise(data)
    assert data == {"candidates": str(tmp_path / "s3/b/mine/candidates.parquet"),
                    "reviews": str(tmp_path / "s3/b/answers/reviews.jsonl")}
    assert [(t.key, t.uri, t.output, t.local) for t in staging.transfers] == [
        ("candidates", "s3://b/mine/candidates.parquet", False, tmp_path / "s3/b/mine/candidates.parquet"),
        ("reviews", "s3://b/answers", True, tmp_path / "s3/b/answers"),
        ("candidates", "s3://b/mine", True, tmp_path / "s3/b/mine")]
    assert staging.as_given(dict(data)) == {"candidates": "s3://b/mine/candidates.parquet",
                                            "reviews": "s3://b/answers/reviews.jsonl"}


def test_print_config_shows_the_uris_as_given(tmp_path, monkeypatch, capsys):
    """A Path field would print s3://b/d as s3:/b/d: --print-config puts the URIs back."""
    from jobs import train
    from jobs.cli import run_job

    monkeypatch.setenv("QUARRY_STORE_MIRROR", str(tmp_path))
    assert run_job(train, ["data=s3://b/dataset/", "out_dir=s3://b/train", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data"] == "s3://b/dataset" and printed["out_dir"] == "s3://b/train"
    assert not (tmp_path / "s3").exists(), "printing the config touches neither the store nor the mirror"


def test_the_latest_checkpoint_of_a_pulled_mirror_goes_by_its_files_times(tmp_path):
    """A pull creates the folders in any order (a folder's time is when its last file landed);
    the files keep the store's times, and Ray's time-stamped names break a tie."""
    import os

    from engine.train.trainer import latest_checkpoint

    older, newer = (tmp_path / "ray" / "run" / f"checkpoint_2026-12-05_10-00-0{i}.000000" for i in (1, 2))
    for folder, stamp in ((newer, 2_000), (older, 1_000)):  # the newer one pulled first
        folder.mkdir(parents=True)
        (folder / "state.pt").write_bytes(b"x")
        os.utime(folder / "state.pt", (stamp, stamp))
    os.utime(newer, (5_000, 5_000))  # its folder's time now older than the other's
    assert latest_checkpoint(tmp_path) == newer
    os.utime(older / "state.pt", (2_000, 2_000))  # the same second in the store
    assert latest_checkpoint(tmp_path) == newer
    assert latest_checkpoint(tmp_path / "nothing") is None
