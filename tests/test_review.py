"""`quarry review`: the append-only reviews table, each command on the tiny demo's candidates,
the terminal reviewer driven through a pseudo-terminal, and the contact sheet in headless
Chromium (Debian's package, installed by the README's test command)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from engine.config import ConfigError, load_config
from engine.review.config import ReviewConfig
from engine.review.reviews import append_reviews, current_reviews, read_reviews
from jobs import review

REPO = Path(__file__).resolve().parents[1]


def test_reviews_are_append_only_and_the_latest_answer_wins(tmp_path):
    path = tmp_path / "reviews.jsonl"
    append_reviews(path, [{"candidate_id": "a_f1", "field": "category", "value": "orange_trucks", "source": "clip"}])
    append_reviews(path, [{"candidate_id": "a_f1", "field": "category", "value": "roadside_signs", "source": "interactive"},
                          {"candidate_id": "a_f1", "field": "decision", "value": "accepted", "source": "cli"},
                          {"candidate_id": "b_f2", "field": "decision", "value": "rejected", "source": "cli"}])
    with open(path, "a") as f:
        f.write('{"candidate_id": "c_f3", "fie')  # a write cut short by a crash
    assert len(read_reviews(path)) == 4, "every earlier answer is still there; the broken line is skipped"
    now = current_reviews(path).set_index("candidate_id")
    assert now.loc["a_f1", "category"] == "roadside_signs" and now.loc["a_f1", "category_source"] == "interactive"
    assert now.loc["a_f1", "decision"] == "accepted" and pd.isna(now.loc["b_f2", "category"])
    with pytest.raises(ValueError, match="review field"):
        append_reviews(path, [{"candidate_id": "x", "field": "mood", "value": "ok"}])


@pytest.fixture()
def manifest(tiny_demo, tmp_path):
    """A copy of the tiny demo's candidates (manifest + snapshots) to review."""
    _, result = tiny_demo
    mine_out = Path(result["steps"]["mine"]["out_dir"])
    shutil.copytree(mine_out / "candidates", tmp_path / "candidates")
    shutil.copy(mine_out / "candidates.parquet", tmp_path / "candidates.parquet")
    table = pd.read_parquet(tmp_path / "candidates.parquet")
    assert len(table) >= 6
    return tmp_path / "candidates.parquet", table


def _run(manifest_path, *overrides):
    return review.run(load_config(ReviewConfig, None, [f"candidates={manifest_path}", *overrides]))


@pytest.mark.slow
def test_stats_sample_accept_reject_and_export(manifest, tmp_path):
    path, table = manifest
    stats = _run(path, "command=stats")
    assert stats["candidates"] == len(table) and stats["by_category"] == {"none": len(table)}
    s = _run(path, "command=sample", "sample_n=2", "select.score_column=yolo_score")
    assert [r["yolo_score"] for r in s["high"]] == sorted(table.yolo_score, reverse=True)[:2]
    assert [r["yolo_score"] for r in s["low"]] == sorted(table.yolo_score)[:2]
    ids = sorted(table.video_key + "_f" + table.frame.astype(str))
    assert _run(path, "command=accept", f"select.ids=[{ids[0]}, {ids[1]}]")["accepted"] == 2
    assert _run(path, "command=reject", f"select.ids=[{ids[1]}]")["rejected"] == 1
    after = _run(path, "command=stats")
    assert after["by_decision"] == {"none": len(table) - 2, "accepted": 1, "rejected": 1}
    low, high = table.fused_score.quantile(0.25), table.fused_score.quantile(0.75)
    for mode in ("link", "copy"):
        out = tmp_path / f"export-{mode}"
        result = _run(path, "command=export", f"select.band_low={low}", f"select.band_high={high}",
                      f"export_dir={out}", f"export_mode={mode}")
        exported = pd.read_parquet(out / "manifest.parquet")
        expected = table[table.fused_score.between(low, high)]
        assert result["exported"] == len(exported) == len(expected) > 0
        for rel in exported.exported_path:
            assert (out / rel).is_file() and (out / rel).is_symlink() == (mode == "link")
    with pytest.raises(ConfigError, match="select.score_column = 'nope'"):
        _run(path, "command=export", "select.score_column=nope", "select.band_low=0.1")



@pytest.mark.reliability("bad config")
@pytest.mark.slow
def test_a_selection_that_names_nothing_is_an_error_not_an_empty_answer(manifest):
    """A typo in an id or a category selected nothing: `reject select.ids=[...]` answered
    "rejected: 0" and wrote nothing, so the frame stayed a hard negative."""
    path, table = manifest
    real = sorted(table.video_key + "_f" + table.frame.astype(str))[0]
    with pytest.raises(ConfigError, match=r"select.ids: \['nope_f1'\] not in the manifest \(an id is <video_key>_f<frame>"):
        _run(path, "command=reject", f"select.ids=[{real}, nope_f1]")
    with pytest.raises(ConfigError, match=r"select.categories: \['orange_truck'\] not a category \(the categories: "):
        _run(path, "command=accept", "select.categories=[orange_truck]")
    with pytest.raises(ConfigError, match=r"select.band_low \(0.9\) > select.band_high \(0.1\)"):
        _run(path, "command=export", "select.band_low=0.9", "select.band_high=0.1")
    assert _run(path, "command=stats")["by_decision"] == {"none": len(table)}  # nothing written
    assert _run(path, "command=stats", "select.categories=[none, orange_trucks]")["candidates"] == len(table)


