"""`oec view`: the page of a real OEC pool in headless Chromium (screenshot, DOM, console), and the mask view decoded
from a dataset built with the shipped student's tokenizer, compared with the dataset's own trained tokens."""

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import trained_texts
from test_report import DOM
from typer.testing import CliRunner

from oec.cli.main import app
from oec.core.errors import InputError
from oec.core.store import read_trajectories
from oec.core.types import Action, Label
from oec.data.build import BuildConfig, build
from oec.data.filter import filter_run
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import write_tasks
from oec.viewer.page import render_text
from oec.viewer.view import load, write_view

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

WARM = Path(__file__).parents[1] / "src/oec/assets/warm-student"
STUDENT_BG, EXPERT_BG, SWITCH = (0xE8, 0xF0, 0xFE), (0xFD, 0xF0, 0xE0), (0xCC, 0x00, 0x00)


class TextDOM(DOM):
    """The report test's DOM, plus each node's text."""

    def handle_data(self, data):
        self.node.children.append(Text(data, self.node))


class Text:
    tag, attrs, classes, children = "#text", {}, set(), []

    def __init__(self, data, parent):
        self.data, self.parent = data, parent

    def all(self):
        return iter(())


def text_of(node) -> str:
    return node.data if node.tag == "#text" else "".join(text_of(c) for c in node.children)


@pytest.fixture(scope="module")
def pool(tmp_path_factory, train_tasks):
    """A filtered OEC pool (scripted student and expert) and the dataset `oec build` makes of it for the shipped
    student: the same kind of directory as the demo's seed-0/pools/oec-uniform and its arm's data."""
    root = tmp_path_factory.mktemp("pool")
    tasks = write_tasks(train_tasks[:3], root / "tasks.jsonl")
    run = root / "oec-uniform"
    collect(CollectConfig(tasks=str(tasks), out=str(run), mode="oec", student="scripted:noisy", workers=3,
                          seed=3), progress=False)
    filter_run(run)
    build(BuildConfig(runs=[str(run)], out=str(root / "data"), student=str(WARM)))
    return run, root / "data"


def _switched(run):
    """A kept trajectory where the student acted before the expert took over."""
    trajs = [t for t in read_trajectories(run) if t.switch_turn and t.resolved]
    assert trajs, "the pool has no resolved trajectory with a switch after turn 0"
    return min(trajs, key=lambda t: (t.switch_turn, t.task_id, t.sample))


