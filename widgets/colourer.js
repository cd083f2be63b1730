// The text colourer: characters coloured by one unit's value (vmin red, the middle white, vmax blue).
// Values arrive once as float16 bytes (units x chars); moving the unit slider recolours
// in the browser without a round trip to Python. Only the lines in view (and a few more)
// are in the DOM, and a scroll adds and removes only the lines that enter or leave, so a
// 300,000-character trace scrolls as smoothly as a short one (bench/colourer_latency.py).

const LINE_HEIGHT = 18;   // px; every line has the same height so the view can be virtual
const OVERSCAN = 5;       // lines rendered above and below the visible ones (a scroll's margin)

function halfToFloat(h) {
  const s = (h & 0x8000) ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * Math.pow(2, e - 15) * (1 + f / 1024);
}

// float16 bytes -> Float32Array, through a 65536-entry table (fast for megabytes)
let HALF_TABLE = null;
function decodeHalf(view) {
  if (!HALF_TABLE) {
    HALF_TABLE = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) HALF_TABLE[i] = halfToFloat(i);
  }
  const u16 = new Uint16Array(view.buffer, view.byteOffset, view.byteLength / 2);
  const out = new Float32Array(u16.length);
  for (let i = 0; i < u16.length; i++) out[i] = HALF_TABLE[u16[i]];
  return out;
}

// the paper's map: -1 red, 0 white, +1 blue (a gate: 0 red, 0.5 white, 1 blue); 256 precomputed CSS colours
const PALETTE = Array.from({ length: 256 }, (_, i) => {
  const v = i / 127.5 - 1;
  const a = Math.min(1, Math.abs(v));
  const [r, g, b] = v < 0 ? [255, 255 * (1 - a), 255 * (1 - a)] : [255 * (1 - a), 255 * (1 - a), 255];
  return `rgb(${r | 0},${g | 0},${b | 0})`;
});

function colourOf(v, vmin, vmax) {
  if (!Number.isFinite(v)) return "transparent";
  const t = (Math.max(vmin, Math.min(vmax, v)) - vmin) / (vmax - vmin);   // 0..1
  return PALETTE[Math.round(t * 255)];
}

// how characters are shown: newline and tab visible, HTML's own characters escaped
const ESCAPE = { "\n": "\u21b5", "\t": "\u2192   ", "<": "&lt;", ">": "&gt;", "&": "&amp;" };

function splitLines(text) {
  // start offset of every line (a line ends after its '\n')
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === "\n" && i + 1 < text.length) starts.push(i + 1);
  return starts;
}

