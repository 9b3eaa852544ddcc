// Small DOM helpers every part of the dashboard uses. Text goes in through
// textContent only, so nothing the API returns is ever parsed as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  // A table row of `cells` (text, or nodes as they are) with attributes.
  function row(cells, attrs) {
    const tr = document.createElement("tr");
    for (const [k, v] of Object.entries(attrs || {})) tr.setAttribute(k, v);
    for (const c of cells) {
      const td = document.createElement("td");
      if (c instanceof Node) td.appendChild(c);
      else td.textContent = c === null || c === undefined ? "" : String(c);
      tr.appendChild(td);
    }
    return tr;
  }

  // Replaces a table's body; an empty one says why in a single cell.
  function fillBody(table, rows, emptyText, columns) {
    const tb = table.tBodies[0];
    tb.replaceChildren(...rows);
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = columns;
      td.className = "muted";
      td.textContent = emptyText;
      tr.appendChild(td);
      tb.appendChild(tr);
    }
  }

  function button(text, onClick, cls) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = cls || "secondary small";
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }

  function setMsg(el, text, isError) {
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  window.OneFlowUi = {
    $,
    row,
    fillBody,
    button,
    setMsg,
    when: (ms) => (ms ? new Date(ms).toLocaleString() : ""),
    pct: (x) => (typeof x === "number" ? `${(x * 100).toFixed(1)}%` : ""),
  };
})();
