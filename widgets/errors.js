// The error explorer: one bar chart per model (errors of each category per 100 characters,
// one scale for all), a click on a bar selects that model and category; Python sends the
// selected page of examples, each drawn here with its errors coloured by category and the
// model's top-5 next characters on hover.

const SVG = "http://www.w3.org/2000/svg";
const BAR_W = 220, ROW_H = 22, LABEL_W = 112, COUNT_W = 110;

const shown = (ch) => ({ "\n": "\u21b5", "\t": "\u2192", " ": "\u2423" })[ch] ?? ch;
const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function render({ model, el: root }) {
  root.classList.add("vurn-errors");
  const charts = el("div", "vurn-err-charts");
  const legend = el("div", "vurn-err-legend");
  const bar = el("div", "vurn-err-bar-row");
  const prev = el("button", "vurn-err-prev", "\u25c0 prev");
  const next = el("button", "vurn-err-next", "next \u25b6");
  const status = el("span", "vurn-err-status");
  bar.append(prev, next, status);
  const list = el("div", "vurn-err-examples");
  const tip = el("div", "vurn-err-tip");
  tip.hidden = true;
  root.append(charts, legend, bar, list, tip);

  const colour = (cat) => model.get("colours")[cat] || "#999";
  const label = (cat) => model.get("labels")[cat] || cat;

  function drawCharts() {
    charts.replaceChildren();
    const rows = model.get("chart");
    const cats = model.get("categories");
    const top = Math.max(1e-9, ...rows.map((r) => r.per_char));
    const selModel = model.get("model_name"), selCat = model.get("category");
    for (const name of model.get("models")) {
      const mine = rows.filter((r) => r.model === name);
      const panel = el("div", "vurn-err-panel");
      const first = mine[0] || { n_errors: 0, n_chars: 1 };
      panel.append(el("div", "vurn-err-panel-title",
        `${name}: ${first.n_errors.toLocaleString()} errors in ${first.n_chars.toLocaleString()} chars ` +
        `(${(100 * first.n_errors / first.n_chars).toFixed(1)}%)`));
      const svg = svgEl("svg", { width: LABEL_W + BAR_W + COUNT_W, height: cats.length * ROW_H + 4 });
      cats.forEach((cat, k) => {
        const r = mine.find((x) => x.category === cat) || { count: 0, fraction: 0, per_char: 0 };
        const y = k * ROW_H + 2;
        const g = svgEl("g", { class: "vurn-err-bar", "data-model": name, "data-category": cat });
        const name_ = svgEl("text", { x: LABEL_W - 6, y: y + 14, "text-anchor": "end" });
        name_.textContent = label(cat);
        const hit = svgEl("rect", { x: 0, y, width: LABEL_W + BAR_W + COUNT_W, height: ROW_H - 2,
                                    fill: "transparent" });
        const w = Math.max(1, BAR_W * r.per_char / top);
        const rect = svgEl("rect", { x: LABEL_W, y: y + 2, width: w, height: ROW_H - 6, fill: colour(cat) });
        if (name === selModel && cat === selCat) {
          rect.setAttribute("stroke", "#000"); rect.setAttribute("stroke-width", "2");
          g.classList.add("vurn-err-selected");
        }
        const count = svgEl("text", { x: LABEL_W + w + 5, y: y + 14 });
        count.textContent = `${r.count.toLocaleString()} (${(100 * r.fraction).toFixed(1)}%)`;
        const title = svgEl("title", {});
        title.textContent = `${label(cat)}: ${r.count} errors, ${(100 * r.fraction).toFixed(1)}% of errors, ` +
          `${(100 * r.per_char).toFixed(2)} per 100 characters; click for examples`;
        g.append(hit, rect, name_, count, title);
        g.addEventListener("click", () => {
          model.set("model_name", name);
          model.set("category", cat);
          model.set("page", 0);
          model.save_changes();
        });
        svg.append(g);
      });
      panel.append(svg);
      charts.append(panel);
    }
    legend.replaceChildren(el("span", "vurn-err-note", "bar: errors per 100 characters; click a bar for its examples "));
    for (const cat of cats) {
      const item = el("span", "vurn-err-key", label(cat));
      item.style.borderLeft = `12px solid ${colour(cat)}`;
      legend.append(item);
    }
  }

  function drawExamples() {
    const cat = model.get("category"), name = model.get("model_name");
    const page = model.get("page"), pages = model.get("n_pages");
    prev.disabled = !cat || page <= 0;
    next.disabled = !cat || page >= pages - 1;
    status.textContent = cat
      ? `${name} \u00b7 ${label(cat)}: ${model.get("n_selected").toLocaleString()} errors \u00b7 page ${pages ? page + 1 : 0} of ${pages}`
      : "click a bar to see its errors";
    list.replaceChildren();
    list.style.maxHeight = `${model.get("height")}px`;
    for (const ex of model.get("examples")) {
      const box = el("div", "vurn-err-example");
      box.dataset.position = ex.position;
      const text = el("div", "vurn-err-text");
      let html = "";
      ex.chars.forEach((c, k) => {
        const focus = c.i === ex.position;
        let style = "";
        if (c.cat) style = focus ? `background:${colour(c.cat)};color:#fff` : `background:${colour(c.cat)}55`;
        html += `<span data-k="${k}"${focus ? ' class="vurn-err-focus"' : ""}${c.cat ? ` data-cat="${c.cat}"` : ""}` +
          ` style="${style}">${esc(c.ch === "\n" ? "\u21b5\n" : c.ch)}</span>`;
      });
      text.innerHTML = html;
      text.addEventListener("mousemove", (evt) => {
        const span = evt.target.closest ? evt.target.closest("span[data-k]") : null;
        if (!span) { tip.hidden = true; return; }
        const c = ex.chars[+span.dataset.k];
        let t = `<b>${esc(JSON.stringify(c.ch))}</b> #${c.i}`;
        if (c.p !== undefined) t += ` &nbsp; p = ${c.p.toFixed(3)}${c.cat ? " \u00b7 " + esc(label(c.cat)) : ""}`;
        if (c.top) t += `<br>top 5: ${c.top.map(([ch, p]) => `${esc(shown(ch))} ${p.toFixed(2)}`).join(" &nbsp; ")}`;
        tip.innerHTML = t;
        tip.hidden = false;
        const b = root.getBoundingClientRect();
        tip.style.left = `${evt.clientX - b.left + 12}px`;
        tip.style.top = `${evt.clientY - b.top + 14}px`;
      });
      text.addEventListener("mouseleave", () => { tip.hidden = true; });
      const stepText = ex.step === null ? "" : ` (${{ ngram: "order", memory: "n =", rare_words: "seen \u2264",
        boost: "+" }[cat] || ""} ${ex.step})`;
      let info = `#${ex.position}: ${JSON.stringify(ex.char)} got p = ${ex.p.toFixed(3)} \u00b7 ${label(cat)}${stepText}`;
      for (const o of ex.others) {
        info += ` \u00b7 ${o.model}: p = ${o.p.toFixed(3)} ${o.category ? "(" + label(o.category) + ")" : "(right)"}`;
      }
      box.append(el("div", "vurn-err-info", info), text);
      list.append(box);
    }
    root.dataset.rendered = (+(root.dataset.rendered || 0) + 1).toString();  // for tests
  }

  const turn = (d) => {
    model.set("page", Math.max(0, Math.min(model.get("n_pages") - 1, model.get("page") + d)));
    model.save_changes();
  };
  prev.addEventListener("click", () => turn(-1));
  next.addEventListener("click", () => turn(+1));

  const onChart = () => drawCharts();
  const onExamples = () => { drawCharts(); drawExamples(); };
  const handlers = { "change:chart": onChart, "change:models": onChart, "change:colours": onExamples,
                     "change:examples": onExamples, "change:n_pages": onExamples, "change:height": onExamples };
  for (const [name, f] of Object.entries(handlers)) model.on(name, f);
  drawCharts();
  drawExamples();
  return () => { for (const [name, f] of Object.entries(handlers)) model.off(name, f); };
}

export default { render };
