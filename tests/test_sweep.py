"""Hyperparameter sweeps on the tiny model: the spec, the study, pruning, storage, lineage."""
import json

import pytest

from harness import Experiment, QLoRA, Sweep, baselines
from harness._engine import run_experiment, run_sweep
from harness._engine.events import of
from harness.errors import SpecError
from harness.store import Store


def _spec(tmp_path, tiny_model_dir, name="sw", **sweep):
    from tiny import write_classification_jsonl

    write_classification_jsonl(tmp_path / "data.jsonl", n=48)
    (tmp_path / "s.md").write_text("answer 1 or 0")
    sweep = {"r": [2, 4], "learning_rate": (1e-3, 3e-2), "epochs": (1, 2), "trials": 3, **sweep}
    sweep = {k: v for k, v in sweep.items() if v is not None or k == "pruner"}
    return Experiment(name=name, data="data.jsonl", model=str(tiny_model_dir), split=(24, 12, 12),
                      baselines=[baselines.zero_shot("s.md")], regression=None, forgetting=None,
                      underpowered="warn", candidate=QLoRA(batch_size=8, evals_per_epoch=3, warmup_ratio=0.0), sweep=Sweep(**sweep))


# --- the spec --------------------------------------------------------------------------------

def test_a_sweep_spec_refuses_what_it_cannot_search():
    with pytest.raises(SpecError, match="Sweep has no field 'rank'; did you mean r"):
        Sweep(rank=[4, 8])
    with pytest.raises(SpecError, match="learning_rate range must be .low, high. with low < high"):
        Sweep(learning_rate=(5e-4, 1e-5))
    with pytest.raises(SpecError, match="log scale"):
        Sweep(learning_rate=(0, 1e-3))
    with pytest.raises(SpecError, match="nothing to search"):
        Sweep(trials=3)
    with pytest.raises(SpecError, match='tied to the rank like "2r"'):
        Sweep(r=[4, 8], alpha="double")
    with pytest.raises(SpecError, match="add candidate=QLoRA"):
        Experiment(name="x", data="d.jsonl", baselines=[baselines.zero_shot("s.md")], sweep=Sweep(r=[4]))


def test_choices_ranges_tied_alpha_and_define_by_run_become_trial_suggestions():
    import optuna

    def extra(trial):
        return {"dropout": trial.suggest_float("dropout", 0.0, 0.2)}

    sweep = Sweep(r=[4, 8, 16], learning_rate=(1e-5, 5e-4), epochs=(1, 3), alpha="2r", space=extra)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=1))
    trial = study.ask()
    params = sweep.suggest(trial)
    assert params["r"] in (4, 8, 16) and params["alpha"] == 2 * params["r"]
    assert 1e-5 <= params["learning_rate"] <= 5e-4 and params["epochs"] in (1, 2, 3)
    assert isinstance(params["epochs"], int) and 0 <= params["dropout"] <= 0.2
    lr = study.trials[0].distributions["learning_rate"]
    assert lr.log and not study.trials[0].distributions["epochs"].log
    QLoRA(**{**QLoRA().config(), **params})  # every proposal is a valid QLoRA
    assert Sweep(r=[4, 8], learning_rate=(1e-5, 5e-4)).config() != Sweep(r=[4, 8], learning_rate=[1e-5, 5e-4]).config()


# --- the study ------------------------------------------------------------------------------

