// The timeline page's behaviour: selection, the state panel, keyboard navigation.
// Rules: the table is already in the page, so this script only reads it; it keeps
// one listener on the document for clicks and one for keys (none per row), builds
// the panel with textContent (never innerHTML: the data is the program's, not ours),
// and rebuilds a step's state from the data island's per-step changes, starting at
// the nearest of the checkpoints taken every CHECKPOINT steps.
"use strict";
(function () {
  const CHECKPOINT = 64;
  const PAGE = 20;
  const island = JSON.parse(document.getElementById("timeline-data").textContent);
  const rows = island.rows;
  const trs = document.querySelector("#timeline tbody").rows;
  const title = document.getElementById("panel-title");
  const details = document.getElementById("panel-row");
  const changes = document.getElementById("panel-changes");
  const statePane = document.getElementById("panel-state");
  const failing = [];
  const checkpoints = [];
  let selected = -1;

  function apply(state, row) {
    for (const name of Object.keys(row.set)) state.set(name, row.set[name]);
    for (const name of row.del) state.delete(name);
  }

  function index() {
    let state = new Map(Object.entries(island.initial));
    rows.forEach(function (row, i) {
      if (i % CHECKPOINT === 0) checkpoints.push(new Map(state));
      apply(state, row);
      if (row.failing) failing.push(i);
    });
  }

  // The machine's state after rows[i]; before the first step when i is -1.
  function stateAfter(i) {
    if (i < 0) return new Map(Object.entries(island.initial));
    const first = Math.floor(i / CHECKPOINT) * CHECKPOINT;
    const state = new Map(checkpoints[first / CHECKPOINT]);
    for (let j = first; j <= i; j++) apply(state, rows[j]);
    return state;
  }

  function cell(tr, text, cls) {
    const td = tr.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function fill(table, entries, changed) {
    table.replaceChildren();
    for (const entry of entries) {
      const tr = table.insertRow();
      if (changed && changed.has(entry[0])) tr.className = "changed";
      for (const text of entry) cell(tr, text);
    }
  }

  function describe(row) {
    const marks = [];
    if (row.preempted) marks.push("preempted here");
    if (row.failing) marks.push("failing");
    if (row.racing) marks.push("racing: the pair the violation turns on");
    if (row.also_racing) marks.push("racing too: another race whose swap makes the run pass");
    const words = [
      ["core", String(row.core)],
      ["task", row.task],
      ["operation", row.operation],
      ["object", row.obj],
      ["slot", row.slot],
      ["flags", row.flags],
      ["PTE", row.pte],
      ["value", row.value],
      ["note", row.note],
      ["source", row.location],
      ["seed function", row.seed_function],
      ["also ran", row.ran.join(", ")],
      ["marks", marks.join(", ")],
    ];
    details.replaceChildren();
    for (const [name, text] of words) {
      if (!text) continue;
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = text;
      details.append(dt, dd);
    }
    if (row.data) {
      const dt = document.createElement("dt");
      const pre = document.createElement("pre");
      dt.textContent = "data (" + row.data.length / 2 + " bytes)";
      pre.textContent = hexdump(row.data);
      details.append(dt, pre);
    }
  }

  function hexdump(hex) {
    const lines = [];
    for (let at = 0; at < hex.length; at += 32) {
      const chunk = hex.slice(at, at + 32);
      const bytes = chunk.match(/../g);
      const text = bytes
        .map(function (b) {
          const c = parseInt(b, 16);
          return c >= 32 && c < 127 ? String.fromCharCode(c) : ".";
        })
        .join("");
      const offset = (at / 2).toString(16).padStart(4, "0");
      lines.push(offset + "  " + bytes.join(" ").padEnd(47) + "  " + text);
    }
    return lines.join("\n");
  }

  function show(i) {
    const row = rows[i];
    const before = stateAfter(i - 1);
    const after = stateAfter(i);
    const names = Array.from(new Set([...before.keys(), ...after.keys()])).sort();
    const diff = names
      .filter(function (n) {
        return before.get(n) !== after.get(n);
      })
      .map(function (n) {
        return [n, before.get(n) || "", "→", after.get(n) || ""];
      });
    title.textContent = "Step " + row.step + ": " + row.task + " on core " + row.core;
    describe(row);
    if (diff.length) fill(changes, diff, null);
    else fill(changes, [["nothing", ""]], null);
    fill(
      statePane,
      Array.from(after.keys())
        .sort()
        .map(function (n) {
          return [n, after.get(n)];
        }),
      new Set(diff.map(function (d) {
        return d[0];
      })),
    );
  }

  // keepUrl: the first selection on load leaves the address as it was.
  function select(i, scroll, keepUrl) {
    if (!rows.length) return;
    i = Math.max(0, Math.min(rows.length - 1, i));
    if (selected >= 0) {
      trs[selected].classList.remove("selected");
      trs[selected].removeAttribute("aria-selected");
    }
    selected = i;
    const tr = trs[i];
    tr.classList.add("selected");
    tr.setAttribute("aria-selected", "true");
    if (scroll) tr.scrollIntoView({ block: "nearest" });
    if (!keepUrl) history.replaceState(null, "", "#" + tr.id);
    show(i);
  }

  function fromHash(hash) {
    const tr = hash.startsWith("#step-") ? document.getElementById(hash.slice(1)) : null;
    return tr && tr.dataset.index !== undefined ? Number(tr.dataset.index) : -1;
  }

  function nextFailing(direction) {
    const later = failing.filter(function (i) {
      return direction > 0 ? i > selected : i < selected;
    });
    if (later.length) select(direction > 0 ? later[0] : later[later.length - 1], true);
  }

  const keys = {
    ArrowDown: function () { select(selected + 1, true); },
    ArrowUp: function () { select(selected - 1, true); },
    j: function () { select(selected + 1, true); },
    k: function () { select(selected - 1, true); },
    PageDown: function () { select(selected + PAGE, true); },
    PageUp: function () { select(selected - PAGE, true); },
    Home: function () { select(0, true); },
    End: function () { select(rows.length - 1, true); },
    n: function () { nextFailing(1); },
    p: function () { nextFailing(-1); },
  };

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const action = keys[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  });

  document.addEventListener("click", function (event) {
    const link = event.target.closest("a[href^='#step-']");
    if (link) {
      const i = fromHash(link.getAttribute("href"));
      if (i >= 0) {
        event.preventDefault();
        select(i, true);
      }
      return;
    }
    const tr = event.target.closest("#timeline tbody tr");
    if (tr) select(Number(tr.dataset.index), false);
  });

  window.addEventListener("hashchange", function () {
    const i = fromHash(location.hash);
    if (i >= 0 && i !== selected) select(i, true);
  });

  index();
  document.body.classList.add("js");
  const start = fromHash(location.hash);
  select(start >= 0 ? start : 0, start >= 0, true);
})();
