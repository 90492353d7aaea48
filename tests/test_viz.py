"""clinical_bert.viz outside the notebook: scores on constructed attention and masks, Figure 5
colours, the files every figure function writes, Grad-CAM shape and range."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from clinical_bert import viz
from clinical_bert.config import ClinicalBertConfig
from clinical_bert.model import ClinicalBert


def _mask(grid_cells, grid=4, px=8):
    "An (grid*px)^2 mask covering the listed (row, col) cells completely."
    m = np.zeros((grid * px, grid * px), bool)
    for r, c in grid_cells:
        m[r * px:(r + 1) * px, c * px:(c + 1) * px] = True
    return m


def _one_hot(i, grid=4):
    a = np.zeros(grid * grid)
    a[i] = 1.0
    return a


def test_pointing_game_and_mass_on_constructed_inputs():
    mask = _mask([(1, 2), (1, 3)])  # regions 6 and 7 of a 4 x 4 grid
    assert viz.pointing_game(_one_hot(6), mask, 4) and viz.pointing_game(_one_hot(7), mask, 4)
    assert not viz.pointing_game(_one_hot(5), mask, 4) and not viz.pointing_game(_one_hot(10), mask, 4)
    assert viz.attention_in_mask(_one_hot(7), mask, 4) == 1.0
    assert viz.attention_in_mask(_one_hot(0), mask, 4) == 0.0
    a = np.zeros(16)
    a[[6, 7, 0, 15]] = [0.3, 0.2, 0.4, 0.1]  # half the mass inside, but the maximum outside
    assert viz.attention_in_mask(a, mask, 4) == pytest.approx(0.5)
    assert not viz.pointing_game(a, mask, 4)
    assert viz.attention_in_mask(np.full(16, 1 / 16), mask, 4) == pytest.approx(2 / 16)
    quarter = np.zeros((32, 32), bool)
    quarter[8:12, 16:20] = True  # a quarter of region 6
    assert viz.attention_in_mask(a, quarter, 4) == pytest.approx(0.3 / 4)
    assert viz.pointing_game(_one_hot(6), quarter, 4)


def test_scores_tell_what_is_wrong():
    mask = _mask([(0, 0)])
    with pytest.raises(ValueError, match="mask is empty"):
        viz.pointing_game(_one_hot(0), np.zeros_like(mask), 4)
    with pytest.raises(ValueError, match="one view's slice"):
        viz.attention_in_mask(np.ones(32) / 32, mask, 4)
    with pytest.raises(ValueError, match="sums to 0"):
        viz.attention_in_mask(np.zeros(16), mask, 4)


def test_mask_to_grid_is_the_covered_fraction():
    m = np.zeros((12, 12), bool)
    m[:3, :6] = True  # half of the top-left cell of a 2 x 2 grid
    np.testing.assert_allclose(viz.mask_to_grid(m, 2), [[0.5, 0.0], [0.0, 0.0]])


def test_mesh_highlight_and_html_colours(tmp_path):
    rows = viz.mesh_highlight("left pleural effusion . heart size normal . small pneumothorax .",
                              "bilateral pleural effusions . no pneumothorax .")
    # "heart size normal" is a MeSH phrase of the shipped vocabulary; the reference has none of its words
    assert rows == [("left", None), ("pleural", "hit"), ("effusion", "hit"), (".", None), ("heart", "miss"),
                    ("size", "miss"), ("normal", "miss"), (".", None), ("small", None), ("pneumothorax", "hit"),
                    (".", None)]
    page = viz.highlight_html([("a&b", "heart is enlarged .", "the heart is normal .")], path=tmp_path / "f5.html")
    hit, miss = viz.STATUS_COLOURS["hit"], viz.STATUS_COLOURS["miss"]
    assert f'class="mesh-hit" style="background-color:{hit}">heart<' in page
    assert f'class="mesh-miss" style="background-color:{miss}">enlarged<' in page
    assert "a&amp;b" in page and (tmp_path / "f5.html").stat().st_size > len(page)


def _png(path):
    assert path.is_file() and path.stat().st_size > 1000, path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_write_png_files(tmp_path):
    viz.highlight_figure([("s1", "heart is enlarged .", "cardiomegaly .")], tmp_path / "f5.png")
    _png(tmp_path / "f5.png")
    img = torch.rand(3, 64, 64)
    a = np.full((2, 4), 0.25)
    viz.attention_overlay(img, a[0], 2, title="effusion", path=tmp_path / "ov.png")
    _png(tmp_path / "ov.png")
    viz.attention_grid_figure(img, ["effusion", "heart"], {"w/o sparsity": a, "with sparsity": a}, 2,
                              path=tmp_path / "f6.png")
    _png(tmp_path / "f6.png")
    viz.length_distribution_plot({"Baseline": [10, 12, 15, 11], "+CD": [20, 22, 19]}, [14, 16, 15, 18],
                                 path=tmp_path / "f7.png")
    _png(tmp_path / "f7.png")
    viz.gradcam_figure(img[None], np.random.rand(1, 64, 64), ["x"], path=tmp_path / "gc.png")
    _png(tmp_path / "gc.png")
    assert not plt.get_fignums()  # every figure function closes what it made


def test_report_lengths_count_words_not_punctuation():
    assert viz.report_lengths(["no acute process .", "heart normal . lungs clear ."]) == [3, 4]


def test_gradcam_shape_and_range():
    torch.manual_seed(0)
    model = ClinicalBert(ClinicalBertConfig.tiny(mode="rd", rd_labels=3))
    maps = viz.gradcam_maps(model, torch.randn(2, 3, 64, 64), 1)
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    with pytest.raises(ValueError, match="0..2"):
        viz.gradcam_maps(model, torch.randn(1, 3, 64, 64), 3)


def test_word_region_attention_follows_the_model_settings():
    torch.manual_seed(0)
    model = ClinicalBert(ClinicalBertConfig.tiny(image_size=128, imm_k=3))
    img, ids, tags = torch.randn(3, 128, 128), [5, 6, 7, 8], [0, 1, 0, 1]
    words, alpha = viz.word_region_attention(model, img, ids, tags)
    assert words == ["6", "8"] and alpha.shape == (2, 16)
    assert ((alpha > 0).sum(1) == 3).all()  # K = imm_k regions kept (eq. 6)
    _, dense = viz.word_region_attention(model, img, ids, tags, sparsity="none")
    assert (dense > 0).all() and np.allclose(dense.sum(1), 1, atol=1e-5)