@pytest.mark.slow
def test_bulk_categorise_by_rules_then_clip_keeps_earlier_answers(manifest, tiny_demo):
    path, table = manifest
    config, _ = tiny_demo
    kind = table.lookalike_kind.value_counts().index[0]  # the commonest lookalike among the candidates
    rules = _run(path, "command=categorise", "categorise.method=rules",
                 f"categorise.rules=[{{category: orange_trucks, where: \"lookalike_kind == '{kind}'\"}}]")
    n_trucks = int((table.lookalike_kind == kind).sum())
    assert 0 < n_trucks < len(table) or len(table.lookalike_kind.unique()) == 1
    assert rules["categorised"] == n_trucks and rules["unmatched"] == len(table) - n_trucks
    clip = _run(path, "command=categorise", "categorise.method=clip",
                f"categorise.clip.checkpoint={Path(config.work_dir) / 'base' / 'clip.pt'}")
    assert clip["categorised"] == len(table) - n_trucks, "only the uncategorised ones"
    current = current_reviews(Path(path).parent / "reviews.jsonl")
    assert len(current) == len(table) and current.category.notna().all()
    by_source = current.category_source.value_counts().to_dict()
    assert by_source.get("rules", 0) == n_trucks
    with pytest.raises(ConfigError, match="categorise.rules: where"):
        _run(path, "command=categorise", "categorise.method=rules", "categorise.overwrite=true",
             "categorise.rules=[{category: orange_trucks, where: 'no such column > 1'}]")


@pytest.mark.reliability("resume")
@pytest.mark.slow
def test_interactive_categorise_through_a_terminal_saves_each_answer_and_resumes(manifest):
    import pexpect

    path, table = manifest
    reviews = Path(path).parent / "reviews.jsonl"
    command = f"{sys.executable} -m jobs.review categorise candidates={path} -q"
    child = pexpect.spawn(command, cwd=str(REPO), encoding="utf-8", timeout=120)
    child.expect(f"{len(table)} of {len(table)} candidates without a category")
    child.expect("> ")
    child.sendline("2")  # random_cones
    child.expect("saved: random_cones")
    child.expect("> ")
    child.sendline("zz")  # a wrong key is explained, nothing saved
    child.expect("unknown key 'zz'")
    child.expect("> ")
    child.sendline("a")  # a decision, then the category of the same candidate
    child.expect("saved")
    child.expect("> ")
    child.sendline("1")
    child.expect("saved: orange_trucks")
    child.expect("> ")
    assert len(read_reviews(reviews)) == 3, "each answer is on disk before the next question"
    child.sendline("s")
    child.expect("> ")
    child.sendline("q")
    child.expect(pexpect.EOF)
    now = current_reviews(reviews)
    assert sorted(now.category.dropna()) == ["orange_trucks", "random_cones"] and (now.decision == "accepted").sum() == 1
    again = pexpect.spawn(command, cwd=str(REPO), encoding="utf-8", timeout=120)
    again.expect(f"{len(table) - 2} of {len(table)} candidates without a category")
    again.expect("> ")
    again.sendline("q")
    again.expect(pexpect.EOF)


@pytest.mark.slow
def test_contact_sheet_in_headless_chromium(manifest, tmp_path):
    from conftest import chromium_page

    path, table = manifest
    kind = table.lookalike_kind.value_counts().index[0]
    _run(path, "command=categorise", "categorise.method=rules",
         f"categorise.rules=[{{category: orange_trucks, where: \"lookalike_kind == '{kind}'\"}}, "
         "{category: roadside_signs, where: 'frame >= 0'}]")
    result = _run(path, "command=sheet", "sheet_page_size=4", f"sheet_dir={tmp_path / 'sheet'}")
    assert result["thumbnails"] == len(table)
    n_trucks = int((table.lookalike_kind == kind).sum())
    with chromium_page((tmp_path / "sheet" / "index.html").as_uri()) as (page, errors):

        def shown():
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")
            broken = page.evaluate("Array.from(document.images).filter(i => i.naturalWidth === 0).map(i => i.src)")
            assert broken == [], f"missing images: {broken}"
            return page.eval_on_selector_all(".card", "cs => cs.map(c => [c.dataset.category, Number(c.dataset.fused)])")

        assert len(shown()) == min(4, len(table))
        assert page.inner_text("#count") == f"{len(table)} of {len(table)} candidates"
        page.click("#next")
        assert len(shown()) == min(4, len(table) - 4) and "page 2" in page.inner_text("#page")
        page.select_option("#category", "orange_trucks")
        cards = shown()
        assert page.inner_text("#count") == f"{n_trucks} of {len(table)} candidates"
        assert cards and all(c == "orange_trucks" for c, _ in cards), "the category filter filters"
        page.select_option("#category", "")
        cut = float(table.fused_score.median())
        page.fill("#low", str(cut))
        cards = shown()
        expected = int((table.fused_score >= cut).sum())
        assert page.inner_text("#count") == f"{expected} of {len(table)} candidates"
        assert all(f >= cut for _, f in cards), "the score band filters"
    assert errors == [], errors
    data = json.loads((tmp_path / "sheet" / "data.js").read_text().split("=", 1)[1].rstrip().rstrip(";"))
    assert len(data["rows"]) == len(table)
