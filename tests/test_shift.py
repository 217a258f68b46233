"""Covariate-shift analysis with the real packaged embedder, and the divergence-triggered switch."""

import csv

import numpy as np
import pytest

from oec.core.errors import InputError
from oec.core.store import read_trajectories
from oec.core.types import Action, Step
from oec.rollout.collect import CollectConfig, collect
from oec.shift.embed import history_text
from oec.shift.stats import Gaussian, compare, frechet, kl
from oec.tasks.io import generate_tasks, write_tasks

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


def test_distances_of_known_gaussians():
    a = Gaussian(np.zeros(2), np.eye(2))
    b = Gaussian(np.array([3.0, 4.0]), 4 * np.eye(2))
    assert frechet(a, a) == pytest.approx(0, abs=1e-9) and kl(a, a) == pytest.approx(0, abs=1e-9)
    assert frechet(a, b) == pytest.approx(25 + 2 + 8 - 2 * 2 * 2)  # |d|^2 + tr(A + B - 2 sqrt(AB))
    assert kl(a, b) == pytest.approx(0.5 * (2 / 4 + 25 / 4 - 2 + 2 * np.log(4)))


def test_compare_is_seeded_and_separates_shifted_samples():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 20)), rng.normal(size=(40, 20))
    z = rng.normal(size=(40, 20)) + 1.0
    same = compare(x, y, 8, 50, np.random.default_rng(1))
    assert same == compare(x, y, 8, 50, np.random.default_rng(1))
    shifted = compare(x, z, 8, 50, np.random.default_rng(1))
    assert shifted.fd_lo > same.fd_hi and shifted.kl_lo > same.kl_hi
    assert same.fd_lo <= same.fd <= same.fd_hi


def test_history_text_variants():
    steps = [Step(turn=0, actor="student", output="x", action=Action(kind="bash", command="ls"), observation="a.py\n",
                  returncode=0)]
    full = history_text(steps, "fix it")
    assert "[problem] fix it" in full and "[action] ls" in full and "a.py" in full
    assert "fix it" not in history_text(steps, "fix it", role_only=True)
    assert "a.py" not in history_text(steps, "fix it", actions_only=True)
    assert history_text([], "", role_only=True) == ""


def test_a_history_past_the_window_keeps_its_tail_without_a_warning(capfd):
    from oec.shift.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder("minilm")
    text = " ".join(f"w{i}" for i in range(2000))  # well past the tokenizer's 512 as well as the 256 window
    fitted = embedder.fit_window(text)
    assert text.endswith(" " + fitted) and fitted.startswith("w")  # the text's own tail, from a whole word
    assert len(embedder.tokenizer(fitted, add_special_tokens=False)["input_ids"]) <= embedder.window - 2
    assert "sequence length" not in capfd.readouterr().err
    blob = "ok " + "ab" * 3000  # no word boundary within the window: the tail is cut where the window begins
    assert blob.endswith(embedder.fit_window(blob)) and len(embedder.fit_window(blob)) > 500


@pytest.fixture(scope="module")
def shifted_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("shift")
    tasks = write_tasks(generate_tasks("toy", "train", 32, seed=5), root / "tasks.jsonl")
    # the analysis stops at turn 7 (below), so the student's turns past 9 would be collected for nothing (a third of
    # its steps); an episode's first turns do not depend on its step limit
    student = {"mode": "student", "student": "scripted:noisy", "loop": {"step_limit": 9}}
    for name, opts in (("bc", {"mode": "expert"}), ("s0", student)):
        collect(CollectConfig(tasks=str(tasks), out=str(root / name), workers=4, **opts), progress=False)
    from oec.shift.analyze import analyze
    from oec.shift.config import ShiftConfig

    # the expert's episodes end at turn 7, so no later turn has a baseline: max_turn skips embedding a quarter of the
    # student's histories for nothing
    cfg = ShiftConfig(cache=str(root / "cache"), bootstrap=60, max_turn=7)
    result = analyze({"student": str(root / "s0"), "expert": str(root / "bc")}, root / "out", cfg, progress=False)
    return root, tasks, cfg, result


@pytest.mark.slow
def test_student_diverges_from_expert_beyond_the_baseline(shifted_runs):
    root, _, _, result = shifted_runs
    expert = read_trajectories(root / "bc")  # the expert population: every task resolved (as test_acceptance.py)
    assert len(expert) == 32 and all(t.resolved for t in expert)
    rows = list(csv.DictReader((root / "out/per_turn.csv").open()))
    assert {"turn", "pair", "n_a", "n_b", "fd", "fd_lo", "fd_hi", "kl", "kl_lo", "kl_hi"} <= set(rows[0])
    by = {(r["pair"], int(r["turn"])): r for r in rows if r["valid"] == "True"}
    later = [t for (p, t) in by if p == "student-expert" and t >= 3 and ("expert-expert", t) in by]
    assert len(later) >= 3
    for key in ("fd", "kl"):
        above = [t for t in later if float(by["student-expert", t][key]) > float(by["expert-expert", t][f"{key}_hi"])]
        assert len(above) >= len(later) - 1, (key, above, later)
    assert "grows with turn" in result["summary"]
    assert (root / "out/fd.png").stat().st_size > 10_000 and (root / "out/kl.png").exists()
    assert "Covariate shift" in (root / "out/summary.md").read_text()


@pytest.mark.slow
def test_rerun_from_the_cache_is_identical(shifted_runs):
    from oec.shift.analyze import analyze

    root, _, cfg, _ = shifted_runs
    analyze({"student": str(root / "s0"), "expert": str(root / "bc")}, root / "again", cfg, progress=False)
    assert (root / "again/per_turn.csv").read_text() == (root / "out/per_turn.csv").read_text()


