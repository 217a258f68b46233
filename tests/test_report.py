"""`oec report`: the page a real browser builds from an experiment directory, and escaping of agent-written text."""

import base64
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from oec.core.errors import InputError
from oec.core.store import read_trajectories
from oec.experiments.report import write_report
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import write_tasks

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

RESULTS = """arm,size,seed,resolve_rate,ci_lo,ci_hi,expert_tokens,n,mean_turns
bc,10,0,0.30,0.20,0.40,1000,100,7.5
bc,10,1,0.34,0.24,0.44,1000,100,7.1
bc,20,0,0.45,0.35,0.55,2000,100,7.0
oec,10,0,0.40,0.30,0.50,600,100,8.0
oec,20,0,0.50,0.40,0.60,1200,100,8.2
"""
CLAIMS = """claim,size,effect,lo,hi,half_width,verdict,description
C1,,0.3,0.1,0.5,0.2,reproduced,student-expert divergence grows per turn
C2,20,0.05,-0.02,0.1,0.06,inconclusive,OEC > BC at equal data
C3,20,-0.1,-0.2,0.01,0.105,not_reproduced,on-policy-only gives no gain
C5,20,,,,,not_measured,the mask ablation
"""
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>&amp; </pre></div>"


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []
        self.classes = set((self.attrs.get("class") or "").split())

    def all(self):
        for c in self.children:
            yield c
            yield from c.all()

    def find(self, tag=None, cls=()):
        return [n for n in self.all() if (tag is None or n.tag == tag) and set(cls) <= n.classes]

    def by_id(self, id_):
        found = [n for n in self.all() if n.attrs.get("id") == id_]
        assert len(found) == 1, f"expected one #{id_}, found {len(found)}"
        return found[0]


class DOM(HTMLParser):
    """Enough of a DOM for assertions: Chromium's serialisation closes every non-void element."""

    VOID = {"img", "meta", "br", "hr", "link", "input", "source", "wbr", "col", "area", "base", "embed", "track"}

    def __init__(self, text):
        super().__init__()
        self.root = self.node = Node("#root", {}, None)
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.node)
        self.node.children.append(node)
        if tag not in self.VOID:
            self.node = node

    def handle_endtag(self, tag):
        n = self.node
        while n is not self.root and n.tag != tag:
            n = n.parent
        if n is not self.root:
            self.node = n.parent


def render_in_chromium(page: Path, tmp: Path) -> Node:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed; the report is tested in a real browser. Install it with "
                    "`apt-get install -y chromium` (Debian/Ubuntu; `make install` does this), then rerun.")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-2000:]
    return DOM(proc.stdout).root


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, train_tasks):
    """An experiment directory as `oec experiment` leaves it, but with real runs from the scripted policies."""
    run = tmp_path_factory.mktemp("experiment")
    tasks = write_tasks(train_tasks[:3], run / "tasks/train.jsonl")
    for name, opts in {"oec": dict(mode="oec", student="scripted:noisy"),
                       "dagger": dict(mode="dagger", student="scripted:noisy", beta=0.3),
                       "bc": dict(mode="expert")}.items():
        collect(CollectConfig(tasks=str(tasks), out=str(run / "runs" / name), workers=4, **opts), progress=False)
    (run / "results.csv").write_text(RESULTS)
    (run / "claims.csv").write_text(CLAIMS)
    (run / "experiment.json").write_text('{"seeds": 3, "arms": ["bc", "oec"], "minutes": 1.5}')
    # a runner's own plot is embedded as it is; the missing scaling/efficiency plots are drawn from results.csv
    (run / "shift.png").write_bytes(base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="))
    return run


def test_report_renders_in_chromium(experiment, tmp_path):
    out = subprocess.run([sys.executable, "-m", "oec", "report", str(experiment)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    page = Path(out.stdout.strip())
    assert page == experiment / "report.html" and (experiment / "scaling.png").exists()
    dom = render_in_chromium(page, tmp_path)

    results = dom.by_id("results")
    assert len(results.find("tbody")[0].find("tr")) == 4  # bc/10 (2 seeds), bc/20, oec/10, oec/20
    assert "32.0%" in page.read_text()  # mean of the two bc/10 seeds

    claims = dom.by_id("claims")
    assert len(claims.find("tbody")[0].find("tr")) == 4
    for verdict in ("reproduced", "not_reproduced", "inconclusive", "not_measured"):
        assert len(claims.find(cls=("verdict", verdict))) == 1

    imgs = dom.by_id("plots").find("img")
    assert sorted(i.attrs["alt"] for i in imgs) == ["efficiency.png", "scaling.png", "shift.png"]
    assert all(i.attrs["src"].startswith("data:image/png;base64,") for i in imgs)

    trajs = dom.by_id("trajectories")
    shown = trajs.find(cls=("trajectory",))
    assert len(shown) == 4  # 2 OEC, 1 DAgger, 1 expert
    assert trajs.find(cls=("turn", "student")) and trajs.find(cls=("turn", "expert"))
    assert len(trajs.find(cls=("switch",))) >= 2
    assert trajs.find(cls=("label",)) and all("student" in n.parent.classes for n in trajs.find(cls=("label",)))
    assert len(trajs.find(cls=("outcome",))) == 4
    assert len(trajs.find("pre", cls=("problem",))) == 4  # problem statements found through the runs' manifests
    assert not dom.find("script")


def _hostile_run(experiment, run):
    """An experiment whose one trajectory has markup in its task id, thoughts and observations."""
    (run / "runs").mkdir(parents=True)
    (run / "results.csv").write_text(RESULTS)
    traj = read_trajectories(experiment / "runs/bc")[0]
    steps = [s.model_copy(update={"observation": HOSTILE, "thought": HOSTILE}) for s in traj.steps]
    # no manifest beside it: the report must do without the problem statement
    (run / "runs/trajectories.jsonl").write_text(traj.model_copy(update={"steps": steps, "task_id": HOSTILE})
                                                 .model_dump_json() + "\n")
    with pytest.warns(UserWarning, match="cannot find the tasks"):
        return write_report(run), len(steps)


def test_hostile_trajectory_text_is_escaped(experiment, tmp_path):
    """Trajectories are agent-controlled: markup in them must come out as text."""
    page, _ = _hostile_run(experiment, tmp_path / "exp")
    text = page.read_text()
    assert "<script>" not in text and "<img src=x" not in text and "</pre></div>&" not in text
    assert "&lt;script&gt;" in text and "&lt;img src=x onerror=alert(1)&gt;&amp;amp;" in text
    assert "Problem statement not available" in text and "claims.csv is missing" in text


def test_hostile_trajectory_stays_text_in_the_browser(experiment, tmp_path):
    page, n_steps = _hostile_run(experiment, tmp_path / "exp")
    dom = render_in_chromium(page, tmp_path)
    assert not dom.find("script") and len(dom.find("img")) == 2  # only the two plots drawn from results.csv
    assert len(dom.by_id("trajectories").find(cls=("turn",))) == n_steps


def test_results_are_required(tmp_path):
    with pytest.raises(InputError, match="no results.csv"):
        write_report(tmp_path)
    (tmp_path / "results.csv").write_text("arm,size\nbc,10\n")
    with pytest.raises(InputError, match="needs a header"):
        write_report(tmp_path)
