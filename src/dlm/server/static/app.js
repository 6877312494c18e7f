// The dlm page: sends a request to /v1/denoise and plays its steps back as frames.
// No libraries, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];            // the chat so far: {role, content}
let controller = null;         // aborts the running request (the Stop button)
window.dlmFrames = [];         // the frames of the latest reply: {step, masks} (tests read this)

$("key").value = localStorage.getItem("dlm-key") || "";
$("key").addEventListener("change", () => localStorage.setItem("dlm-key", $("key").value));

function mode() { return document.querySelector("input[name=mode]:checked").value; }

// The sampler settings start from the server's own defaults and names (GET /defaults),
// so the page shows what a request that sets nothing would get.
function fillSelect(id, names, chosen) {
  $(id).replaceChildren(...names.map((name) => new Option(name, name, false, name === chosen)));
}

const defaultsLoaded = fetch("/defaults").then((r) => r.json()).then((d) => {
  const s = d.settings;
  $("steps").value = s.steps;
  $("length").value = s.max_tokens;
  $("temperature").value = s.temperature;
  $("block").value = s.block_length;
  fillSelect("rule", d.choices.commit_rule, s.commit_rule);
  fillSelect("decode", d.choices.decode, s.decode);
  $("steps").max = d.limits.max_steps;
  $("length").max = d.limits.max_tokens;
  $("block").max = d.limits.max_tokens;
  window.dlmDefaults = d;  // the tests compare what the page shows with it
});

function settings() {
  const body = {
    steps: +$("steps").value, max_tokens: +$("length").value,
    temperature: +$("temperature").value, commit_rule: $("rule").value,
    block_length: +$("block").value, decode: $("decode").value, stream: true,
  };
  return body;
}

function addTurn(role, text) {
  const div = document.createElement("div");
  div.className = `turn ${role}`;
  div.textContent = text;
  $("log").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

// Confidence 0 → red, 1 → green; tokens committed in earlier steps keep a faint tint.
function colour(confidence, alpha) {
  return `hsla(${Math.round(confidence * 120)}, 75%, 72%, ${alpha})`;
}

function renderFrame(div, frame) {
  div.replaceChildren();
  for (const t of frame.tokens) {
    const span = document.createElement("span");
    if (t.mask) {
      span.className = t.remasked ? "tok mask remasked" : "tok mask";
      span.title = t.remasked ? "re-masked for revision" : "mask";
    } else if (t.drafted) {  // speculative: the drafter's proposal, not yet verified
      span.className = "tok drafted";
      span.textContent = t.text;
      span.title = "drafted by the diffusion model, not yet verified";
    } else if (t.new && frame.phase === "verify") {
      span.className = t.rejected ? "tok new rejected" : "tok new accepted";
      span.textContent = t.text;
      span.title = t.rejected ? "the verifier refused the draft here and wrote this"
                              : "a draft the verifier kept (or its free next token)";
    } else {
      span.className = t.new ? "tok new" : "tok";
      span.textContent = t.text;
      if (t.confidence > 0) {  // given tokens (a template's text) have none
        span.style.backgroundColor = colour(t.confidence, t.new ? 1 : 0.3);
        span.title = `confidence ${t.confidence.toFixed(2)}${t.new ? " (this step)" : ""}`;
      }
    }
    div.appendChild(span);
  }
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = `step ${frame.step}/${frame.steps} · ${frame.masks} masks · ${frame.nfe} model calls` +
    (frame.verifier_calls !== undefined ? ` (${frame.verifier_calls} by the verifier)` : "");
  div.appendChild(meta);
  window.dlmFrames.push({ step: frame.step, masks: frame.masks });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Reads server-sent events from a fetch response, calling onEvent for each JSON payload.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6)).join("\n");
      if (data && data !== "[DONE]") await onEvent(JSON.parse(data));
    }
  }
}

async function send(text) {
  await defaultsLoaded;  // the settings' inputs are filled from the server first
  const body = settings();
  let userText = text;
  if (mode() === "chat") {
    history.push({ role: "user", content: text });
    body.messages = history.slice();
  } else {
    body.template = text;
    userText = `infill: ${text}`;
  }
  addTurn("user", userText);
  const reply = addTurn("assistant", "");
  window.dlmFrames = [];
  controller = new AbortController();
  $("send").disabled = true; $("stop").disabled = false; $("status").textContent = "";
  const headers = { "Content-Type": "application/json" };
  if ($("key").value) headers.Authorization = `Bearer ${$("key").value}`;
  let final = null;
  try {
    const response = await fetch("/v1/denoise", {
      method: "POST", headers, body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      const err = await response.json().catch(() => ({}));
      throw new Error(err.error ? err.error.message : `HTTP ${response.status}`);
    }
    const pace = +$("pace").value;
    await readEvents(response, async (event) => {
      if (event.type === "step") {
        renderFrame(reply, event);
        if (pace > 0) await sleep(pace);  // play the steps back slowly enough to watch
      } else if (event.type === "done") {
        final = event;
      } else if (event.error) {
        throw new Error(event.error.message);
      }
    });
    if (final) {
      const meta = reply.querySelector(".meta");
      if (meta) meta.textContent = `done in ${final.nfe} model calls`;
      reply.dataset.final = final.text;
      if (mode() === "chat") history.push({ role: "assistant", content: final.text });
    }
  } catch (err) {
    if (mode() === "chat") history.pop();
    if (err.name === "AbortError") {
      reply.appendChild(Object.assign(document.createElement("span"),
        { className: "meta", textContent: "(stopped)" }));
    } else {
      $("status").textContent = err.message;
    }
  } finally {
    controller = null;
    $("send").disabled = false; $("stop").disabled = true;
    document.body.dataset.busy = "";
  }
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  document.body.dataset.busy = "1";
  send(text);
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("reset").addEventListener("click", () => {
  history.length = 0; $("log").replaceChildren(); $("status").textContent = "";
});