function render({ model, el }) {
  el.classList.add("vurn-colourer");
  // JupyterLab's notebook shortcuts (command mode, selectors such as ":focus") otherwise
  // take the arrow keys from the focused sliders and text view (preventDefault). Lumino
  // skips shortcuts from an element with this attribute or inside one; the focused element
  // itself is tested first, so every focusable part carries it.
  const ownKeys = (node) => node.setAttribute("data-lm-suppress-shortcuts", "true");
  ownKeys(el);
  const bar = document.createElement("div");
  bar.className = "vurn-bar";
  const mkSlider = (label, name) => {
    const wrap = document.createElement("label");
    const input = document.createElement("input");
    input.type = "range";
    input.className = `vurn-${name}`;
    ownKeys(input);
    input.min = 0;
    const out = document.createElement("span");
    out.className = `vurn-${name}-value`;
    const caption = document.createElement("span");
    caption.textContent = label + " ";
    wrap.append(caption, input, out);
    bar.append(wrap);
    return [input, out, wrap, caption];
  };
  const [layerInput, layerOut, layerWrap] = mkSlider("layer", "layer");
  const [unitInput, unitOut, , unitName] = mkSlider("unit", "unit");
  const title = document.createElement("span");
  title.className = "vurn-title";
  bar.append(title);
  const view = document.createElement("div");
  view.className = "vurn-view";
  view.tabIndex = 0;
  ownKeys(view);
  const spacer = document.createElement("div");
  spacer.className = "vurn-spacer";
  const lines = document.createElement("div");
  lines.className = "vurn-lines";
  spacer.append(lines);
  view.append(spacer);
  const query = document.createElement("div");
  query.className = "vurn-query";
  const tip = document.createElement("div");
  tip.className = "vurn-tip";
  tip.hidden = true;
  el.append(bar, view, query, tip);

  let text = "", starts = [0], values = null, nUnits = 0, nChars = 0;
  let topIds = null, topProbs = null, vocab = "", k = 0;
  let firstLine = -1, lastLine = -1;
  let stack = null, nStack = 0, matched = null, banded = false;   // extra units' bands; characters to underline

  function loadText() {
    text = model.get("text");
    starts = splitLines(text);
    nChars = text.length;
    spacer.style.height = `${starts.length * LINE_HEIGHT}px`;
    vocab = model.get("vocab");
    k = model.get("top_k");
    const ids = model.get("topk_ids"), probs = model.get("topk_probs");
    topIds = ids && ids.byteLength ? new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength) : null;
    topProbs = probs && probs.byteLength ? new Uint8Array(probs.buffer, probs.byteOffset, probs.byteLength) : null;
  }

  function loadValues() {
    const bytes = model.get("values");
    values = bytes && bytes.byteLength ? decodeHalf(bytes) : null;
    nUnits = nChars ? (values ? values.length / nChars : 0) : 0;
  }

  function loadStack() {
    const bytes = model.get("stack_values");
    stack = bytes && bytes.byteLength ? decodeHalf(bytes) : null;
    nStack = stack && nChars ? stack.length / nChars : 0;
  }

  function loadMatches() {
    const bytes = model.get("matches");
    matched = null;
    if (!bytes || !bytes.byteLength) return;
    const pairs = new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    matched = new Uint8Array(nChars);
    for (let j = 0; j + 1 < pairs.length; j += 2) matched.fill(1, pairs[j], pairs[j + 1]);
  }

  function unitRow() {
    // which row of `values` holds the selected unit (all units, or just the selected one)
    const unit = model.get("unit");
    if (!values) return -1;
    if (nUnits === model.get("width")) return unit;
    return model.get("loaded_unit") === unit ? 0 : -1;
  }

  // The lines in the DOM: line index -> element, kept in order; a scroll adds and removes
  // only the lines that enter or leave the window instead of rebuilding all of them.
  const rendered = new Map();

  function colours() {
    const row = unitRow();
    return { row, base: row * nChars, vmin: model.get("vmin"), vmax: model.get("vmax") };
  }

  // one colour, or with stacked units one horizontal band per unit (the shown one on top)
  function background(c, i) {
    const first = c.row < 0 ? "transparent" : colourOf(values[c.base + i], c.vmin, c.vmax);
    if (!nStack) return first;
    const n = nStack + 1, bands = [first];
    for (let s = 0; s < nStack; s++) bands.push(colourOf(stack[s * nChars + i], c.vmin, c.vmax));
    return "linear-gradient(" + bands.map((b, s) => `${b} ${(100 * s / n).toFixed(1)}% ${(100 * (s + 1) / n).toFixed(1)}%`).join(",") + ")";
  }

  function paintLines() {
    // recolour every rendered character; spans are in text order, one per character
    const c = colours();
    const full = nStack > 0 || banded;   // bands to draw, or to clear
    banded = nStack > 0;
    for (const [l, line] of rendered) {
      let i = starts[l];
      for (let span = line.firstChild; span; span = span.nextSibling, i++) {
        if (full) span.style.background = background(c, i);
        else span.style.backgroundColor = c.row < 0 ? "transparent" : colourOf(values[c.base + i], c.vmin, c.vmax);
      }
    }
    el.dataset.painted = (+(el.dataset.painted || 0) + 1).toString();  // for tests and benchmarks
  }

  function makeLine(l, c) {
    // one line as an HTML string (one parse instead of a DOM call per character), coloured
    const end = l + 1 < starts.length ? starts[l + 1] : nChars;
    let html = "";
    for (let i = starts[l]; i < end; i++) {
      const ch = text[i];
      const shown = ESCAPE[ch] || ch;
      const cls = (ch === "\n" ? "vurn-nl" : "") + (matched && matched[i] ? " vurn-match" : "");
      html += `<span data-i="${i}"${cls ? ` class="${cls.trim()}"` : ""} style="background:${background(c, i)}">${shown}</span>`;
    }
    const line = document.createElement("div");
    line.className = "vurn-line";
    line.innerHTML = html;
    return line;
  }

  function buildLines(force) {
    const top = view.scrollTop, h = view.clientHeight || model.get("height");
    const a = Math.max(0, Math.floor(top / LINE_HEIGHT) - OVERSCAN);
    const b = Math.min(starts.length - 1, Math.ceil((top + h) / LINE_HEIGHT) + OVERSCAN);
    if (!force && a === firstLine && b === lastLine) return;
    firstLine = a; lastLine = b;
    if (force) { rendered.clear(); lines.replaceChildren(); }
    for (const [l, line] of rendered) if (l < a || l > b) { line.remove(); rendered.delete(l); }
    const c = colours();
    let next = lines.firstChild;   // insert new lines before the first kept one, the rest at the end
    for (let l = a; l <= b; l++) {
      const kept = rendered.get(l);
      if (kept) { next = kept.nextSibling; continue; }
      const line = makeLine(l, c);
      lines.insertBefore(line, next);
      rendered.set(l, line);
    }
    lines.style.transform = `translateY(${a * LINE_HEIGHT}px)`;
    if (force) el.dataset.painted = (+(el.dataset.painted || 0) + 1).toString();
  }

  function syncControls() {
    layerWrap.hidden = model.get("n_layers") <= 1;   // one layer (or a set of series): nothing to choose
    unitName.textContent = model.get("series").length ? "series " : "unit ";
    layerInput.max = model.get("n_layers") - 1;
    layerInput.value = model.get("layer");
    layerOut.textContent = model.get("layer");
    unitInput.max = model.get("width") - 1;
    unitInput.value = model.get("unit");
    unitOut.textContent = model.get("unit");
    title.textContent = model.get("label");
    query.textContent = model.get("query_text");
    query.hidden = !model.get("query_text");
  }

  function showTip(span, evt) {
    const i = +span.dataset.i;
    const row = unitRow();
    const v = row < 0 ? NaN : values[row * nChars + i];
    const ch = JSON.stringify(text[i]);
    let html = `<b>${ch}</b> #${i} &nbsp; value ${Number.isFinite(v) ? v.toFixed(3) : "?"}`;
    const names = model.get("series");
    if (names.length && nUnits === names.length) {
      html += "<br>" + names.map((name, s) => `${name.replace(/&/g, "&amp;").replace(/</g, "&lt;")} ${values[s * nChars + i].toFixed(3)}`).join(" &nbsp; ");
    }
    if (topIds && topProbs && k > 0) {
      const items = [];
      for (let j = 0; j < k; j++) {
        const c = vocab[topIds[i * k + j]];
        items.push(`${c === "\n" ? "\u21b5" : c === " " ? "\u2423" : c} ${(topProbs[i * k + j] / 255).toFixed(2)}`);
      }
      html += `<br>next: ${items.map((s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;")).join(" &nbsp; ")}`;
    }
    tip.innerHTML = html;
    tip.hidden = false;
    const box = el.getBoundingClientRect();
    tip.style.left = `${evt.clientX - box.left + 12}px`;
    tip.style.top = `${evt.clientY - box.top + 12}px`;
  }

  // scroll events come once per frame, before it renders: build the new lines in that frame
  view.addEventListener("scroll", () => buildLines(false), { passive: true });
  view.addEventListener("mousemove", (evt) => {
    const span = evt.target.closest ? evt.target.closest("span[data-i]") : null;
    if (span) showTip(span, evt); else tip.hidden = true;
  });
  view.addEventListener("mouseleave", () => { tip.hidden = true; });
  view.addEventListener("mouseup", () => {
    const sel = window.getSelection();
    if (!sel || sel.isCollapsed) return;
    const at = (node) => {
      const span = node && (node.nodeType === 1 ? node : node.parentElement);
      const s = span && span.closest ? span.closest("span[data-i]") : null;
      return s ? +s.dataset.i : null;
    };
    const a = at(sel.anchorNode), b = at(sel.focusNode);
    if (a === null || b === null) return;
    model.set("selection", [Math.min(a, b), Math.max(a, b) + 1]);
    model.save_changes();
  });
  // Recolour at once, tell Python after the frame is painted: sending the message (and the
  // kernel's busy/idle replies) would otherwise delay that frame. A drag's many input
  // events in one frame become one message.
  let saving = false;
  const saveAfterPaint = () => {
    if (saving) return;
    saving = true;
    requestAnimationFrame(() => setTimeout(() => { saving = false; model.save_changes(); }, 0));
  };
  layerInput.addEventListener("input", () => { model.set("layer", +layerInput.value); saveAfterPaint(); });
  unitInput.addEventListener("input", () => { model.set("unit", +unitInput.value); saveAfterPaint(); });

  const handlers = {
    "change:unit": () => { syncControls(); paintLines(); },
    "change:layer": syncControls,
    "change:label": syncControls,
    "change:series": syncControls,
    "change:values": () => { loadValues(); paintLines(); },
    "change:loaded_unit": paintLines,
    "change:vmin": paintLines,
    "change:vmax": paintLines,
    "change:text": () => { loadText(); loadValues(); loadStack(); loadMatches(); buildLines(true); },
    "change:stack_values": () => { loadStack(); paintLines(); },
    "change:matches": () => { loadMatches(); buildLines(true); },
    "change:query_text": syncControls,
    "change:scroll_to": () => {
      const i = model.get("scroll_to");
      if (i < 0 || i >= nChars) return;
      let l = 0, hi = starts.length - 1;             // the line holding character i
      while (l < hi) { const m = (l + hi + 1) >> 1; if (starts[m] <= i) l = m; else hi = m - 1; }
      view.scrollTop = Math.max(0, (l - 3) * LINE_HEIGHT);
      buildLines(false);
    },
    "change:height": () => { view.style.height = `${model.get("height")}px`; buildLines(true); },
  };
  for (const [name, f] of Object.entries(handlers)) model.on(name, f);

  loadText();
  loadValues();
  loadStack();
  loadMatches();
  syncControls();
  view.style.height = `${model.get("height")}px`;
  requestAnimationFrame(() => buildLines(true));
  // a view removed from the page (output cleared, cell re-run) stops listening to the model
  return () => { for (const [name, f] of Object.entries(handlers)) model.off(name, f); };
}

export default { render };
