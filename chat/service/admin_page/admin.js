// The operator page: reads /api/admin/stats for the filters chosen, draws its plots as SVG (no
// chart library: the page works offline and loads nothing else), and lists what is worth reading.
"use strict";

// Each key with its words in English and in Chinese, side by side: one cannot lack the other.
const TEXT = {
  title: ["How the assistant does", "助手运行情况"], back: ["Back to the chat", "返回聊天"],
  since: ["From", "开始日期"], until: ["To", "结束日期"], persona: ["Persona", "角色"], all: ["All personas", "全部角色"],
  export_sft: ["Export liked replies (SFT)", "导出点赞回复（SFT）"],
  export_dpo: ["Export preference pairs (DPO)", "导出偏好对（DPO）"],
  chart_messages: ["Messages and users per day", "每日消息数与用户数"],
  chart_ttft: ["Time to first token (ms), p50 and p95", "首个词元耗时（毫秒），p50 与 p95"],
  chart_cache: ["Cache hit rate (%)", "缓存命中率（%）"],
  chart_refusals: ["Refusals by guard category", "按安全类别统计的拒答"],
  chart_ratings: ["Likes and dislikes by persona and model", "按角色与模型统计的赞与踩"],
  disliked: ["Disliked replies", "被点踩的回复"],
  unanswered: ["Questions the knowledge base had no source for", "知识库找不到出处的问题"],
  frequent: ["Most frequent questions", "最常见的问题"], close: ["Close", "关闭"],
  messages: ["Messages", "消息"], users: ["Users", "用户"], p50: ["p50", "p50"], p95: ["p95", "p95"],
  cache: ["Cache hits", "缓存命中"], likes: ["Likes", "赞"], dislikes: ["Dislikes", "踩"], refusals: ["Refusals", "拒答"],
  ttft: ["TTFT p50 / p95 (ms)", "首词元耗时 p50 / p95（毫秒）"], cache_rate: ["Cache hit rate", "缓存命中率"],
  nothing: ["Nothing in this range", "此范围内没有数据"], asked: ["Times asked", "提问次数"], none: ["(none)", "（无）"],
  loading: ["Loading…", "加载中…"], failed: ["Could not load the figures: ", "无法加载数据："],
  open: ["Open the conversation", "打开对话"], question: ["Question", "问题"], custom: ["custom prompt", "自定义提示词"],
  no_persona: ["no persona", "无角色"], gone: ["This conversation was deleted.", "该对话已被删除。"],
  page_title: ["Operator", "运营后台"], user: ["User", "用户"], assistant: ["Assistant", "助手"], system: ["System", "系统"],
  liked: ["liked", "赞"], disliked_mark: ["disliked", "踩"],
};
const query = new URLSearchParams(location.search);
const LANG = (query.get("lang") || navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
const T = (key) => (TEXT[key] ? TEXT[key][LANG === "zh" ? 1 : 0] : key);
const COLORS = { a: "#2563eb", b: "#f59e0b", like: "#16a34a", dislike: "#dc2626", bar: "#7c3aed" };
const NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text = "") {
  const node = tag.startsWith("svg:") ? document.createElementNS(NS, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== "") node.textContent = text;
  return node;
}

// Drawn at the size shown, so text keeps its size whatever the figure's width.
function width(svg) {
  return Math.max(320, Math.round(svg.getBoundingClientRect().width || 600));
}

function reset(svg, width, height) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.dataset.rendered = "0";
}

