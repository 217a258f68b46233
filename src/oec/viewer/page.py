"""The style, the filter script and the plain-text rendering of `oec view` (view.py builds the page)."""

from __future__ import annotations

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#222}
header{padding:.5em 1em;border-bottom:1px solid #ccc;background:#fafafa;position:sticky;top:0;z-index:1}
h1{font-size:18px;margin:.2em 0}h2{font-size:16px;margin:.2em 0}h3{font-size:14px;margin:.8em 0 .2em}
#layout{display:grid;grid-template-columns:260px 1fr}
#nav{border-right:1px solid #ddd;padding:.5em;font-size:12px;max-height:calc(100vh - 90px);overflow:auto;
position:sticky;top:90px}
#nav a{display:block;padding:1px 4px;text-decoration:none;color:#222;border-left:3px solid #a00}
#nav a.resolved{border-left-color:#070}main{padding:0 1em;min-width:0}
.trajectory{border:1px solid #bbb;border-radius:6px;padding:.6em;margin:1em 0}
.turn{border-radius:6px;padding:.4em .6em;margin:.4em 0;display:grid;grid-template-columns:1fr;gap:.6em}
.legend .turn{display:inline-block;padding:0 .5em;margin:0}.legend .switch{display:inline-block;padding:0 .5em}
.turn.labelled{grid-template-columns:3fr 2fr}.turn.student{background:#e8f0fe;border-left:4px solid #3367d6}
.turn.expert{background:#fdf0e0;border-left:4px solid #e37400}
.label{align-self:start;background:#fff;border:1px dashed #e37400;padding:.3em}
.switch{border-top:3px dashed #c00;color:#c00;font-weight:bold;margin:.6em 0;padding-top:.2em}
.switch.planned{border-top-style:dotted}
pre{white-space:pre-wrap;word-break:break-word;margin:.2em 0;font-size:12px}.command{font-weight:bold}
.who{font-size:12px;color:#555}.missing{color:#a40;font-style:italic}
details.observation summary,details.problem summary{cursor:pointer;font-size:12px;color:#555}
.outcome.resolved{color:#070;font-weight:bold}.outcome.unresolved{color:#a00;font-weight:bold}
.category{background:#f5f5f5;padding:.3em .5em;border-radius:4px}.category.resolved{background:#e3f5e3}
.signals,.judge{font-size:12px;color:#555}.filter{font-size:12px;margin:.3em 0}.filter.kept{color:#070}
.filter.rejected{color:#a00}
.diff .add{color:#070;background:#eaffea}.diff .del{color:#a00;background:#ffecec}.diff .hunk{color:#06c}
.diff .file{font-weight:bold}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:2px 6px;font-size:12px}td.text{text-align:left}
tr.passed td:nth-child(2){color:#070}
tr.failed td:nth-child(2),tr.error td:nth-child(2),tr.missing td:nth-child(2){color:#a00}
pre.tokens{background:#fff;border:1px solid #ddd;padding:.4em}
mark.trained{background:#ffe066;color:#000;outline:1px solid #e0b000}.untrained{color:#777;text-decoration:line-through}
.context{color:#444}
"""

# Filters the list by the three selects; marks <body data-ready> when it has run, and records any error on the
# page itself (data-errors), so a test in a headless browser can tell that the script ran cleanly.
SCRIPT = """
(function(){
  window.addEventListener('error', function(e){
    document.body.dataset.errors = (document.body.dataset.errors || '') + e.message + ';';
  });
  var keys = ['resolved', 'exit', 'category'];
  var sel = keys.map(function(k){ return document.getElementById('f-' + k); });
  function apply(){
    var shown = 0, total = 0;
    document.querySelectorAll('section.trajectory, #nav a').forEach(function(el){
      var ok = keys.every(function(k, i){ return !sel[i].value || el.dataset[k] === sel[i].value; });
      el.hidden = !ok;
      if (el.tagName === 'SECTION') { total++; if (ok) shown++; }
    });
    document.getElementById('shown').textContent = shown + ' of ' + total;
  }
  sel.forEach(function(s){ s.addEventListener('change', apply); });
  apply();
  document.body.dataset.ready = '1';
})();
"""


def render_text(items) -> str:
    """The same content for a terminal: actors as prefixes, observations cut to their first lines, trained tokens
    between ⟦ and ⟧ (items: view.Item)."""
    out = []
    for item in items:
        t, c = item.traj, item.category
        out.append(f"=== {t.task_id} sample {t.sample} ({t.mode}): {'resolved' if t.resolved else 'unresolved'}, "
                   f"exit {t.exit_status}; category {c['category']}: {c['reason']}")
        if item.filter is not None:
            f = item.filter
            out.append("filter: kept" if f["kept"] else "filter: rejected: " + "; ".join(f"{k}: {v}" for k, v in
                                                                                       f["reasons"].items()))
        for s in t.steps:
            if s.turn == t.switch_turn:
                out.append(f"---- switch: the expert takes over at turn {s.turn} ----")
            act = "(unparseable) " + s.output[:200] if s.action is None else (
                "submit" if s.action.kind == "submit" else "$ " + s.action.command)
            out.append(f"[{s.turn:>2} {s.actor}] {act}")
            if s.label is not None and s.label.action is not None:
                la = s.label.action
                out.append(f"     DAgger label: {'submit' if la.kind == 'submit' else '$ ' + la.command}")
            lines = s.observation.splitlines()
            out += [f"     | {line}" for line in lines[:3]] + ([f"     | ... {len(lines) - 3} more lines"]
                                                               if len(lines) > 3 else [])
        if t.verdict is not None:
            failing = [k for k, v in t.verdict.tests.items() if v.outcome != "passed"]
            out.append(f"tests: {len(t.verdict.tests) - len(failing)} passed, {len(failing)} not"
                       + (f" ({', '.join(failing[:5])})" if failing else ""))
            out.append(t.verdict.patch.rstrip() or "(no change in the workspace)")
        for i, ex in enumerate(item.examples):
            out.append(f"-- example {i} (up to turn {ex.turn}): {ex.tokens} tokens, {ex.trained} trained --")
            out.append("".join(f"⟦{s.text}⟧" if s.kind == "trained" else s.text for s in ex.segments))
        out.append("")
    return "\n".join(out)
