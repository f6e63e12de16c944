"use strict";
// All model and dataset text is put on the page with textContent: never parsed as HTML.
const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);
let task = null, busy = false;

function headers() {
  const h = {"Content-Type": "application/json"};
  if (token) h["X-Annotate-Token"] = token;
  return h;
}
function name() { return $("annotator").value.trim(); }
function say(text) { $("msg").textContent = text || ""; }

// one request for the next question at a time: Enter in the name field blurs it (a change event, which
// loads) and loads; a second answer arriving after the person began ticking would re-render the question
// and drop the ticks. A call while one is in flight waits for that one.
let loading = null;
function load() {
  if (!loading) loading = loadOnce().finally(() => { loading = null; });
  return loading;
}

async function loadOnce() {
  if (!name()) { say("Type your name first (it is stored with your judgements)."); $("annotator").focus(); return; }
  localStorage.setItem("illume-annotator", name());
  // a POST (never a GET: another site's <img> must not be able to take a question from someone)
  const resp = await fetch("/api/next", {method: "POST", headers: headers(), body: JSON.stringify({annotator: name()})});
  const data = await resp.json();
  if (!resp.ok) { say(data.error || resp.statusText); return; }
  const p = data.progress;
  $("progress").textContent = `${p.done} / ${p.total} done`;
  $("bar").firstElementChild.style.width = (p.total ? 100 * p.done / p.total : 100) + "%";
  $("suggestwrap").hidden = !data.suggestions_available;
  task = data.task;
  if (!task) {
    $("main").style.display = "none";
    $("done").style.display = "block";
    $("done").textContent = "Nothing left for you to judge. Thank you! (" + p.done + " of " + p.total + " judgements are in.)";
    return;
  }
  $("main").style.display = "";
  $("done").style.display = "none";
  $("question").textContent = task.question;
  $("answer").textContent = task.answer;
  if (task.image_url) { $("image").src = task.image_url; $("image").hidden = false; $("noimage").hidden = true; }
  else { $("image").hidden = true; $("noimage").hidden = false; }
  $("none").checked = false;
  $("written").value = "";
  render();
  say("");
}

function render() {
  const list = $("cands");
  list.replaceChildren();
  const show = $("suggest").checked;
  task.candidates.forEach((c, i) => {
    if (c.checked === undefined) c.checked = show && c.suggested;
    const li = document.createElement("li");
    li.dataset.id = c.id;
    li.className = c.checked ? "on" : "";
    const box = document.createElement("input");
    box.type = "checkbox"; box.checked = c.checked; box.tabIndex = -1;
    const key = document.createElement("kbd");
    key.textContent = i < 9 ? String(i + 1) : " ";
    const text = document.createElement("span");
    text.className = "rationale";
    text.textContent = c.rationale;
    li.append(box, key, text);
    if (show && c.suggestion !== null && c.suggestion !== undefined) {
      const s = document.createElement("span");
      s.className = "score";
      s.textContent = "model " + c.suggestion.toFixed(2);
      li.append(s);
    }
    li.addEventListener("click", () => toggle(i));
    list.append(li);
  });
}

function toggle(i) {
  if (!task || i >= task.candidates.length) return;
  task.candidates[i].checked = !task.candidates[i].checked;
  if (task.candidates[i].checked) $("none").checked = false;
  render();
}

async function post(path, payload) {
  if (busy) return;
  busy = true;
  try {
    const resp = await fetch(path, {method: "POST", headers: headers(), body: JSON.stringify(payload)});
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) { say(data.error || resp.statusText); return; }
    await load();
  } finally { busy = false; }
}

function submit() {
  if (!task) return;
  const accepted = task.candidates.filter((c) => c.checked).map((c) => c.id);
  post("/api/judge", {task: task.task, annotator: name(), accepted, none: $("none").checked,
                      written: $("written").value, suggestions_shown: $("suggest").checked && !$("suggestwrap").hidden});
}
function skip() { if (task) post("/api/skip", {task: task.task, annotator: name()}); }

$("submit").addEventListener("click", submit);
$("skip").addEventListener("click", skip);
$("none").addEventListener("change", () => {
  if ($("none").checked && task) { task.candidates.forEach((c) => c.checked = false); render(); }
});
$("suggest").addEventListener("change", () => {
  localStorage.setItem("illume-suggest", $("suggest").checked ? "1" : "0");
  if (task) { task.candidates.forEach((c) => delete c.checked); render(); }
});
$("annotator").addEventListener("change", load);

document.addEventListener("keydown", (e) => {
  const typing = e.target === $("written") || e.target === $("annotator");
  if (e.key === "Enter") {
    if (e.target === $("annotator")) { e.preventDefault(); $("annotator").blur(); load(); return; }
    e.preventDefault(); submit(); return;
  }
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key >= "1" && e.key <= "9") { e.preventDefault(); toggle(Number(e.key) - 1); }
  else if (e.key === "0") { e.preventDefault(); $("none").checked = !$("none").checked; $("none").dispatchEvent(new Event("change")); }
  else if (e.key === "n") { e.preventDefault(); skip(); }
});

$("annotator").value = localStorage.getItem("illume-annotator") || "";
$("suggest").checked = localStorage.getItem("illume-suggest") !== "0";
load();