function empty(svg, width, height) {
  svg.append(el("svg:text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, T("nothing")));
}

// A line per series over the days; null values leave a gap.
function lineChart(svg, days, series, { percent = false } = {}) {
  const W = width(svg), H = 220, L = 44, R = 24, TOP = 24, B = 28;
  reset(svg, W, H);
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  if (!values.length || values.every((v) => v === 0)) return empty(svg, W, H);
  const max = percent ? 100 : Math.max(...values) * 1.1 || 1;
  const x = (i) => L + (days.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (days.length - 1));
  const y = (v) => H - B - (v / max) * (H - TOP - B);
  for (const tick of [0, 0.5, 1]) {
    const v = max * tick;
    svg.append(el("svg:line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e5e7eb" }));
    svg.append(el("svg:text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" }, String(Math.round(v))));
  }
  const step = Math.max(1, Math.ceil(days.length / 8));
  days.forEach((day, i) => {
    const anchor = i === days.length - 1 && i > 0 ? "end" : "middle";
    if (i % step === 0 || i === days.length - 1) svg.append(el("svg:text", { x: x(i), y: H - 8, "text-anchor": anchor }, day.slice(5)));
  });
  series.forEach((s, n) => {
    let d = "";
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      d += `${d && s.values[i - 1] != null ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      const dot = el("svg:circle", { cx: x(i), cy: y(v), r: 3, fill: s.color, class: "point" });
      dot.append(el("svg:title", {}, `${days[i]} ${s.name}: ${v}`));
      svg.append(dot);
    });
    svg.append(el("svg:path", { d, fill: "none", stroke: s.color, "stroke-width": 2, class: "series", "data-name": s.name }));
    svg.append(el("svg:rect", { x: L + n * 110, y: 6, width: 10, height: 10, fill: s.color }));
    svg.append(el("svg:text", { x: L + 14 + n * 110, y: 15 }, s.name));
  });
  svg.dataset.rendered = "1";
}

// Horizontal bars, one group per item; each group holds one bar per value.
function barChart(svg, items, names) {
  const W = width(svg), ROW = 16, GAP = 10, L = Math.min(220, W / 3), R = 40;
  const H = Math.max(60, 24 + items.length * (ROW * names.length + GAP));
  reset(svg, W, H);
  if (!items.length) return empty(svg, W, H);
  const max = Math.max(1, ...items.flatMap((it) => it.values));
  names.forEach((name, n) => {
    svg.append(el("svg:rect", { x: L + n * 110, y: 4, width: 10, height: 10, fill: name.color }));
    svg.append(el("svg:text", { x: L + 14 + n * 110, y: 13 }, name.name));
  });
  items.forEach((item, i) => {
    const top = 24 + i * (ROW * names.length + GAP);
    svg.append(el("svg:text", { x: L - 6, y: top + (ROW * names.length) / 2 + 4, "text-anchor": "end", class: "label" }, item.label));
    item.values.forEach((v, n) => {
      const width = (v / max) * (W - L - R);
      const bar = el("svg:rect", { x: L, y: top + n * ROW, width: Math.max(width, 1), height: ROW - 2, fill: names[n].color, class: "bar" });
      bar.append(el("svg:title", {}, `${item.label} ${names[n].name}: ${v}`));
      svg.append(bar);
      svg.append(el("svg:text", { x: L + width + 4, y: top + n * ROW + ROW - 4 }, String(v)));
    });
  });
  svg.dataset.rendered = "1";
}

function personaName(key) {
  if (key === "custom") return T("custom");
  return key || T("no_persona");
}

function tiles(totals) {
  const ttft = `${totals.ttft_p50_ms ?? "–"} / ${totals.ttft_p95_ms ?? "–"}`;
  const rate = totals.cache_rate === null ? "–" : `${Math.round(totals.cache_rate * 100)}%`;
  const shown = [["messages", totals.messages], ["users", totals.users], ["ttft", ttft], ["cache_rate", rate],
    ["refusals", totals.refusals], ["likes", totals.likes], ["dislikes", totals.dislikes]];
  $("totals").replaceChildren(...shown.map(([key, value]) => {
    const tile = el("div", { class: "tile", "data-total": key }, T(key));
    tile.append(el("b", {}, String(value)));
    return tile;
  }));
}

function list(id, entries, render) {
  const target = $(id);
  target.replaceChildren(...(entries.length ? entries.map(render) : [el("li", { class: "empty" }, T("nothing"))]));
}

function opener(conversationId, messageId, text) {
  const button = el("button", { type: "button", class: "link", title: T("open") }, text || T("none"));
  button.addEventListener("click", () => openConversation(conversationId, messageId));
  return button;
}

function lists(stats) {
  list("disliked", stats.disliked, (d) => {
    const item = el("li", { "data-message": d.message_id });
    item.append(opener(d.conversation_id, d.message_id, d.reply));
    item.append(el("div", { class: "meta" }, `${T("question")}: ${d.question ?? T("none")} · ${personaName(d.persona)} · ${d.model} · ${d.rated_at.slice(0, 10)}`));
    return item;
  });
  for (const id of ["unanswered", "frequent"]) {
    list(id, stats[id], (q) => {
      const item = el("li");
      item.append(opener(q.conversation_id, null, q.question));
      const where = q.knowledge ? ` · ${q.knowledge}` : "";
      item.append(el("div", { class: "meta" }, `${T("asked")}: ${q.count}${where} · ${q.last_at.slice(0, 10)}`));
      return item;
    });
  }
}

function draw(stats) {
  const days = stats.days.map((d) => d.day);
  lineChart(document.querySelector("[data-chart=messages]"), days, [
    { name: T("messages"), color: COLORS.a, values: stats.days.map((d) => d.messages) },
    { name: T("users"), color: COLORS.b, values: stats.days.map((d) => d.users) },
  ]);
  lineChart(document.querySelector("[data-chart=ttft]"), days, [
    { name: T("p50"), color: COLORS.a, values: stats.days.map((d) => d.ttft_p50_ms) },
    { name: T("p95"), color: COLORS.b, values: stats.days.map((d) => d.ttft_p95_ms) },
  ]);
  lineChart(document.querySelector("[data-chart=cache]"), days, [
    { name: T("cache"), color: COLORS.a, values: stats.days.map((d) => (d.cache_rate === null ? null : Math.round(d.cache_rate * 1000) / 10)) },
  ], { percent: true });
  barChart(document.querySelector("[data-chart=refusals]"),
    stats.refusals.map((r) => ({ label: r.category, values: [r.count] })), [{ name: T("refusals"), color: COLORS.bar }]);
  barChart(document.querySelector("[data-chart=ratings]"),
    stats.ratings.map((r) => ({ label: `${personaName(r.persona)} · ${r.model || "?"}`, values: [r.likes, r.dislikes] })),
    [{ name: T("likes"), color: COLORS.like }, { name: T("dislikes"), color: COLORS.dislike }]);
}

function personas(known, chosen) {
  const select = $("persona");
  const options = [el("option", { value: "" }, T("all")), ...known.map((key) => el("option", { value: key }, personaName(key)))];
  select.replaceChildren(...options);
  select.value = known.includes(chosen) ? chosen : "";
}

function filters() {
  const params = new URLSearchParams();
  for (const name of ["since", "until", "persona"]) if ($(name).value) params.set(name, $(name).value);
  params.set("lang", LANG);
  return params;
}

function exportLinks() {
  for (const fmt of ["sft", "dpo"]) {
    const params = new URLSearchParams({ format: fmt });
    if ($("since").value) params.set("since", $("since").value);
    if ($("persona").value) params.set("persona", $("persona").value);
    $(`export-${fmt}`).href = `/api/admin/feedback/export?${params}`;
  }
}

async function refresh() {
  const params = filters();
  history.replaceState(null, "", `?${params}`);
  exportLinks();
  $("status").textContent = "";
  document.body.dataset.loading = "1";
  try {
    const answer = await fetch(`/api/admin/stats?${params}`, { headers: { "Accept-Language": LANG } });
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error?.message || answer.statusText);
    $("since").value = body.window.since;
    $("until").value = body.window.until;
    personas(body.personas, body.window.persona || "");
    tiles(body.totals);
    draw(body);
    lists(body);
  } catch (error) {
    $("status").textContent = T("failed") + error.message;
  } finally {
    document.body.dataset.loading = "0";
  }
}

async function openConversation(id, messageId) {
  const dialog = $("conversation");
  const answer = await fetch(`/api/admin/conversations/${encodeURIComponent(id)}`, { headers: { "Accept-Language": LANG } });
  const items = $("conversation-messages");
  if (!answer.ok) {
    $("conversation-title").textContent = T("gone");
    items.replaceChildren();
  } else {
    const body = await answer.json();
    $("conversation-title").textContent = body.title || id;
    items.replaceChildren(...body.messages.map((m) => {
      const rated = m.rating === 1 ? ` (${T("liked")})` : m.rating === -1 ? ` (${T("disliked_mark")})` : "";
      const classes = `${m.role}${m.id === messageId ? " rated" : ""}`;
      return el("li", { class: classes, "data-message": m.id }, `${T(m.role)}${rated}: ${m.content}`);
    }));
  }
  dialog.showModal();
}

document.addEventListener("DOMContentLoaded", () => {
  document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
  document.title = T("page_title");
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = T(node.dataset.t);
  for (const name of ["since", "until"]) if (query.get(name)) $(name).value = query.get(name);
  if (query.get("persona")) personas([query.get("persona")], query.get("persona"));
  $("filters").addEventListener("change", refresh);
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
  refresh();
});
