"""A configuration that raises on every run (a bug in a user's shortcut, a GPU it does not fit
on): the search stays unfinished and resumable until --give-up-errored makes its error final.
The space file is named by a relative path, as a user types it: the trials, which Ray runs in
their own directories, find it too."""

import json
import textwrap

import pandas as pd
from optuna.trial import TrialState

BROKEN_SPACE = textwrap.dedent('''
    from residual import ShortcutKind, register_shortcut_kind
    from residual.shortcuts import Shortcut, register_shortcut
    from spaces import SearchSpace

    register_shortcut_kind(ShortcutKind("broken", "y = h(x) + F(x), h raises", "a user's bug"))

    @register_shortcut("broken")
    class Broken(Shortcut):
        def forward(self, base, x):
            raise RuntimeError("out of memory (simulated)")

    def define(trial):
        trial.suggest_categorical("shortcut", ["identity", "broken"])

    space = SearchSpace("errored", define, fixed={"activation": "original"},
                        anchors=[{"shortcut": "identity"}, {"shortcut": "broken"}])
''')


def test_give_up_errored_makes_an_error_final_and_the_search_finishes(tmp_path, cli, study,
                                                                      one_truth):
    (tmp_path / "broken_space.py").write_text(BROKEN_SPACE)
    args = ["run", "broken_space.py:space", "--scale", "smoke", "--sampler", "grid", "--epochs",
            2, "--scheduler", "none", "--max-failures", 0, "--name", "errored"]
    first = cli(*args, cwd=tmp_path)
    assert first.returncode == 3, first.stdout[-3000:] + first.stderr[-3000:]
    assert "1 trial(s) ended in error" in first.stdout
    results = tmp_path / "results"
    broken = study(results, "errored").trials[1]
    assert broken.state == TrialState.RUNNING and broken.user_attrs["errored"]

    given_up = cli(*args, "--give-up-errored", cwd=tmp_path)
    assert given_up.returncode == 0, given_up.stdout[-3000:] + given_up.stderr[-3000:]
    assert "gave up on 1 configuration(s) whose trials ended in error (Optuna trial(s) 1)" \
        in given_up.stdout
    assert "#1/s0" not in given_up.stdout.split("gave up")[0]  # not started again
    trials = study(results, "errored").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs["outcomes"] == ["error"]
    search = results / "searches" / "errored"
    assert json.loads((search / "search.json").read_text())["finished"] is True
    ranking = pd.read_csv(search / "ranking.csv")
    assert ranking.set_index("optuna_trial").loc[1, "outcomes"] == "error"
    one_truth(results, "errored", 2, errors_final=True)

    again = cli(*args, cwd=tmp_path)  # finished: shown, not resumed
    assert again.returncode == 0 and "has finished before" in again.stdout, again.stdout[-3000:]