@pytest.mark.slow
def test_turns_where_every_history_is_the_same_text_are_skipped_not_a_crash(shifted_runs):
    """Actions only, without the problem: at turn 1 every expert history is its first action, `runtests`, so that
    side has a zero covariance (this raised numpy's LinAlgError); the turn is reported as skipped, with why."""
    from oec.shift.analyze import analyze

    root, _, cfg, _ = shifted_runs
    cfg = cfg.model_copy(update={"role_only": True, "actions_only": True, "max_turn": 2})
    result = analyze({"student": str(root / "s0"), "expert": str(root / "bc")}, root / "bare", cfg, progress=False)
    rows = {(r["pair"], r["turn"]): r for r in result["rows"]}
    assert rows["expert-expert", 1]["skipped"].startswith("no spread") and not rows["expert-expert", 1]["valid"]
    assert any(r["valid"] for r in result["rows"])  # later turns differ and are compared
    assert "are not plotted: no spread" in result["summary"]
    assert (root / "bare/trigger.json").exists()


def test_half_samples_without_spread_do_not_break_the_intervals():
    from oec.shift.stats import compare, has_spread

    rng = np.random.default_rng(0)
    a = np.vstack([np.ones((14, 5)), rng.normal(size=(2, 5))])  # most half-samples hold only the repeated row
    b = rng.normal(size=(16, 5))
    assert has_spread(a) and not has_spread(a[:14])
    stats = compare(a, b, 2, 50, np.random.default_rng(1))
    assert np.isfinite([stats.fd, stats.fd_lo, stats.fd_hi, stats.kl_lo, stats.kl_hi]).all()
    assert stats.fd_lo <= stats.fd <= stats.fd_hi


@pytest.mark.slow
def test_trigger_switches_where_the_score_first_exceeds_the_threshold(shifted_runs, tmp_path):
    root, tasks, _, _ = shifted_runs
    tasks = write_tasks(generate_tasks("toy", "train", 16, seed=7), tmp_path / "tasks.jsonl")
    cfg = CollectConfig(tasks=str(tasks), out=str(tmp_path / "trig"), mode="oec", student="scripted:noisy",
                        switch=f"trigger:{root / 'out'}", trigger_threshold=0.9, workers=4)
    collect(cfg, progress=False)
    trajs = read_trajectories(tmp_path / "trig")
    switched = [t for t in trajs if t.switch_turn is not None]
    assert switched and len(trajs) == 16
    for t in trajs:
        scores = t.switch_info["scores"]
        assert [s["turn"] for s in scores] == list(range(len(scores)))
        k = t.switch_turn
        if k is None:
            assert all(s.actor == "student" for s in t.steps)
            continue
        assert all(s["distance"] <= s["threshold"] for s in scores[:k]) and \
            scores[k]["distance"] > scores[k]["threshold"]
        assert [s.actor for s in t.steps] == ["student"] * k + ["expert"] * (len(t.steps) - k)
        assert t.switch_info["reason"].startswith(f"turn {k}: Mahalanobis distance")


def test_bad_shift_inputs(tmp_path):
    from oec.shift.analyze import analyze

    with pytest.raises(InputError, match="--reference 'expert' is not among"):
        analyze({"a": str(tmp_path), "b": str(tmp_path)}, tmp_path / "o")
    with pytest.raises(InputError, match="no trigger.json"):
        from oec.rollout.schedules import make_schedule

        make_schedule("oec", f"trigger:{tmp_path}")


def test_fast_ledoit_wolf_and_leave_one_out_match_the_slow_ways():
    from sklearn.covariance import LedoitWolf

    from oec.shift.stats import ledoit_wolf, loo_mahalanobis, mahalanobis

    rng = np.random.default_rng(3)
    x = rng.normal(size=(25, 40)) @ rng.normal(size=(40, 40))
    cov, shrink = ledoit_wolf(x)
    np.testing.assert_allclose(cov, LedoitWolf().fit(x).covariance_, atol=1e-10)
    brute = []
    for i in range(len(x)):
        rest = np.delete(x, i, axis=0)
        s = np.cov(rest.T, bias=True)
        c = (1 - shrink) * s + shrink * np.trace(s) / s.shape[0] * np.eye(s.shape[0])
        brute.append(mahalanobis(x[i], rest.mean(axis=0), np.linalg.inv(c))[0])
    np.testing.assert_allclose(loo_mahalanobis(x, shrink), brute, rtol=1e-8)


def test_concurrent_first_embeddings_load_the_model_once_and_leave_torch_on_cpu():
    """Episodes call the trigger's embedder from many threads; the lazy model load must not race (a race once left
    torch's meta-device mode switched on for the rest of the process)."""
    import threading

    import torch

    from oec.shift.embed import make_embedder

    emb = make_embedder("minilm", None)
    threads = [threading.Thread(target=emb.embed, args=([f"history {i}"],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.empty(1).device.type == "cpu" and emb._model is not None


def test_plots_without_a_valid_turn_say_so_without_a_warning(tmp_path, recwarn):
    """Too few trajectories for any turn (a smoke-sized experiment): the plots are still written, and matplotlib's
    "No artists with labels" warning is not printed."""
    from oec.shift.report import write_plots

    rows = [{"pair": "student-expert", "turn": 0, "valid": False, "fd": 0.0, "fd_lo": 0.0, "fd_hi": 0.0, "kl": 0.0,
             "kl_lo": 0.0, "kl_hi": 0.0}]
    write_plots(rows, tmp_path, "expert")
    assert (tmp_path / "fd.png").stat().st_size > 1000 and (tmp_path / "kl.png").exists()
    assert not [w for w in recwarn if "artists" in str(w.message)]
