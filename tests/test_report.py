"""The ledger of results (mobilevit_edu.book.results), the report built from it (mobilevit_edu.book.report)
and its figure (mobilevit_edu.plots.report)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mobilevit_edu.book import report as rp
from mobilevit_edu.book.results import KINDS, Result, load_results, record, results_dir
from mobilevit_edu.plots.report import plot_report


def row(item="MobileViT-XS parameters", paper=2.3, ours=2.318, **kw) -> Result:
    return Result(kw.pop("source", "§4.1 / Fig. 8"), item, paper=paper, ours=ours, **kw)


# ---------------------------------------------------------------- results: record and load


def test_record_round_trip_and_merge(tmp_path):
    path = record("06", [row(), row("MobileViT-S parameters", 5.6, 5.579)], directory=tmp_path)
    assert path == tmp_path / "06.json" and not list(tmp_path.glob("*.tmp"))  # atomic: no leftovers
    # recording again replaces the row with the same (source, item) and keeps the other one
    record("06", [row(ours=9.9)], directory=tmp_path)
    got = load_results(tmp_path)
    assert [(r.item, r.ours, r.chapter) for r in got] == [
        ("MobileViT-XS parameters", 9.9, "06"), ("MobileViT-S parameters", 5.579, "06")]
    payload = json.loads(path.read_text())
    assert payload["chapter"] == "06" and payload["profile"] in ("full", "ci")


def test_load_results_in_chapter_order(tmp_path):
    record("12", [row("b")], directory=tmp_path)
    record("07", [row("a")], directory=tmp_path)
    (tmp_path / "notes.json").write_text("{}")  # not a chapter file: ignored
    assert [r.chapter for r in load_results(tmp_path)] == ["07", "12"]


@pytest.mark.parametrize("bad, message", [
    (lambda: Result("Table 1", "x", 1, 2, kind="roughly"), "unknown kind"),
    (lambda: Result("", "x", 1, 2), "needs a source"),
    (lambda: Result("Table 1", "x", 1, math.nan), "finite"),
    (lambda: Result("Table 1", "x", 1, torch.tensor(2.0)), r"\.item\(\)"),
])
def test_bad_results_are_refused(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        bad()


def test_record_refuses_bad_chapters_and_duplicates(tmp_path):
    with pytest.raises(ValueError, match="two-digit"):
        record("7", [row()], directory=tmp_path)
    with pytest.raises(ValueError, match="same item"):
        record("07", [row(), row(ours=1.0)], directory=tmp_path)
    with pytest.raises(TypeError, match="sequence of Result"):
        record("07", [{"item": "x"}], directory=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing written for refused input


def test_load_results_names_a_broken_file(tmp_path):
    (tmp_path / "07.json").write_text(json.dumps({"chapter": "07", "results": [{"oops": 1}]}))
    with pytest.raises(ValueError, match="07.json"):
        load_results(tmp_path)


def test_results_dir_by_profile_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MOBILEVIT_EDU_RESULTS", raising=False)
    assert results_dir("full").name == "results"
    assert results_dir("ci").parts[-2:] == ("_build", "results-ci")  # a test run never overwrites
    monkeypatch.setenv("MOBILEVIT_EDU_RESULTS", str(tmp_path))
    assert results_dir("full") == tmp_path


# ---------------------------------------------------------------- report: verdicts, order, links


@pytest.mark.parametrize("paper, ours, expected", [
    (1.3, 1.272, True), (2.3, 2.318, True), (5.6, 5.579, True),  # the parameter counts
    (0.7, 0.793, False), (0.7, 0.703, True),  # MACs with / without attention
    (400, 392.0, False), (98, 98.0, True), (375, 375.6, False),  # printed integers
    (0.4, 0.418, True), (2.0, 2.033, True), (1.3, 1.35, False),
])
def test_agrees_at_the_papers_printed_precision(paper, ours, expected):
    assert rp.agrees(row(paper=paper, ours=ours)) is expected


def test_agrees_only_judges_exact_rows():
    assert rp.agrees(row(paper="[1, 2]", ours="[1, 2]")) is True
    assert rp.agrees(row(paper="[1, 2]", ours="[1, 3]")) is False
    assert rp.agrees(row(paper=None, ours=3)) is None
    assert rp.agrees(row(kind="small-scale", paper=78.4, ours=67.0)) is None
    assert rp.agrees(row(kind="other-hardware", paper=2.38, ours=2.11)) is None


def test_source_order_is_the_papers():
    sources = ["Fig. 14", "§4.1 / Fig. 8", "Table 10b", "Fig. 4", "Table 2", "Table 1a", "Table 11"]
    assert sorted(sources, key=rp.source_order) == [
        "Table 1a", "Table 2", "Table 10b", "Table 11", "Fig. 4", "Fig. 14", "§4.1 / Fig. 8"]


@pytest.fixture
def two_folders(tmp_path):
    ci, full = tmp_path / "ci", tmp_path / "full"
    record("06", [row(ours=2.318)], directory=full)
    record("07", [Result("Table 8", "memory at OS 8", 98, 98.0, unit="KiB")], directory=full)
    record("06", [row(ours=2.3181)], directory=ci)  # chapter 06 re-ran under ci
    record("10", [Result("Table 7", "label smoothing improves top-1", "LS > neither",
                         "+1.2 [-0.5, +2.9] (95 %, n=5/5)", unit="points", kind="small-scale",
                         note="shapes, not ImageNet", verdict="inconclusive")], directory=ci)
    return ci, full


def test_collect_prefers_the_current_run_and_falls_back(two_folders):
    ci, full = two_folders
    rep = rp.collect(primary=ci, fallback=full)
    assert rep.sources == {"06": ci, "07": full, "10": ci}
    assert [r.ours for r in rep.rows if r.chapter == "06"] == [2.3181]  # not both copies
    assert rep.counts() == {"exact": 2, "inference": 0, "small-scale": 1, "other-hardware": 0}
    assert list(rep.by_source()) == ["Table 7", "Table 8", "§4.1 / Fig. 8"]


def test_report_markdown_links_every_row_to_its_chapter(two_folders):
    ci, full = two_folders
    rep = rp.collect(primary=ci, fallback=full)
    text = rp.report_markdown(rep)
    assert "[06](06_full_network.ipynb)" in text and "[10](10_training.ipynb)" in text
    assert text.count("| ✓ matches |") == 2
    assert "| inconclusive |" in text and "ours / paper" not in text  # a verdict, never a ratio
    assert "same protocol at small scale" in text and KINDS["exact"] in text
    assert "#### Table 7: Label smoothing" in text  # the paper's caption from mobilevit_edu.book.paper
    headings = [line for line in text.splitlines() if line.startswith("####")]
    assert len(headings) == 3


def test_plot_report_draws_one_dot_per_numeric_row(two_folders):
    import matplotlib.pyplot as plt

    ci, full = two_folders
    rep = rp.collect(primary=ci, fallback=full)
    rep.rows.append(Result("Fig. 5", "a text row", "[1]", "[1]"))  # no dot for text
    rep.rows.append(Result("Table 11", "a latency ratio", 12.0, 9.0, kind="other-hardware"))
    rep.rows.append(Result("Table 7", "an old ratio row", 78.3, 68.4, kind="small-scale"))
    fig = plot_report(rep)
    xs = sorted(float(c.get_offsets()[0][0]) for c in fig.axes[0].collections if len(c.get_offsets()))
    assert xs == pytest.approx(sorted([2.3181 / 2.3, 98.0 / 98, 9.0 / 12.0]))
    # ordered by kind, then by the paper's table; a small-scale row never becomes a ratio, even
    # with numbers on both sides
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert [label.split(":")[0] for label in labels] == ["Table 8", "§4.1 / Fig. 8", "Table 11"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [v for k, v in KINDS.items() if k != "small-scale"]
    plt.close(fig)


def test_plot_report_saves_only_when_named(two_folders, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("MOBILEVIT_EDU_FIGURES", str(tmp_path / "figs"))
    rep = rp.collect(primary=two_folders[0], fallback=two_folders[1])
    plt.close(plot_report(rep))
    assert not (tmp_path / "figs").exists()  # nothing saved without a name
    plt.close(plot_report(rep, name="15_report_test"))
    assert (tmp_path / "figs" / "15_report_test.png").is_file()


def test_not_rebuilt_lists_uncovered_tables_and_treats_parts_as_covered(two_folders):
    ci, full = two_folders
    rep = rp.collect(primary=ci, fallback=full)  # rows for Table 7, Table 8, §4.1 / Fig. 8
    missing = [source for source, _ in rp.not_rebuilt(rep)]
    assert "Table 7" not in missing and "Table 8" not in missing and "§4.1 / Fig. 8" not in missing
    assert "Table 1a" in missing and "Table 2" in missing
    rep.rows.append(Result("Table 1", "SSDLite parameters", 2.7, 2.742, unit="M"))
    missing = [source for source, _ in rp.not_rebuilt(rep)]
    assert "Table 1a" not in missing and "Table 1b" not in missing  # parts of Table 1