def _chromium(page, tmp, *flags):
    """The report test's headless Chromium, with the page's console messages logged to stderr."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed; `apt-get install -y chromium` (`make install` does this)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp / 'profile'}",
           "--enable-logging=stderr", "--v=0", *flags, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_page_in_chromium_shows_actors_switch_and_trained_tokens(pool, tmp_path):
    from datasets import load_from_disk
    from PIL import Image
    from transformers import AutoTokenizer

    run, data = pool
    traj = _switched(run)
    page = write_view(run, tmp_path / "one.html", task=traj.task_id, sample=traj.sample, data=data)
    assert page == tmp_path / "one.html" and not page.with_name("one.html.tmp").exists()

    shot = tmp_path / "shot.png"  # one browser run: the screenshot, and the DOM after the page's script ran
    proc = _chromium(page, tmp_path, "--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}",
                     "--dump-dom")
    assert proc.returncode == 0 and shot.exists() and "<html" in proc.stdout, proc.stderr[-2000:]
    assert "CONSOLE" not in proc.stderr, proc.stderr  # the page logs nothing, and no error reached the console
    colours = {c for _, c in Image.open(shot).convert("RGB").getcolors(1 << 24)}
    assert {STUDENT_BG, EXPERT_BG, SWITCH} <= colours  # student and expert turns coloured, the switch line drawn

    dom = TextDOM(proc.stdout).root
    body = dom.find("body")[0]
    assert body.attrs.get("data-ready") == "1" and "data-errors" not in body.attrs  # the script ran cleanly
    [section] = dom.find("section", cls=("trajectory",))
    turns = section.find(cls=("turn",))
    assert [n.classes - {"turn", "labelled"} for n in turns] == [{s.actor} for s in traj.steps]
    [switch] = section.find(cls=("switch",))
    assert f"turn {traj.switch_turn}" in text_of(switch)
    assert len(section.find("details", cls=("observation",))) == sum(bool(s.observation) for s in traj.steps)
    assert len(section.find("tr")) == len(traj.verdict.tests) + 1 and section.find(cls=("filter", "kept"))

    # the highlighted text is the dataset's trained tokens, decoded independently, example by example
    tokenizer = AutoTokenizer.from_pretrained(data / "tokenizer")
    rows = [r for r in load_from_disk(str(data)) if (r["task_id"], r["sample"]) == traj.key]
    examples = section.find(cls=("example",))
    assert rows and len(examples) == len(rows)
    for row, ex in zip(rows, examples):
        marks = [text_of(m) for m in ex.find("mark", cls=("trained",))]
        assert marks == trained_texts(row, tokenizer) and marks
    # and the trained tokens are the expert's turns: each expert output is highlighted, no student output is
    marked = "".join(text_of(m) for m in examples[0].find("mark", cls=("trained",)))
    assert all(s.output in marked for s in traj.steps if s.actor == "expert")
    untrained = "".join(text_of(m) for m in examples[0].find(cls=("untrained",)))
    assert all(s.output in untrained for s in traj.steps if s.actor == "student")


def test_whole_run_page_text_view_and_errors(pool, tmp_path):
    run, data = pool
    n = len(read_trajectories(run))
    page = write_view(run)
    assert page == run / "view.html"
    html = page.read_text()
    assert html.count('<section class="trajectory"') == n and html.count('class="navitem') == n
    assert html.count("<script>") == 1 and 'id="f-category"' in html  # filters by resolved / exit / category
    assert (run / "failures.jsonl").exists()  # categories are stored beside the trajectories

    traj = _switched(run)
    text = render_text(load(run, task=traj.task_id, sample=traj.sample, data=data))
    assert f"---- switch: the expert takes over at turn {traj.switch_turn} ----" in text and "⟦" in text
    assert sum(line.startswith("=== ") for line in text.splitlines()) == 1

    with pytest.raises(InputError, match="no trajectory of task 'nope'"):
        load(run, task="nope")
    with pytest.raises(InputError, match="not a dataset written by `oec build --format hf`"):
        load(run, data=tmp_path)
    with pytest.raises(InputError, match="no trajectories.jsonl here"):
        load(tmp_path)
    out = CliRunner().invoke(app, ["view", str(run), "--task", traj.task_id, "--text"])
    assert out.exit_code == 0 and out.output.startswith(f"=== {traj.task_id} sample "), out.output
    out = CliRunner().invoke(app, ["view", str(run), "--task", "nope"])
    assert out.exit_code == 2 and "no trajectory of task 'nope'" in out.output


def test_agent_text_is_escaped(pool, tmp_path):
    run, _ = pool
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    traj = read_trajectories(run)[0]
    steps = [s.model_copy(update={"observation": hostile, "thought": hostile}) for s in traj.steps]
    other = tmp_path / "run"
    other.mkdir()
    (other / "trajectories.jsonl").write_text(traj.model_copy(update={"steps": steps, "task_id": hostile})
                                              .model_dump_json() + "\n")
    with pytest.warns(UserWarning, match="cannot find the tasks"):
        html = write_view(other).read_text()
    assert html.count("<script>") == 1 and "<img src=x" not in html and "&lt;script&gt;alert(1)" in html


def test_dagger_label_sits_beside_the_student_step(pool, tmp_path):
    run, _ = pool
    traj = _switched(run)
    label = Label(output="```bash\nrunctests -x\n```", action=Action(kind="bash", command="runtests -x"))
    steps = [s.model_copy(update={"label": label}) if s.actor == "student" else s for s in traj.steps]
    other = tmp_path / "run"
    other.mkdir()
    (other / "trajectories.jsonl").write_text(traj.model_copy(update={"steps": steps}).model_dump_json() + "\n")
    with pytest.warns(UserWarning, match="cannot find the tasks"):
        dom = TextDOM(write_view(other).read_text()).root
    labelled = dom.find(cls=("turn", "labelled"))
    assert len(labelled) == traj.switch_turn and all("student" in n.classes for n in labelled)
    assert all("$ runtests -x" in text_of(n.find(cls=("label",))[0]) for n in labelled)
    assert not dom.find(cls=("turn", "expert", "labelled"))