def test_a_sweep_runs_its_budget_mirrors_every_trial_and_its_winner_becomes_the_gated_candidate(
        tmp_path, tiny_model_dir):
    spec = _spec(tmp_path, tiny_model_dir)
    store = Store(tmp_path / "h.duckdb")
    result = run_experiment(spec, store, root=tmp_path, log=lambda _: None, sweep=True)
    trials = store.trials(experiment="sw")
    assert len({t.study for t in trials}) == 1
    finished = [t for t in trials if t.state in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3 and [t.number for t in trials] == list(range(len(trials)))
    for t in trials:
        assert t.params["r"] in (2, 4) and t.steps > 0 and t.seconds > 0 and t.worker
        assert any(c["split"] == "val" for c in t.curves)
        if t.state == "COMPLETE":
            assert t.value == t.val_metrics["accuracy"] and t.adapter_sha256
    best = max((t for t in trials if t.state == "COMPLETE"), key=lambda t: (t.value, -t.number))
    [study] = of(result.events, "sweep.study")
    assert study.fields["study"] == trials[0].study
    reported = [(e.fields["trial"], e.fields["outcome"], e.fields["value"]) for e in of(result.events, "sweep.trial")]
    assert reported == [(t.number, t.state.lower(), t.value) for t in finished]
    # the winner is the candidate: same settings, its cached adapter reused, then gated on test
    lineage = result.candidate.config["sweep"]
    assert lineage["trial"] == best.number and lineage["params"] == best.params
    assert result.candidate.config["r"] == best.params["r"]
    assert result.candidate.config["learning_rate"] == pytest.approx(best.params["learning_rate"])
    [chosen] = of(result.events, "candidate.chosen")
    assert (chosen.fields["source"], chosen.fields["trial"], chosen.fields["value"]) == ("sweep", best.number,
                                                                                         best.value)
    assert [(e.fields["who"], e.fields["adapter_sha256"]) for e in of(result.events, "candidate.cached")] == [
        ("sw: candidate", best.adapter_sha256)]
    assert set(result.gates) >= {"five_percent_rule", "overfit"}
    assert result.candidate.metrics["val"]["accuracy"] == pytest.approx(best.value)
    [run] = store.runs("sw")
    [candidate] = [a for a in store.approaches(run.run_id) if a.kind == "candidate"]
    assert candidate.config["sweep"]["study"] == trials[0].study
    assert candidate.adapter_sha256 == best.adapter_sha256

    # Without --harness-sweep the stored best trial is reused: nothing is searched or trained again.
    rerun = run_experiment(spec, store, root=tmp_path, log=lambda _: None)
    assert rerun.candidate.config["sweep"]["trial"] == best.number
    assert [e.fields["trial"] for e in of(rerun.events, "candidate.chosen")] == [best.number]
    for kind in ("sweep.study", "sweep.progress", "sweep.trial", "training.progress", "candidate.trained"):
        assert not of(rerun.events, kind), kind
    assert len(store.trials(experiment="sw")) == len(trials)


def test_the_same_seed_run_sequentially_proposes_the_same_parameters(tmp_path, tiny_model_dir):
    proposals = []
    for attempt in ("a", "b"):
        folder = tmp_path / attempt
        folder.mkdir()
        spec = _spec(folder, tiny_model_dir, pruner=None, trials=3)
        store = Store(folder / "h.duckdb")
        run_sweep(spec, store, root=folder, log=lambda _: None)
        proposals.append([t.params for t in store.trials(experiment="sw")])
    assert proposals[0] == proposals[1] and len(proposals[0]) == 3
    assert len({json.dumps(p, sort_keys=True) for p in proposals[0]}) > 1  # it did search


def test_pruning_stops_a_trailing_trial_early(tmp_path, tiny_model_dir):
    """Two full trials set the median; a trial with a learning rate far too small trails it at
    its first evaluation and is stopped there, its steps and curve still recorded."""
    def space(trial):
        # the first two trials learn, the later ones barely move
        return {"learning_rate": 3e-2 if trial.number < 2 else 1e-6}

    spec = _spec(tmp_path, tiny_model_dir, r=[4], learning_rate=None, epochs=[2], space=space, trials=4)
    store = Store(tmp_path / "h.duckdb")
    seen = []
    run_sweep(spec, store, root=tmp_path, log=lambda _: None, on_event=seen.append)
    trials = store.trials(experiment="sw")
    states = [t.state for t in trials]
    assert states[:2] == ["COMPLETE", "COMPLETE"] and "PRUNED" in states[2:], states
    pruned = [t for t in trials if t.state == "PRUNED"]
    full = trials[0].steps
    assert all(t.steps < full and t.value is None for t in pruned)
    stopped = {e.fields["trial"]: e.fields["pruned_at"] for e in of(seen, "sweep.trial")
               if e.fields["outcome"] == "pruned"}
    assert stopped == {t.number: t.steps for t in pruned}
    # the pruner's own line arrives as the sweep's progress, for the trial it stopped
    assert set(stopped) <= {e.fields.get("trial") for e in of(seen, "sweep.progress")}
    for t in pruned:  # a pruned adapter is never used: not kept on disk
        assert not list(tmp_path.glob(f"sweeps/*/trial-{t.number}"))
    assert list(tmp_path.glob("sweeps/*/trial-0/adapter/*.safetensors"))
    # as Optuna's tools show the study: the objective named, intermediate values the val loss itself
    import optuna

    from harness.candidate import sweep as sweep_mod

    study = optuna.load_study(study_name=trials[0].study,
                              storage=sweep_mod.open_storage(str(tmp_path / sweep_mod.JOURNAL_NAME)))
    assert study.metric_names == ["accuracy"]
    curve = {c["step"]: c["loss"] for c in trials[0].curves if c["split"] == "val" and c["step"]}
    assert curve and study.trials[0].intermediate_values == pytest.approx(curve)


def test_a_worker_killed_mid_trial_leaves_it_failed_and_the_next_worker_finishes_the_budget(
        tmp_path, tiny_model_dir):
    """SIGKILL a `harness sweep` worker while its trial runs; the journal has no heartbeat, so
    the next worker on this host sees the owner's process is gone, fails the trial, and then
    runs the study to its budget (failed trials do not count)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import optuna

    from harness.candidate import sweep as sweep_mod

    spec = _spec(tmp_path, tiny_model_dir, trials=2, pruner=None, epochs=[40])  # a long first trial
    (tmp_path / "spec.py").write_text(
        "from harness import Experiment, QLoRA, Sweep, baselines\n"
        f"sw = Experiment(name='sw', data='data.jsonl', model={str(tiny_model_dir)!r}, split=(24, 12, 12),\n"
        "    baselines=[baselines.zero_shot('s.md')], regression=None, forgetting=None,\n"
        "    underpowered='warn', candidate=QLoRA(batch_size=8, evals_per_epoch=3, warmup_ratio=0.0),\n"
        "    sweep=Sweep(r=[2, 4], learning_rate=(1e-3, 3e-2), epochs=[40], trials=2, pruner=None))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    worker = subprocess.Popen([sys.executable, "-m", "harness.cli", "sweep", "spec.py", "--store", "h.duckdb"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    journal = str(tmp_path / sweep_mod.JOURNAL_NAME)
    deadline = time.monotonic() + 120
    running = []
    while time.monotonic() < deadline and not running:
        time.sleep(0.5)
        if os.path.exists(journal):
            storage = sweep_mod.open_storage(journal)
            running = [t for s in storage.get_all_studies() for t in storage.get_all_trials(s._study_id)
                       if t.state.name == "RUNNING" and t.user_attrs.get("params")]
    assert running, "the worker never started a trial: " + (worker.stderr.read() if worker.poll() is not None else "")
    time.sleep(1.0)  # mid-training
    worker.send_signal(signal.SIGKILL)
    worker.wait()

    seen = []  # the second worker, same spec and study
    run_sweep(spec, Store(tmp_path / "h.duckdb"), root=tmp_path, log=lambda _: None, on_event=seen.append)
    trials = Store(tmp_path / "h.duckdb").trials(experiment="sw")
    states = [t.state for t in trials]
    assert states[0] == "FAIL" and "died mid-trial" in trials[0].error, states
    assert states.count("COMPLETE") == 2 and "RUNNING" not in states
    # this worker ran the two complete trials, not the dead one again
    assert [(e.fields["trial"], e.fields["outcome"]) for e in of(seen, "sweep.trial")] == [
        (t.number, "complete") for t in trials if t.state == "COMPLETE"]
    loaded = optuna.load_study(study_name=trials[0].study, storage=sweep_mod.open_storage(journal))
    assert [t.state.name for t in loaded.trials] == states  # the store mirrors the study exactly


def test_a_sweep_needs_a_validation_split(tmp_path, tiny_model_dir):
    spec = _spec(tmp_path, tiny_model_dir)
    spec = Experiment(**{**{f: getattr(spec, f) for f in ("name", "data", "model", "baselines", "candidate",
                                                              "sweep", "regression")}, "split": (36, 0, 12)})
    with pytest.raises(SpecError, match="picks its winner on the validation split"):
        run_sweep(spec, Store(tmp_path / "h.duckdb"), root=tmp_path, log=lambda _: None)


# --- the study as Optuna sees it ---------------------------------------------------------------

def _ask_two_workers(sampler_for):
    """Two workers on one storage, each with its own sampler, start a trial before either ends."""
    import optuna

    storage = optuna.storages.InMemoryStorage()
    workers = [optuna.create_study(study_name="s", storage=storage, load_if_exists=True, direction="maximize",
                                   sampler=sampler_for()) for _ in range(2)]
    firsts = [w.ask() for w in workers]
    return [(t.suggest_int("r", 1, 1024), t.suggest_float("learning_rate", 1e-6, 1e-1, log=True)) for t in firsts]


def test_two_workers_starting_together_propose_different_first_trials():
    import optuna

    from harness.candidate import sweep as sweep_mod

    spec = Sweep(r=(1, 1024), learning_rate=(1e-6, 1e-1), trials=12)
    same_seed = _ask_two_workers(lambda: optuna.samplers.TPESampler(seed=0))
    assert same_seed[0] == same_seed[1]  # what one seed per worker does: the setup can tell
    first, second = _ask_two_workers(lambda: sweep_mod._sampler(spec))
    assert first != second
    assert _ask_two_workers(lambda: sweep_mod._sampler(spec)) == [first, second]  # and reruns the same way


def test_the_pruner_reads_intermediate_values_as_losses_old_negated_ones_too():
    import optuna

    from harness.candidate import sweep as sweep_mod

    def study_with(finished_losses, sign=1):
        study = optuna.create_study(direction="maximize",
                                    pruner=sweep_mod.loss_pruner(optuna.pruners.MedianPruner(n_startup_trials=2)))
        for loss in finished_losses:
            trial = study.ask()
            trial.report(sign * loss, 10)
            study.tell(trial, 0.5)
        return study

    for sign in (1, -1):  # -1: trials a journal kept from before, when the loss was reported negated
        study = study_with([1.0, 1.2, 0.8], sign)
        worse, better = study.ask(), study.ask()
        worse.report(2.0, 10)
        better.report(0.5, 10)
        assert worse.should_prune() and not better.should_prune()
