// Token-reward heatmap: scores one or two completions with POST /v1/token_rewards and colours
// every completion token by its reward. Plain browser JavaScript, no build step, no CDN.
"use strict";

(() => {
  // API routes relative to this page (/ui/), so the page also works behind a path prefix.
  const API_REWARDS = new URL("../v1/token_rewards", document.baseURI).href;
  const API_MODELS = new URL("../v1/models", document.baseURI).href;
  const API_AUDIT = new URL("../v1/audit", document.baseURI).href;
  const KEY_STORAGE = "drs.apiKey";
  const LABELS = ["A", "B"];

  // Diverging scale, ColorBrewer RdBu: red for negative, white at zero, blue for positive.
  const STOPS = [
    [-1.0, [178, 24, 43]],
    [-0.75, [214, 96, 77]],
    [-0.5, [244, 165, 130]],
    [-0.25, [253, 219, 199]],
    [0.0, [255, 255, 255]],
    [0.25, [209, 229, 240]],
    [0.5, [146, 197, 222]],
    [0.75, [67, 147, 195]],
    [1.0, [33, 102, 172]],
  ];

  const $ = (id) => document.getElementById(id);
  const state = { rawText: null, response: null, scale: 1 };

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  // ---- numbers and colours -------------------------------------------------------------------

  function fmt(x, digits = 4) {
    if (x === null || x === undefined) return "—";
    return x.toFixed(digits);
  }

  function signed(x, digits = 3) {
    if (x === null || x === undefined) return "—";
    const text = Math.abs(x).toFixed(digits);
    return (x < 0 ? "−" : "+") + text;
  }

  function colourFor(t) {
    const v = Math.max(-1, Math.min(1, t));
    for (let i = 1; i < STOPS.length; i += 1) {
      const [x1, c1] = STOPS[i];
      if (v <= x1) {
        const [x0, c0] = STOPS[i - 1];
        const f = (v - x0) / (x1 - x0);
        const rgb = c0.map((c, k) => Math.round(c + f * (c1[k] - c)));
        return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
      }
    }
    return "rgb(33, 102, 172)";
  }

  function gradientCss() {
    const parts = STOPS.map(([x, c]) => `rgb(${c.join(", ")}) ${((x + 1) * 50).toFixed(1)}%`);
    return `linear-gradient(to right, ${parts.join(", ")})`;
  }

  // ---- token text ----------------------------------------------------------------------------

  // Whitespace stays as it is (the heatmap keeps `white-space: pre-wrap`); line breaks and other
  // invisible characters get a visible mark so a token made of them can still be seen and hovered.
  function visible(text, breakLines = true) {
    if (text === "") return "∅";
    let out = "";
    for (const ch of text) {
      if (ch === "\n") out += breakLines ? "⏎\n" : "⏎";
      else if (ch === "\r") out += "␍";
      else if (ch === "\t") out += breakLines ? "⇥\t" : "⇥";
      else if (ch.codePointAt(0) < 32) out += String.fromCodePoint(0x2400 + ch.codePointAt(0));
      else out += ch;
    }
    return out;
  }

  // Offsets are Python character (code point) positions; JavaScript strings count UTF-16 units.
  function tokenTexts(result, completionText) {
    const n = result.num_tokens;
    const decoded = result.tokens || [];
    const points = completionText === null ? null : Array.from(completionText);
    const texts = [];
    for (let i = 0; i < n; i += 1) {
      let text = "";
      const span = result.offsets ? result.offsets[i] : null;
      if (points && span && span[1] > span[0]) text = points.slice(span[0], span[1]).join("");
      const special = text === "" && (result.eos_appended && i === n - 1);
      if (text === "") text = decoded[i] !== undefined ? decoded[i] : `#${result.token_ids[i]}`;
      texts.push({ text, special });
    }
    return texts;
  }

  // ---- request -------------------------------------------------------------------------------

  function unescapeDelimiter(text) {
    return text.replace(/\\(n|t|r|\\)/g, (_, c) => ({ n: "\n", t: "\t", r: "\r", "\\": "\\" })[c]);
  }

  function completionsFromForm() {
    const a = $("completion-a").value;
    const b = $("completion-b").value;
    return b.trim() === "" ? [a] : [a, b];
  }

  function buildRequest() {
    const prompt = $("prompt").value;
    const item = $("chat").checked
      ? { messages: [{ role: "user", content: prompt }] }
      : { prompt };
    const completions = completionsFromForm();
    if (completions.length === 1) item.completion = completions[0];
    else item.completions = completions;
    const body = {
      items: [item],
      append_eos: $("append-eos").checked,
      include: ["tokens", "offsets", "logprobs"],
    };
    const betaText = $("beta").value.trim();
    if (betaText !== "") {
      const beta = Number(betaText);
      if (!Number.isFinite(beta)) {
        throw { code: "invalid_value", message: "β must be a number", index: null, field: "beta" };
      }
      body.beta = beta;
    }
    const delimiter = $("delimiter").value;
    if (delimiter !== "") body.steps = { delimiter: unescapeDelimiter(delimiter) };
    return { body, completions };
  }

  function authHeaders() {
    const key = $("api-key").value.trim();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function score() {
    let request;
    try {
      request = buildRequest();
    } catch (error) {
      showError(null, error);
      return;
    }
    const button = $("score");
    button.disabled = true;
    button.textContent = "Scoring…";
    $("results").setAttribute("aria-busy", "true");
    try {
      const response = await fetch(API_REWARDS, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...authHeaders() },
        body: JSON.stringify(request.body),
      });
      const text = await response.text();
      let data = null;
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
      if (!response.ok || data === null) {
        const error = data && data.error ? data.error : { code: "http_error", message: text.slice(0, 300) };
        showError(response.status, error);
        return;
      }
      hideError();
      state.rawText = text;
      state.response = data;
      render(data, request);
    } catch (error) {
      showError(null, { code: "network_error", message: String(error.message || error) });
    } finally {
      button.disabled = false;
      button.textContent = "Score";
      $("results").removeAttribute("aria-busy");
    }
  }

  // ---- errors --------------------------------------------------------------------------------

  function showError(status, error) {
    const box = $("error");
    box.replaceChildren();
    const title = el("p", { class: "error-title" },
      el("strong", { text: status ? `Error ${status}` : "Error" }), " ",
      el("code", { "data-field": "code", text: error.code || "unknown" }));
    const details = el("dl", { class: "error-details" });
    const rows = [["message", error.message], ["index", error.index], ["field", error.field]];
    for (const [name, value] of rows) {
      if (value === null || value === undefined || value === "") continue;
      details.append(el("dt", { text: name }), el("dd", { "data-field": name, text: String(value) }));
    }
    box.append(title, details);
    box.dataset.status = status ? String(status) : "";
    box.dataset.code = error.code || "";
    box.hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
    $("error").replaceChildren();
  }

  // ---- rendering -----------------------------------------------------------------------------

  function flatResults(data) {
    // A group item answers with `completions`; a single item is its own result.
    return data.results.flatMap((r) => (Array.isArray(r.completions) ? r.completions : [r]));
  }

  function render(data, request) {
    const results = flatResults(data);
    let maxAbs = 0;
    for (const r of results) {
      for (const x of r.rewards) if (x !== null) maxAbs = Math.max(maxAbs, Math.abs(x));
    }
    state.scale = maxAbs > 0 ? maxAbs : 1;

    $("legend-bar").style.background = gradientCss();
    $("legend-min").textContent = signed(-state.scale);
    $("legend-min").dataset.value = String(-state.scale);
    $("legend-max").textContent = signed(state.scale);
    $("legend-max").dataset.value = String(state.scale);

    const panels = $("panels");
    panels.replaceChildren();
    panels.classList.toggle("two", results.length > 1);
    results.forEach((result, i) => {
      const text = request.completions[i] !== undefined ? request.completions[i] : null;
      panels.append(renderPanel(result, i, text, data.model ? data.model.beta : null));
    });

    const comparison = $("comparison");
    comparison.replaceChildren();
    if (results.length === 2) {
      const dTotal = results[0].total_reward - results[1].total_reward;
      const dMean = results[0].mean_reward - results[1].mean_reward;
      const winner = dTotal === 0 ? "A and B tie" : dTotal > 0 ? "A scores higher" : "B scores higher";
      comparison.append(
        el("span", { class: "winner", text: winner }),
        el("span", {}, "Δ total (A − B) ",
          el("strong", { "data-field": "total_diff", "data-value": String(dTotal), text: signed(dTotal) })),
        el("span", {}, "Δ mean ",
          el("strong", { "data-field": "mean_diff", "data-value": String(dMean), text: signed(dMean) })),
      );
      comparison.hidden = false;
    } else {
      comparison.hidden = true;
    }
    $("download").disabled = false;
    $("results").hidden = false;
  }

  function stat(label, field, value, display) {
    return el("div", { class: "stat" },
      el("dt", { text: label }),
      el("dd", { "data-field": field, "data-value": value === null ? "" : String(value), text: display }));
  }

  function renderPanel(result, i, completionText, beta) {
    const label = LABELS[i] || String(i + 1);
    const panel = el("article", { class: "panel card", "data-completion": i, "aria-label": `Completion ${label}` });
    const header = el("header", { class: "panel-head" },
      el("h2", {}, el("span", { class: `badge badge-${label.toLowerCase()}`, text: label }), " Completion"));
    const stats = el("dl", { class: "stats" },
      stat("total", "total_reward", result.total_reward, signed(result.total_reward)),
      stat("mean", "mean_reward", result.mean_reward, result.mean_reward === null ? "—" : signed(result.mean_reward)),
      stat("scored tokens", "scored_tokens", result.scored_tokens, String(result.scored_tokens)),
      stat("tokens", "num_tokens", result.num_tokens,
        String(result.num_tokens) + (result.eos_appended ? " (EOS appended)" : "")));
    header.append(stats);
    panel.append(header);

    const texts = tokenTexts(result, completionText);
    const stepOf = new Array(result.num_tokens).fill(-1);
    (result.steps || []).forEach((step, s) => {
      for (let t = step.token_span[0]; t < step.token_span[1]; t += 1) stepOf[t] = s;
    });

    const heat = el("div", {
      class: "heatmap", role: "group", "aria-label": `Tokens of completion ${label}; arrow keys move between tokens`,
    });
    for (let t = 0; t < result.num_tokens; t += 1) {
      if (t > 0 && stepOf[t] !== stepOf[t - 1]) heat.append(el("span", { class: "step-sep", "aria-hidden": "true" }));
      const reward = result.rewards[t];
      const sft = result.sft_logprobs ? result.sft_logprobs[t] : null;
      const base = result.base_logprobs ? result.base_logprobs[t] : null;
      const { text, special } = texts[t];
      const span = el("span", {
        class: "tok" + (special ? " special" : "") + (reward === null ? " masked" : ""),
        tabindex: t === 0 ? "0" : "-1",
        "data-index": t,
        "data-token-id": result.token_ids[t],
        "data-reward": reward === null ? "" : String(reward),
        "data-sft-logprob": sft === null ? "" : String(sft),
        "data-base-logprob": base === null ? "" : String(base),
        "data-text": text,
        "data-step": stepOf[t] >= 0 ? stepOf[t] : null,
        "aria-label": `${JSON.stringify(text)}: reward ${reward === null ? "masked" : fmt(reward)}`,
        text: visible(text),
      });
      if (reward !== null) {
        const t01 = reward / state.scale;
        span.style.backgroundColor = colourFor(t01);
        if (Math.abs(t01) > 0.6) span.classList.add("dark");
      }
      heat.append(span);
    }
    heat.addEventListener("keydown", (event) => moveFocus(event, heat));
    panel.append(heat);

    if (Array.isArray(result.steps)) panel.append(renderSteps(result, texts, heat));
    panel.dataset.beta = beta === null || beta === undefined ? "" : String(beta);
    return panel;
  }

  function renderSteps(result, texts, heat) {
    const maxAbs = Math.max(1e-12, ...result.steps.map((s) => Math.abs(s.reward)));
    const table = el("table", { class: "steps" },
      el("caption", { text: `${result.steps.length} step${result.steps.length === 1 ? "" : "s"} (sum of token rewards)` }),
      el("thead", {}, el("tr", {},
        el("th", { scope: "col", text: "step" }), el("th", { scope: "col", text: "text" }),
        el("th", { scope: "col", text: "tokens" }), el("th", { scope: "col", class: "num", text: "reward" }))));
    const body = el("tbody");
    result.steps.forEach((step, s) => {
      const [a, b] = step.token_span;
      const preview = texts.slice(a, b).map((x) => x.text).join("");
      const bar = el("span", { class: "step-bar" });
      bar.style.width = `${(Math.abs(step.reward) / maxAbs) * 100}%`;
      bar.style.backgroundColor = colourFor(Math.sign(step.reward) * 0.85);
      const row = el("tr", { "data-step": s },
        el("td", { text: String(s + 1) }),
        el("td", { class: "step-text" }, el("span", { text: visible(preview, false) })),
        el("td", { text: `${step.scored_tokens}` }),
        el("td", { class: "num" },
          el("span", { class: "step-bar-wrap" }, bar),
          el("span", { "data-field": "step_reward", "data-value": String(step.reward), text: signed(step.reward) })));
      const highlight = (on) => {
        for (const tok of heat.querySelectorAll(`.tok[data-step="${s}"]`)) tok.classList.toggle("in-step", on);
      };
      row.addEventListener("mouseenter", () => highlight(true));
      row.addEventListener("mouseleave", () => highlight(false));
      body.append(row);
    });
    table.append(body);
    return table;
  }

  // Roving focus: one tab stop per heatmap, arrow keys walk the tokens (and show the tooltip).
  function moveFocus(event, heat) {
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[event.key];
    if (!step) return;
    const tokens = Array.from(heat.querySelectorAll(".tok"));
    const current = tokens.indexOf(document.activeElement);
    const next = tokens[Math.max(0, Math.min(tokens.length - 1, current + step))];
    if (!next) return;
    event.preventDefault();
    tokens.forEach((tok) => tok.setAttribute("tabindex", "-1"));
    next.setAttribute("tabindex", "0");
    next.focus();
  }

  // ---- tooltip -------------------------------------------------------------------------------

  function showTooltip(tok) {
    const tip = $("tooltip");
    const d = tok.dataset;
    const num = (v) => (v === "" ? null : Number(v));
    const reward = num(d.reward);
    const rows = [
      ["token", "token_text", JSON.stringify(d.text)],
      ["token id", "token_id", d.tokenId],
      ["position", "index", d.index],
      ["log π sft", "sft_logprob", fmt(num(d.sftLogprob))],
      ["log π base", "base_logprob", fmt(num(d.baseLogprob))],
      ["reward", "reward", reward === null ? "masked" : signed(reward, 4)],
    ];
    const list = el("dl");
    for (const [label, field, value] of rows) {
      list.append(el("dt", { text: label }), el("dd", { "data-field": field, text: value }));
    }
    tip.replaceChildren(list);
    tip.hidden = false;
    const box = tok.getBoundingClientRect();
    const tipBox = tip.getBoundingClientRect();
    let left = box.left + box.width / 2 - tipBox.width / 2;
    left = Math.max(8, Math.min(window.innerWidth - tipBox.width - 8, left));
    let top = box.bottom + 8;
    if (top + tipBox.height > window.innerHeight - 8) top = box.top - tipBox.height - 8;
    tip.style.left = `${left + window.scrollX}px`;
    tip.style.top = `${top + window.scrollY}px`;
    tok.setAttribute("aria-describedby", "tooltip");
  }

  function hideTooltip(tok) {
    $("tooltip").hidden = true;
    if (tok) tok.removeAttribute("aria-describedby");
  }

  function installTooltip() {
    const panels = $("panels");
    panels.addEventListener("mouseover", (e) => {
      const tok = e.target.closest(".tok");
      if (tok) showTooltip(tok);
    });
    panels.addEventListener("mouseout", (e) => {
      const tok = e.target.closest(".tok");
      if (tok && !tok.contains(e.relatedTarget)) hideTooltip(tok);
    });
    panels.addEventListener("focusin", (e) => {
      if (e.target.classList.contains("tok")) showTooltip(e.target);
    });
    panels.addEventListener("focusout", (e) => {
      if (e.target.classList.contains("tok")) hideTooltip(e.target);
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape") hideTooltip(null);
    });
  }

  // ---- download ------------------------------------------------------------------------------

  function download() {
    if (state.rawText === null) return;
    // The response exactly as the server sent it.
    const blob = new Blob([state.rawText], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: "token_rewards.json" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ---- loading a file ------------------------------------------------------------------------

  function completionText(c) {
    if (typeof c === "string") return c;
    if (c && typeof c.completion === "string") return c.completion;
    return null;
  }

  // Accepts a request body ({"items": [...]}), one item ({"prompt"|"messages", "completion"|
  // "completions"}), an eval pair ({"chosen", "rejected"}), JSON Lines (first line), or plain
  // text (the prompt).
  function fillFromObject(obj) {
    let source = obj;
    const notes = [];
    if (Array.isArray(obj.items) && obj.items.length > 0) {
      source = obj.items[0];
      if (obj.items.length > 1) notes.push(`first of ${obj.items.length} items`);
    }
    if (typeof source.prompt === "string") {
      $("prompt").value = source.prompt;
      $("chat").checked = false;
    } else if (Array.isArray(source.messages)) {
      const users = source.messages.filter((m) => m && m.role === "user");
      const last = users[users.length - 1];
      $("prompt").value = last && typeof last.content === "string" ? last.content : "";
      $("chat").checked = true;
      if (source.messages.length > 1) notes.push("only the last user message is used");
    }
    let completions = [];
    if (Array.isArray(source.completions)) completions = source.completions.map(completionText);
    else if (source.completion !== undefined) completions = [completionText(source.completion)];
    else if (source.chosen !== undefined) completions = [source.chosen, source.rejected].map(completionText);
    completions = completions.filter((c) => c !== null);
    if (completions.length > 2) notes.push(`first 2 of ${completions.length} completions`);
    if (completions.length > 0) {
      $("completion-a").value = completions[0];
      $("completion-b").value = completions.length > 1 ? completions[1] : "";
    }
    const options = obj.items ? obj : source;
    if (typeof options.beta === "number") $("beta").value = String(options.beta);
    if (typeof options.append_eos === "boolean") $("append-eos").checked = options.append_eos;
    if (options.steps && typeof options.steps.delimiter === "string") {
      $("delimiter").value = options.steps.delimiter.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\t/g, "\\t");
    }
    return notes;
  }

  async function loadFile(file) {
    const text = await file.text();
    let obj = null;
    const trimmed = text.trim();
    if (trimmed.startsWith("{")) {
      try {
        obj = JSON.parse(trimmed);
      } catch {
        try {
          obj = JSON.parse(trimmed.split("\n")[0]);
        } catch {
          obj = null;
        }
      }
    }
    let notes;
    if (obj && typeof obj === "object") {
      notes = fillFromObject(obj);
    } else {
      $("prompt").value = text;
      notes = ["plain text: loaded as the prompt"];
    }
    $("load-status").textContent = `Loaded ${file.name}` + (notes.length ? ` (${notes.join("; ")})` : "");
  }

  // ---- models --------------------------------------------------------------------------------

  async function loadModels() {
    const info = $("model-info");
    try {
      const response = await fetch(API_MODELS, { headers: authHeaders() });
      if (response.status === 401) {
        info.textContent = "models: enter the API key";
        return;
      }
      const data = await response.json();
      const byRole = Object.fromEntries(data.data.map((m) => [m.role, m]));
      // The last two path parts ("demo/sft") say more than the folder name alone.
      const name = (m) => (m ? m.model.split("/").filter(Boolean).slice(-2).join("/") : "none");
      const backend = data.data.length ? data.data[0].backend : "?";
      info.textContent = `sft ${name(byRole.sft)} vs base ${name(byRole.base)} · ${backend} · default β ${data.beta}`;
      info.title = data.data.map((m) => `${m.role}: ${m.model} (${m.engine_version}, ${m.dtype})`).join("\n");
    } catch {
      info.textContent = "models: unavailable";
    }
  }

  // ---- audit ---------------------------------------------------------------------------------

  // The server's audit report (DRS_AUDIT_REPORT), when it has one: is this reward safe to
  // optimize? Off-support edits that out-score the expert, and best-of-N accuracy.
  async function loadAudit() {
    const box = $("audit");
    let report;
    try {
      const response = await fetch(API_AUDIT, { headers: authHeaders() });
      if (!response.ok) {
        box.hidden = true;
        return;
      }
      report = await response.json();
    } catch {
      box.hidden = true;
      return;
    }
    box.replaceChildren(renderAudit(report));
    box.hidden = false;
  }

  function interval(row) {
    return `${fmt(row[0], 3)} [${fmt(row[1], 3)}, ${fmt(row[2], 3)}]`;
  }

  function renderAudit(report) {
    const failing = new Set(report.off_support.failing);
    const verdict = report.gameable ? "gameable" : "passed";
    const fields = Object.keys(report.reward || {}).length ? JSON.stringify(report.reward) : "server defaults";
    const edits = el("table", { class: "audit-edits" },
      el("thead", {}, el("tr", {}, el("th", { text: "edit of an expert answer" }),
        el("th", { text: "out-scores the expert [95% CI]" }))));
    const body = el("tbody");
    for (const [name, row] of Object.entries(report.off_support.edits)) {
      body.append(el("tr", { class: failing.has(name) ? "fails" : null, "data-edit": name },
        el("td", { text: name }), el("td", { text: interval(row.win_rate_aggregate) })));
    }
    edits.append(body);
    const support = report.on_support;
    const curve = el("table", { class: "audit-curve" },
      el("tr", {}, el("th", { text: "best-of-N" }), ...support.n.map((n) => el("th", { text: `N=${n}` }))),
      el("tr", {}, el("th", { text: "accuracy" }),
        ...support.accuracy.map((row) => el("td", { text: fmt(row[0], 3), title: interval(row) }))));
    return el("div", {},
      el("h2", {}, "Reward audit: ", el("span", { id: "audit-verdict", class: `verdict ${verdict}`, text: verdict })),
      el("p", { class: "hint", text: `reward: ${fields} · ${report.off_support.demos} expert demos, ${support.prompts} prompts × ${support.samples_per_prompt} policy samples` }),
      el("div", { class: "audit-grid" }, edits, curve),
      report.reasons.length ? el("ul", { class: "audit-reasons" }, ...report.reasons.map((r) => el("li", { text: r }))) : null);
  }

  // ---- wiring --------------------------------------------------------------------------------

  function init() {
    const key = $("api-key");
    key.value = sessionStorage.getItem(KEY_STORAGE) || "";
    key.addEventListener("change", () => {
      const value = key.value.trim();
      if (value) sessionStorage.setItem(KEY_STORAGE, value);
      else sessionStorage.removeItem(KEY_STORAGE);
      loadModels();
      loadAudit();
    });
    $("score-form").addEventListener("submit", (e) => {
      e.preventDefault();
      score();
    });
    $("score-form").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        score();
      }
    });
    $("download").addEventListener("click", download);
    $("load-file").addEventListener("change", (e) => {
      const file = e.target.files && e.target.files[0];
      if (file) loadFile(file).catch((error) => { $("load-status").textContent = `Could not read ${file.name}: ${error}`; });
      e.target.value = "";
    });
    installTooltip();
    loadModels();
    loadAudit();
  }

  init();
})();
