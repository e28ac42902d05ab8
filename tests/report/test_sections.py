"""Every number a section shows is the one its results file or store group holds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sae_store.analyze.results import read_analysis
from sae_store.report import ReportResult, load_inputs, report_sections
from sae_store.report.features_sections import MAX_DASHBOARDS
from sae_store.store import ActivationStore
from sae_store.store.results import strings

from .conftest import results_dir


def _sections(report: ReportResult) -> dict:
    return json.loads(report.summary.read_text())["sections"]


def test_every_section_ran_on_a_complete_set_of_results(full_report: ReportResult):
    assert {k: v for k, v in full_report.sections.items() if v == "not run"} == {}
    names = {p.name for p in full_report.figures}
    assert {
        "sae_quality.png",
        "probe_accuracy_per_layer.png",
        "crosslingual_scatter.png",
        "crosslingual_rho.png",
        "feature_dashboards.png",
        "intervention_effects.png",
        "dose_response.png",
        "evaluation.png",
    } <= names


def test_evaluation_shows_each_sets_stored_numbers(full_store: ActivationStore, full_report: ReportResult):
    import xarray as xr

    section = _sections(full_report)["evaluation"]
    ds = xr.open_zarr(full_store.path, group="evaluation/saes", consolidated=False)
    rows = {r["layer"]: r for r in section["per_layer"]}
    assert sorted(rows) == ds.layer.values.tolist()
    for layer, row in rows.items():
        total = ds.reconstruction_total.sel(layer=layer, role="all")
        assert row["explained_variance"] == float(total.sel(metric="explained_variance"))
        assert row["l0"] == float(total.sel(metric="l0"))
    best = section["best"]
    assert [(b["layer"], b["best"], b["by"]) for b in best] == [
        (la, "saes", "explained_variance") for la in rows
    ]


def test_evaluation_density_is_drawn_per_token_role(full_store: ActivationStore):
    """One curve per set and role (image solid, text dashed): the stored latents per density bin."""
    import xarray as xr

    from sae_store.report.evaluation_sections import _histograms

    ds = xr.open_zarr(full_store.path, group="evaluation/saes", consolidated=False)
    frames = _histograms({"saes": ds})
    assert frames.kdims == ("layer", "language")
    assert len(frames.views) == ds.sizes["layer"] * ds.sizes["language"]
    for (layer, lang), overlay in frames.views.items():
        curves = overlay.values()
        assert [c.label for c in curves] == ["saes, image", "saes, text"]
        for curve, role in zip(curves, ("image", "text"), strict=True):
            stored = ds.density_histogram.sel(layer=layer, language=lang, role=role).values
            np.testing.assert_array_equal(curve.dimension_values("latents"), stored)


def test_probe_accuracies_are_those_of_crosslayer(full_store: ActivationStore, full_report: ReportResult):
    ds = read_analysis(full_store, "crosslayer")
    probes = _sections(full_report)["bias_layers"]["probes"]
    assert len(probes) == ds.sizes["layer"] * ds.sizes["language"]
    for row in probes:
        cell = ds.sel(layer=row["layer"], language=row["language"])
        for name in ("probe_sae_accuracy", "probe_sae_ci_low", "probe_sae_ci_high", "probe_raw_accuracy"):
            assert row[name] == float(cell[name])


def test_crosslingual_correlations_are_those_stored(full_store: ActivationStore, full_report: ReportResult):
    ds = read_analysis(full_store, "crosslingual")
    section = _sections(full_report)["crosslingual"]
    assert section["languages"] == ["en", "ar"]
    rows = {r["layer"]: r for r in section["per_layer"]}
    for layer in ds["layer"].values:
        for name in (
            "rho",
            "rho_low",
            "rho_high",
            "rho_n_features",
            "overlap_abs_count",
            "overlap_abs_expected",
        ):
            assert rows[int(layer)][name] == float(ds[name].sel(layer=layer))
        assert rows[int(layer)]["rho_low"] <= rows[int(layer)]["rho"] <= rows[int(layer)]["rho_high"]


def test_interventions_match_the_cross_layer_json(full_store: ActivationStore, full_report: ReportResult):
    users_json = json.loads((results_dir(full_store) / "cross_layer_results.json").read_text())
    rows = _sections(full_report)["interventions"]["per_experiment"]
    assert {(r["experiment"], r["layer"]) for r in rows} == {
        (key, int(layer)) for key, layers in users_json.items() for layer in layers
    }
    for r in rows:
        entry = users_json[r["experiment"]][str(r["layer"])]
        assert r["differential"] == entry["differential"]
        assert [r["CI low"], r["CI high"]] == entry["differential_ci"]
        assert r["random"] == entry["random_differential"]
        assert r["targeted/random"] == entry["targeted_random_ratio"]
        # each p-value beside the quantity it tests
        assert r["differential p (Welch)"] == entry["differential_p"]
        assert (r["mean effect"], r["mean effect p (t)"]) == (entry["effect_mean"], entry["effect_p_value"])
    dose = _sections(full_report)["interventions"]["dose_response"]
    amplify = json.loads(
        (results_dir(full_store) / "intervene" / "male_biased_amplification_layer_1.json").read_text()
    )
    expected = {(d["alpha"], d["differential"]) for d in amplify["languages"]["ar"]["dose_response"]}
    got = {
        (d["alpha"], d["differential"])
        for d in dose
        if d["experiment"] == "male_biased_amplification" and d["layer"] == 1 and d["language"] == "ar"
    }
    assert got == expected and len(got) == 4


def test_sae_quality_is_read_from_cfg_json(full_store: ActivationStore, full_report: ReportResult):
    rows = _sections(full_report)["sae_quality"]["per_layer"]
    assert [r["layer"] for r in rows] == [0, 1, 2]
    saes = full_store.path.parent / "saes"
    intervene = results_dir(full_store) / "intervene"
    for r in rows:
        val = json.loads((saes / f"layer_{r['layer']}" / "cfg.json").read_text())["sae_store"]["metrics"][
            "val"
        ]
        assert (r["fvu"], r["l0"]) == (val["fvu"], val["l0"])
        # each dead-latent metric under its one name, beside the tokens it was measured on
        assert (r["dead on held-out tokens"], r["held-out tokens"]) == (val["dead_fraction"], val["tokens"])
        assert r["dead in training window"] == val["dead_fraction_train_window"]
        assert "dead_fraction" not in r and "dead fraction" not in r
        assert r["training window (tokens)"] == val["dead_window_tokens"] == 200_000
        splice = json.loads((intervene / f"male_biased_ablation_layer_{r['layer']}.json").read_text())
        assert r["CE recovered en"] == splice["languages"]["en"]["splice_quality"]["ce_recovered"]


def test_feature_dashboards_show_the_stored_top_samples(
    full_store: ActivationStore, full_report: ReportResult
):
    interpret = read_analysis(full_store, "interpret")
    stored = {
        (int(la), str(lg), int(f)): [s for s in strings(top) if s]
        for la, lg, f, top in zip(
            interpret["entry_layer"].values,
            strings(interpret["entry_language"].values),
            interpret["entry_feature"].values,
            interpret["top_sample"].values,
            strict=True,
        )
    }
    shown = _sections(full_report)["features"]["shown"]
    assert 0 < len(shown) <= min(MAX_DASHBOARDS, len(stored))
    for d in shown:
        assert d["samples"] == stored[(d["layer"], d["language"], d["feature"])]
    assert _sections(full_report)["features"]["missing_images"] == []


def test_missing_images_get_placeholders_and_a_note(full_store: ActivationStore, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(full_store.path.parent / "images", images)
    for name in ("img0000.png", "img0001.png", "img0002.png", "img0003.png"):
        (images / name).unlink()
    (images / "img0004.png").write_bytes(b"not a png")  # unreadable counts as missing too
    sections = {s.key: s for s in report_sections(load_inputs(full_store.path, images_dir=images))}
    features = sections["features"]
    shown = {s for d in features.summary["shown"] for s in d["samples"]}
    expected = sorted(f"img{int(s[1:]):04d}.png" for s in shown if int(s[1:]) <= 4)
    assert expected, "the synthetic top samples should include some of the removed images"
    assert features.status == "partial" and features.summary["missing_images"] == expected
    notice = [i for i in features.items if type(i).__name__ == "Notice"]
    assert len(notice) == 1 and f"{len(expected)} images could not be read" in notice[0].markdown


def test_no_images_folder_at_all(full_store: ActivationStore, tmp_path):
    sections = {
        s.key: s for s in report_sections(load_inputs(full_store.path, images_dir=tmp_path / "nowhere"))
    }
    shown = {s for d in sections["features"].summary["shown"] for s in d["samples"]}
    assert len(sections["features"].summary["missing_images"]) == len(shown)


@pytest.mark.parametrize("threshold", [0.05])
def test_volcano_draws_every_significant_feature(full_store: ActivationStore, threshold: float):
    bias = read_analysis(full_store, "bias")
    sections = {s.key: s for s in report_sections(load_inputs(full_store.path))}
    counts = sections["volcano"].summary["significant_per_layer_language"]
    for key, n in counts.items():
        layer, lang = key.split("/")
        q = bias["q"].sel(layer=int(layer), language=lang).values
        assert n == int(np.sum(q < threshold))


def test_interval_that_excludes_its_estimate_still_draws(full_store: ActivationStore, tmp_path):
    """An interval need not contain the estimate drawn with it: whiskers are based at its bounds."""
    from sae_store.report.bias_sections import bias_layers_section
    from sae_store.report.plotting import save_png

    payload = json.loads((results_dir(full_store) / "comprehensive_analysis_results.json").read_text())
    top = payload["by_language"]["en"]["layers"]["2"]["male_biased_features"][0]
    top["ci_low"], top["ci_high"] = top["d"] + 0.5, top["d"] + 1.0
    section = bias_layers_section(payload)
    for fig in section.figures:
        assert save_png(fig.static, tmp_path / f"{fig.name}.png").stat().st_size > 1000


def test_qualitative_table_keeps_the_analysis_column_order(full_store: ActivationStore):
    from sae_store.analyze.qualitative import COLUMNS

    sections = {s.key: s for s in report_sections(load_inputs(full_store.path))}
    table = next(i for i in sections["qualitative"].items if type(i).__name__ == "Table")
    assert list(table.frame.columns) == list(COLUMNS)
    stored = read_analysis(full_store, "qualitative")
    assert sections["qualitative"].summary["rows"] == stored.sizes["row"] > 0
