// ponder report --html: the problem browser and tree viewer (inlined into report.html)
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("ponder-data").textContent);
  const G = DATA.groups;
  // elements are built from text only: stored text is never parsed as HTML
  function h(tag, cls, ...kids) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  function chip(ok, text) { return h("span", "chip " + (ok ? "ok" : "bad"), text); }
  function fmt(x, d) { return x === null || x === undefined ? "—" : Number(x).toFixed(d); }
  // text with ``` blocks (python calls and their outputs) shown as code, all as text
  function rich(text) {
    const box = h("div", "text");
    const fence = /```([A-Za-z0-9]*)[ \t]*\n([\s\S]*?)(?:\n```|$)/g;
    let at = 0, m;
    while ((m = fence.exec(text)) !== null) {
      if (m.index > at) box.append(h("span", "prose", text.slice(at, m.index)));
      box.append(h("pre", m[1] === "output" ? "out" : "code", m[2]));
      at = fence.lastIndex;
    }
    if (at < text.length) box.append(h("span", "prose", text.slice(at)));
    return box;
  }
  function lazy(d, fill) {  // fill a <details> the first time it opens
    d.fill = () => { if (!d.dataset.filled) { d.dataset.filled = "1"; fill(d); } };
    d.addEventListener("toggle", () => { if (d.open) d.fill(); });
    return d;
  }
  function show(d) { if (d.fill) d.fill(); d.open = true; }
  function toolCalls(calls) {
    const box = h("div", "tools");
    calls.forEach((c, i) => {
      const state = c.ok ? "ran" : "failed" + (c.reason ? ": " + c.reason : "");
      box.append(lazy(h("details", "tool" + (c.ok ? "" : " failed"),
        h("summary", null, `python call ${i + 1} · ${state} · ${fmt(c.seconds, 2)} s`)),
        (d) => d.append(h("pre", "code", c.code), h("pre", "out", c.output))));
    });
    return box;
  }
  function sample(c, name) {
    let info = `${c.n} tokens · ${c.f}`;
    if (c.s !== null && c.s !== undefined) info += ` · score ${fmt(c.s, 3)}`;
    if (c.sig) info += " · " + Object.entries(c.sig).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(", ");
    if (c.tc) info += ` · ${c.tc.length} python call${c.tc.length > 1 ? "s" : ""}`;
    if (c.note) info += " · " + c.note;
    const s = h("summary", null, h("span", "pid", name), chip(c.ok, c.ok ? "✓" : "✗"), " ",
      h("b", null, c.a === null ? "no answer" : c.a), " ", h("span", "dim", info));
    return lazy(h("details", "sample", s), (d) => {
      d.append(rich(c.t));
      if (c.tc) d.append(toolCalls(c.tc));
    });
  }
  // -- the tree viewer -------------------------------------------------------------------
  function treeView(nodes, right, key) {
    const box = h("div", "tree");
    box.id = "view-" + key;  // (not the link itself: the browser would scroll to it)
    const made = new Map();
    function node(n) {
      const kids = n.children || [];
      const s = h("summary");
      if (n.parent === null) s.append(h("b", null, "question"), ` · ${nodes.length - 1} nodes`);
      else {
        s.append(h("span", "dim", `#${n.id} `));
        if (n.selected) s.append(h("span", "b sel", "kept"));
        if (n.terminal) s.append(h("span", "b end", "end"));
        if (n.rollout) s.append(h("span", "b", "rollout"));
        if (n.score !== null && n.score !== undefined) s.append(h("span", "b score", fmt(n.score, 3)));
        if (n.answer !== null && n.answer !== undefined) {
          const ok = right[n.answer];
          s.append(h("span", "b ans" + (ok === undefined ? "" : ok ? " ok" : " bad"),
            "→ " + n.answer + (ok === undefined ? "" : ok ? " ✓" : " ✗")));
        }
        if (n.visits) s.append(h("span", "b", `visits ${n.visits} · value ${fmt(n.value_sum / n.visits, 3)}`));
        s.append(h("span", "dim", `${n.tokens} tok${kids.length ? " · " + kids.length + " below" : ""} `));
        s.append(h("span", "pv", (n.step || "").split("\n")[0].slice(0, 160)));
      }
      const d = h("details", "node" + (kids.length ? "" : " leaf") + (n.parent === null ? " root" : ""), s);
      d.dataset.node = n.id;
      made.set(n.id, d);
      return lazy(d, () => {
        if (n.parent !== null) {
          const step = rich(n.step || "");
          step.classList.add("step");
          d.append(step);
          if (n.note) d.append(h("div", "dim step", n.note));
        }
        for (const c of kids) if (nodes[c]) d.append(node(nodes[c]));
      });
    }
    function open(id) {  // open the path from the root to node `id`
      const path = [];
      for (let n = nodes[id]; n; n = n.parent === null ? null : nodes[n.parent]) path.unshift(n.id);
      for (const p of path) { const d = made.get(p); if (d) show(d); }
    }
    function chosen() {
      let ends = nodes.filter((n) => n.terminal && n.selected);
      if (!ends.length) ends = nodes.filter((n) => n.terminal);
      ends.slice(0, 20).forEach((n) => open(n.id));
    }
    const bar = h("div", "treebar");
    const b1 = h("button", null, "open the chosen path"), b2 = h("button", null, "open all"),
      b3 = h("button", null, "fold all");
    b1.type = b2.type = b3.type = "button";
    b1.onclick = chosen;
    b2.onclick = () => { nodes.slice(0, 2000).forEach((n) => { if (n.children && n.children.length) open(n.id); }); };
    b3.onclick = () => { made.forEach((d, id) => { d.open = id === 0; }); };
    bar.append(b1, b2, b3);
    const root = node(nodes[0]);
    box.append(bar, root);
    show(root);
    box.chosen = chosen;
    return box;
  }
  // -- problems -------------------------------------------------------------------------
  function unitBlock(p, gi, x) {
    const g = G[gi];
    const key = `tree-${p.pid}-${gi}-${x.u}`;
    const box = h("div", "unit");
    let head = `seed ${x.seed}` + (x.u ? ` · unit ${x.u}` : "") + ` · ${x.tok} tokens`;
    if (x.stop) head += ` · stopped: ${x.stop}`;
    if (x.err) head += ` · error: ${x.err}`;
    box.append(h("div", null, chip(x.ok, x.ok ? "✓" : "✗"), " ",
      h("b", null, x.a === null ? "no answer" : x.a), " ", h("span", "dim", head)));
    x.c.forEach((c, i) => box.append(sample(c, g.kind === "pool" ? "" : `candidate ${i + 1}`)));
    if (x.rev) {
      const r = h("details", "sample", h("summary", null, `${x.rev.length} revision rounds`));
      x.rev.forEach((v) => r.append(h("div", "text",
        h("b", null, `round ${v.round}: ${v.answer === null ? "no answer" : v.answer} · ` +
          (v.accepted ? "accepted" : "revised")), h("div", "prose", String(v.feedback || "")))));
      box.append(r);
    }
    if (x.tree) {
      const right = {};
      for (const c of x.c) if (c.a !== null) right[c.a] = right[c.a] || c.ok;
      const t = h("details", "treebox", h("summary", null, h("b", null, "search tree"),
        ` · ${x.tree.length - 1} nodes`));
      t.id = "box-" + key;
      lazy(t, (d) => d.append(treeView(x.tree, right, key)));
      box.append(t);
    }
    return box;
  }
  function body(p) {
    const b = h("div", "pbody");
    b.append(h("div", "question", p.q));
    b.append(h("div", null, h("b", null, "gold: "), p.gold === null ? "—" : p.gold,
      p.level ? h("span", "dim", ` · level ${p.level}`) : null));
    for (const [gi, units] of Object.entries(p.runs)) {
      const g = G[gi];
      const run = h("div", "run");
      const title = h("h4", null, g.label + " ", h("span", "dim", `(${g.kind}, ${g.model})`));
      title.title = g.full;
      run.append(title);
      if (g.kind === "pool") {
        const rows = units.map((x, i) => {
          const c = x.c[0] || {t: "", a: x.a, ok: x.ok, n: x.tok, f: "", s: null, note: null};
          return sample(c, `sample ${i + 1} (seed ${x.seed})`);
        });
        run.append(...rows);
      } else for (const x of units) run.append(unitBlock(p, Number(gi), x));
      b.append(run);
    }
    return b;
  }
  const list = document.getElementById("problem-list");
  const items = DATA.problems.map((p) => {
    const s = h("summary", null, h("span", "pid", p.task + " · " + p.id));
    for (const [gi, [right, total]] of Object.entries(p.by)) {
      const cls = right === total ? "ok" : right === 0 ? "bad" : "part";
      const c = h("span", "chip " + cls, `${G[gi].label} ${total > 1 ? right + "/" + total : right ? "✓" : "✗"}`);
      c.title = G[gi].full;
      s.append(c);
    }
    s.append(" ", h("span", "preview", p.q.slice(0, 140).replace(/\s+/g, " ")));
    const d = lazy(h("details", "problem", s), (d) => d.append(body(p)));
    d.id = "p-" + p.pid;
    list.append(d);
    return [p, d];
  });
  const filter = document.getElementById("filter"), which = document.getElementById("which");
  function apply() {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const [p, d] of items) {
      const hay = (p.id + " " + p.q).toLowerCase();
      const rates = Object.values(p.by).map(([r, t]) => r / t);
      let keep = words.every((w) => hay.includes(w));
      if (which.value === "wrong") keep = keep && rates.some((r) => r < 1);
      if (which.value === "none") keep = keep && rates.every((r) => r === 0);
      if (which.value === "split") keep = keep && rates.some((r) => r > 0) && rates.some((r) => r < 1);
      d.classList.toggle("hide", !keep);
      shown += keep ? 1 : 0;
    }
    document.getElementById("shown").textContent = `${shown} of ${items.length} problems`;
  }
  filter.addEventListener("input", apply);
  which.addEventListener("change", apply);
  apply();
  function follow() {  // #p-PID opens a problem; #tree-PID-GROUP-UNIT a tree's chosen path
    const m = /^#(?:p-(\d+)|tree-(\d+)-(\d+)-(\d+))$/.exec(location.hash);
    if (!m) return;
    const d = document.getElementById("p-" + (m[1] || m[2]));
    if (!d) return;
    show(d);
    if (m[2]) {
      const key = `tree-${m[2]}-${m[3]}-${m[4]}`, box = document.getElementById("box-" + key);
      if (box) {
        show(box);
        const tree = document.getElementById("view-" + key);
        if (tree) tree.chosen();
      }
    }
    d.scrollIntoView();
  }
  window.addEventListener("hashchange", follow);
  follow();
})();
