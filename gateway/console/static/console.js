// voicegw console: call an agent from the browser and tune its voice. No dependencies, no build step.
// The wire format of the call WebSocket is described in docs/console.md.
import { Resampler, mulawDecode, mulawEncode, pcm16Decode, pcm16Encode } from "./resampler.js";

const $ = (id) => document.getElementById(id);
const API = "/console/api";
const state = { agents: [], schema: null, agent: null, call: null };

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const message = (body && body.error && (body.error.message || body.error)) || `${response.status}`;
    const err = new Error(typeof message === "string" ? message : JSON.stringify(message));
    err.body = body;
    throw err;
  }
  return body;
}

// ---- agents -------------------------------------------------------------------------------------------------
async function loadAgents(select) {
  const data = await api(`${API}/agents`);
  state.agents = data.agents;
  const picker = $("agent");
  picker.replaceChildren(...data.agents.map((a) => new Option(`${a.name} (${a.id})`, a.id)));
  if (select && data.agents.some((a) => a.id === select)) picker.value = select;
  $("agent-info").textContent = `store ${data.store.kind}, version ${data.store.version}`;
  await selectAgent(picker.value);
}

async function selectAgent(id) {
  if (!id) return;
  state.agent = await api(`${API}/agents/${encodeURIComponent(id)}`);
  const a = state.agent;
  $("agent-info").textContent = `${a.id} version ${a.version} · ${a.tts.provider}` +
    (a.tts.fallback.length ? ` → ${a.tts.fallback.join(" → ")}` : "");
  $("agent-info").dataset.version = a.version;
  fillVoice(a.tts);
  $("sample-text").value = a.greeting;
}

// ---- voice settings form, generated from the agent schema's JSON Schema ---------------------------------------
function resolve(schema, node) {
  if (node && node.$ref) return resolve(schema, schema.$defs[node.$ref.split("/").pop()]);
  if (node && node.anyOf) {
    const real = node.anyOf.filter((n) => n.type !== "null");
    if (real.length === 1) return { ...resolve(schema, real[0]), nullable: true, description: node.description,
      default: node.default, title: node.title };
  }
  return node;
}

function stepOf(spec) {
  if (spec.type === "integer") return 1;
  const span = spec.maximum - spec.minimum;
  return Math.pow(10, Math.floor(Math.log10(span / 20)));
}

function fieldFor(path, name, spec) {
  const row = document.createElement("div");
  row.className = "field";
  row.dataset.path = path;
  const id = `f-${path.replace(/\W/g, "-")}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = name.replace(/_/g, " ");
  let input, out = document.createElement("output");
  if (spec.enum) {
    input = document.createElement("select");
    for (const v of spec.enum) input.add(new Option(v, v));
  } else if (spec.type === "boolean") {
    input = document.createElement("input");
    input.type = "checkbox";
  } else if ((spec.type === "number" || spec.type === "integer") && spec.minimum !== undefined
             && spec.maximum !== undefined && !spec.nullable) {
    input = document.createElement("input");
    input.type = "range";
    input.min = spec.minimum; input.max = spec.maximum; input.step = stepOf(spec);
    out.htmlFor = id;
    input.addEventListener("input", () => { out.value = input.value; });
  } else if (spec.type === "number" || spec.type === "integer") {
    input = document.createElement("input");
    input.type = "number";
    if (spec.type === "integer") input.step = 1;
  } else {
    input = document.createElement("input");
    input.type = "text";
  }
  input.id = id;
  input.name = path;
  input.dataset.kind = spec.type || "string";
  if (spec.nullable) input.dataset.nullable = "1";
  if (spec.minimum !== undefined) input.setAttribute("aria-valuemin", spec.minimum);
  const help = document.createElement("div");
  help.className = "help";
  const range = spec.minimum !== undefined ? ` (${spec.minimum}–${spec.maximum}, default ${spec.default})` : "";
  help.textContent = (spec.description || "") + range;
  help.id = `${id}-help`;
  input.setAttribute("aria-describedby", help.id);
  row.append(label, input, out, help);
  return row;
}

function buildVoiceForm(schema) {
  const root = $("voice-fields");
  root.replaceChildren();
  const props = schema.properties;
  const providers = props.provider.enum;
  const chain = document.createElement("fieldset");
  chain.innerHTML = "<legend>Provider chain</legend>";
  chain.append(fieldFor("provider", "provider", props.provider));
  for (let i = 0; i < providers.length - 1; i++) {
    const row = fieldFor(`fallback.${i}`, `then`, { enum: ["", ...providers], type: "string",
      description: i === 0 ? props.fallback.description : "" });
    row.querySelector("select").options[0].text = "(none)";
    chain.append(row);
  }
  root.append(chain);
  const general = document.createElement("fieldset");
  general.innerHTML = "<legend>Delivery</legend>";
  for (const [name, node] of Object.entries(props)) {
    if (name === "provider" || name === "fallback") continue;
    const spec = resolve(schema, node);
    if (spec.type === "object") {
      const set = document.createElement("fieldset");
      set.dataset.provider = name;
      const legend = document.createElement("legend");
      legend.textContent = name;
      set.append(legend);
      if (spec.description) {
        const d = document.createElement("p");
        d.className = "muted";
        d.textContent = spec.description;
        set.append(d);
      }
      for (const [sub, subNode] of Object.entries(spec.properties)) {
        set.append(fieldFor(`${name}.${sub}`, sub, resolve(schema, subNode)));
      }
      root.append(set);
    } else {
      general.append(fieldFor(name, name, spec));
    }
  }
  chain.after(general);
  root.addEventListener("change", showChain);
}

function input(path) { return $("voice-fields").querySelector(`[name="${path}"]`); }

function setValue(el, value) {
  if (!el) return;
  if (el.type === "checkbox") el.checked = Boolean(value);
  else el.value = value === null || value === undefined ? "" : String(value);
  const out = el.parentElement.querySelector("output");
  if (out && el.type === "range") out.value = el.value;
}

function fillVoice(tts) {
  for (const el of $("voice-fields").querySelectorAll("[name]")) {
    const [head, sub] = el.name.split(".");
    if (head === "fallback") setValue(el, tts.fallback[Number(sub)] || "");
    else setValue(el, sub === undefined ? tts[head] : tts[head][sub]);
  }
  showChain();
  clearProblems();
}

function readValue(el) {
  if (el.type === "checkbox") return el.checked;
  if (el.value === "" && el.dataset.nullable) return null;
  if (el.dataset.kind === "number") return Number(el.value);
  if (el.dataset.kind === "integer") return el.value === "" ? null : Number(el.value);
  return el.value;
}

function collectVoice() {
  const tts = { fallback: [] };
  for (const el of $("voice-fields").querySelectorAll("[name]")) {
    const [head, sub] = el.name.split(".");
    const value = readValue(el);
    if (head === "fallback") { if (value) tts.fallback.push(value); }
    else if (sub === undefined) tts[head] = value;
    else (tts[head] = tts[head] || {})[sub] = value;
  }
  return tts;
}

function showChain() {
  const tts = collectVoice();
  const used = new Set([tts.provider, ...tts.fallback]);
  for (const set of $("voice-fields").querySelectorAll("fieldset[data-provider]")) {
    set.hidden = !used.has(set.dataset.provider);
  }
}

function clearProblems() {
  for (const p of $("voice-fields").querySelectorAll(".problem")) p.remove();
  $("save-info").replaceChildren();
}

function showProblems(problems) {
  const list = document.createElement("ul");
  list.className = "error";
  for (const p of problems) {
    const path = p.path.replace(/^tts\./, "").replace(/\[(\d+)\]/g, ".$1");
    const row = $("voice-fields").querySelector(`.field[data-path="${path}"]`);
    if (row) {
      const d = document.createElement("div");
      d.className = "problem";
      d.textContent = p.message;
      row.append(d);
    }
    const li = document.createElement("li");
    li.textContent = `${p.path}: ${p.message}`;
    list.append(li);
  }
  $("save-info").replaceChildren(list);
}

async function playSample() {
  const info = $("sample-info");
  info.textContent = "synthesizing…";
  delete info.dataset.provider;
  const started = performance.now();
  const response = await fetch("/v1/audio/speech", {
    method: "POST", credentials: "same-origin", headers: { "content-type": "application/json" },
    body: JSON.stringify({ text: $("sample-text").value, tts: collectVoice(), response_format: "wav" }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    info.textContent = (body.error && body.error.message) || `error ${response.status}`;
    info.className = "error";
    return;
  }
  const h = (k) => response.headers.get(k);
  const wav = await response.arrayBuffer();
  const ctx = new AudioContext();
  const buffer = await ctx.decodeAudioData(wav);
  const src = ctx.createBufferSource();
  src.buffer = buffer;
  src.connect(ctx.destination);
  src.onended = () => ctx.close();
  src.start();
  info.className = "";
  info.dataset.provider = h("x-tts-provider");
  info.dataset.duration = h("x-audio-duration");
  info.textContent = `provider ${h("x-tts-provider")} · processing ${h("x-processing-time")} s · ` +
    `RTF ${h("x-rtf")} · audio ${h("x-audio-duration")} s · round trip ${Math.round(performance.now() - started)} ms` +
    (h("x-tts-fallback") ? ` · fallback: ${h("x-tts-fallback")}` : "");
}

async function save(event) {
  event.preventDefault();
  clearProblems();
  const id = state.agent.id;
  let result;
  try {
    result = await api(`${API}/agents/${encodeURIComponent(id)}/tts`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ tts: collectVoice() }),
    });
  } catch (err) {
    if (err.body && err.body.error && err.body.error.problems) showProblems(err.body.error.problems);
    else $("save-info").textContent = err.message;
    return;
  }
  const p = document.createElement("p");
  p.id = "saved";
  p.dataset.version = result.version;
  p.textContent = `Saved: ${id} is now version ${result.version} (store ${result.store_version}). ` +
    (result.written ? `Written to ${result.file}.` : (result.not_written || ""));
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([result.yaml], { type: "application/yaml" }));
  link.download = result.file_name;
  link.textContent = `Download ${result.file_name}`;
  await loadAgents(id);  // the picker and the panel show the new version before the page says "Saved"
  $("save-info").replaceChildren(p, link);
}

// ---- the call -----------------------------------------------------------------------------------------------
function line(role, text, attrs = {}) {
  const li = document.createElement("li");
  li.dataset.role = role;
  for (const [k, v] of Object.entries(attrs)) li.dataset[k] = v;
  const who = role === "caller" ? "You" : role === "agent" ? "Agent" : "";
  li.textContent = who ? `${who}: ${text}` : text;
  $("transcript").append(li);
  li.scrollIntoView({ block: "nearest" });
  return li;
}

function ms(v) { return v === null || v === undefined ? "–" : `${Math.round(v)} ms`; }

class Call {
  constructor(agentId) {
    this.agentId = agentId;
    this.lines = new Map();      // mark -> transcript line
    this.lastPlayedMs = 0;
    this.caller = [];            // recording, wire-in rate
    this.agent = [];             // recording, wire-out rate
    this.recordLimit = 0;
    this.peak = 0;
  }

  async start() {
    document.body.dataset.callState = "connecting";
    $("transcript").replaceChildren();
    $("turns").tBodies[0].replaceChildren();
    $("call-end").hidden = true;
    $("out-level").dataset.peak = "0";
    this.ctx = new AudioContext();
    await this.ctx.audioWorklet.addModule("/console/static/call-worklet.js");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${scheme}://${location.host}/console/call`);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => this.send({ type: "start", agent: this.agentId, sample_rate: this.ctx.sampleRate });
    this.ws.onmessage = (e) => this.onMessage(e.data);
    this.ws.onclose = (e) => this.finish(e.reason || (this.outcome ? "" : `connection closed (${e.code})`));
  }

  send(obj) { if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj)); }

  async ready(msg) {
    this.audio = msg.audio;
    this.recordLimit = 20 * 60 * Math.max(msg.audio.in.rate, msg.audio.out.rate);
    this.node = new AudioWorkletNode(this.ctx, "voicegw-call", {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [2],
      processorOptions: { inRate: msg.audio.in.rate, outRate: msg.audio.out.rate, frameMs: msg.audio.in.frame_ms },
    });
    this.node.port.onmessage = (e) => this.fromWorklet(e.data);
    this.node.connect(this.ctx.destination);
    this.callId = msg.call_id;
    document.body.dataset.callId = msg.call_id;
    $("hangup-btn").disabled = false;
    setStatus(`in call with ${msg.agent.id} (version ${msg.agent.version})`);
    await this.setMic($("mic").checked);  // may fail (no device, permission refused): the call goes on
    document.body.dataset.callState = "in-call";
  }

  async setMic(on) {
    if (!this.node) return;
    if (on && !this.mic) {
      this.micStream = await navigator.mediaDevices.getUserMedia(
        { audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
      this.mic = this.ctx.createMediaStreamSource(this.micStream);
      this.mic.connect(this.node);
    } else if (!on && this.mic) {
      this.mic.disconnect();
      for (const t of this.micStream.getTracks()) t.stop();  // releases the device
      this.mic = null;
    }
  }

  fromWorklet(m) {
    if (m.frame) {
      const enc = this.audio.in.encoding;
      if (this.ws.readyState === WebSocket.OPEN) this.ws.send(enc === "mulaw" ? mulawEncode(m.frame) : pcm16Encode(m.frame));
      if (this.caller.length < this.recordLimit) this.caller.push(m.frame);
    } else if (m.played) {
      if (this.agent.length < this.recordLimit) this.agent.push(m.played);
    } else if (m.mark !== undefined) {
      this.send({ type: "mark", name: m.mark, played_ms: m.playedMs });
      const li = this.lines.get(m.mark);
      if (li) {
        li.dataset.state = "heard";
        li.dataset.playedMs = String(m.playedMs - this.lastPlayedMs);
      }
      this.lastPlayedMs = m.playedMs;
    } else if (m.cleared) {
      for (const name of m.cleared) {
        this.send({ type: "mark", name, cleared: true });
        const li = this.lines.get(name);
        if (li) li.dataset.state = "cleared";
      }
    } else if (m.level) {
      $("out-level").value = m.level.out;
      $("in-level").value = m.level.in;
      this.peak = Math.max(this.peak, m.level.out);
      $("out-level").dataset.peak = this.peak.toFixed(4);
    }
  }

  onMessage(data) {
    if (data instanceof ArrayBuffer) {
      if (!this.node) return;
      const audio = this.audio.out.encoding === "mulaw" ? mulawDecode(new Uint8Array(data)) : pcm16Decode(data);
      this.node.port.postMessage({ audio }, [audio.buffer]);
      return;
    }
    const msg = JSON.parse(data);
    switch (msg.type) {
      case "ready":
        this.ready(msg).catch((err) => {
          document.body.dataset.callState = "in-call";
          setStatus(`microphone: ${err.message} (the call goes on without it)`, true);
        });
        break;
      case "mark": if (this.node) this.node.port.postMessage({ mark: msg.name }); break;
      case "clear":  // what the page holds is dropped, and so is what the gateway had not sent yet
        if (this.node) this.node.port.postMessage({ clear: true });
        for (const li of this.lines.values()) if (li.dataset.state === "queued") li.dataset.state = "cleared";
        break;
      case "sentence": {
        const li = line("agent", msg.text, { mark: msg.mark, state: "queued", turn: msg.turn ?? "" });
        this.lines.set(msg.mark, li);
        break;
      }
      case "spoken": {
        const li = this.lines.get(msg.mark);
        if (!li) break;
        li.dataset.provider = msg.provider;
        const b = document.createElement("span");
        b.className = msg.fallback ? "badge fallback" : "badge";
        b.textContent = msg.fallback ? `${msg.provider} (fallback)` : msg.provider;
        if (msg.fallback) b.title = msg.fallback;
        li.append(b);
        break;
      }
      case "caller": {
        // a reply prepared while the caller was finishing (speculative) is queued before its transcript:
        // show the words before that reply
        const li = line("caller", msg.text);
        const agent = [...$("transcript").querySelectorAll("li[data-role='agent']")];
        const last = agent.length ? agent[agent.length - 1].dataset.turn : undefined;
        const reply = agent.find((a) => a.dataset.turn === last && a.dataset.state === "queued");
        if (reply) reply.before(li);
        break;
      }
      case "dtmf": line("event", `keypad ${msg.digit}`, { digit: msg.digit }); break;
      case "barge_in": line("event", `barge-in (${msg.cause || "speech"})`, { bargeIn: "1" }); break;
      case "turn": this.turnRow(msg); break;
      case "transfer": line("event", `transfer to ${msg.to}`); this.hangup(); break;  // nobody to dial here
      case "end": this.outcome = msg.outcome; break;
      case "error": setStatus(msg.message, true); break;
      default: break;  // newer gateways may send more; ignore
    }
  }

  turnRow(msg) {  // sent again as a turn's figures arrive: one row per turn, updated
    const body = $("turns").tBodies[0];
    const row = body.querySelector(`tr[data-turn="${msg.turn}"]`) || body.appendChild(document.createElement("tr"));
    row.replaceChildren();
    row.dataset.turn = msg.turn;
    const cause = (msg.cause || "") + (msg.why ? ` (${msg.why}${msg.speculative ? ", speculative" : ""})` : "");
    const cells = [msg.turn, cause, ms(msg.endpoint_wait_ms), ms(msg.recognition_ms), ms(msg.logic_first_ms),
      ms(msg.first_audio_ms), ms(msg.first_heard_ms), (msg.providers || []).join(", ")];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; row.append(td); }
  }

  hangup() {
    this.send({ type: "hangup" });
  }

  finish(reason) {
    if (document.body.dataset.callState === "ended") return;
    document.body.dataset.callState = "ended";
    if (this.node) { this.node.port.postMessage({ stop: true }); this.node.disconnect(); }
    if (this.mic) this.setMic(false);
    if (this.ctx) this.ctx.close();
    $("hangup-btn").disabled = true;
    $("call-btn").disabled = false;
    const end = $("call-end");
    end.hidden = false;
    end.replaceChildren(`Call ended: ${this.outcome || "disconnected"}${reason ? ` (${reason})` : ""}. `);
    end.dataset.outcome = this.outcome || "disconnected";
    if (this.audio && (this.caller.length || this.agent.length)) {
      const a = document.createElement("a");
      a.id = "recording";
      a.href = URL.createObjectURL(stereoWav(this.caller, this.audio.in.rate, this.agent, this.audio.out.rate));
      a.download = `${this.callId || "call"}.wav`;
      a.textContent = "Download the recording (stereo WAV: you left, agent right)";
      end.append(a);
    }
    setStatus("ready");
    state.call = null;
  }
}

function concat(chunks) {
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

function toRate(samples, from, to) {
  if (from === to) return samples;
  const r = new Resampler(from, to);
  r.push(samples);
  r.push(new Float32Array(r.width * 2));
  return r.pull(Math.floor(samples.length * to / from));
}

function stereoWav(callerChunks, inRate, agentChunks, outRate) {
  const rate = Math.max(inRate, outRate);
  const left = toRate(concat(callerChunks), inRate, rate);
  const right = toRate(concat(agentChunks), outRate, rate);
  const n = Math.max(left.length, right.length);
  const buf = new ArrayBuffer(44 + n * 4);
  const v = new DataView(buf);
  const str = (at, s) => { for (let i = 0; i < s.length; i++) v.setUint8(at + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + n * 4, true); str(8, "WAVE"); str(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 2, true); v.setUint32(24, rate, true);
  v.setUint32(28, rate * 4, true); v.setUint16(32, 4, true); v.setUint16(34, 16, true); str(36, "data");
  v.setUint32(40, n * 4, true);
  const s16 = (x) => Math.max(-32768, Math.min(32767, Math.round((x || 0) * 32768)));
  for (let i = 0; i < n; i++) { v.setInt16(44 + 4 * i, s16(left[i]), true); v.setInt16(46 + 4 * i, s16(right[i]), true); }
  return new Blob([buf], { type: "audio/wav" });
}

// ---- wiring -------------------------------------------------------------------------------------------------
async function main() {
  try {
    const schema = await api(`${API}/voice-schema`);
    state.schema = schema.tts;
    buildVoiceForm(schema.tts);
    await loadAgents();
    setStatus("ready");
    document.body.dataset.ready = "1";
  } catch (err) {
    setStatus(`cannot load: ${err.message}`, true);
    return;
  }
  $("agent").addEventListener("change", (e) => selectAgent(e.target.value).catch((err) => setStatus(err.message, true)));
  $("call-btn").addEventListener("click", async () => {
    $("call-btn").disabled = true;
    state.call = new Call($("agent").value);
    try { await state.call.start(); } catch (err) { setStatus(err.message, true); state.call.finish(err.message); }
  });
  $("hangup-btn").addEventListener("click", () => state.call && state.call.hangup());
  $("mic").addEventListener("change", (e) => state.call && state.call.setMic(e.target.checked)
    .catch((err) => setStatus(`microphone: ${err.message}`, true)));
  for (const b of $("keypad").querySelectorAll("button")) {
    b.setAttribute("aria-keyshortcuts", b.textContent);
    b.addEventListener("click", () => state.call && state.call.send({ type: "dtmf", digit: b.textContent }));
  }
  // during a call, the digit keys press the keypad (unless typing in a field)
  document.addEventListener("keydown", (e) => {
    if (!state.call || e.ctrlKey || e.metaKey || e.altKey || e.target.closest("input[type=text], input[type=number], select, textarea")) return;
    const button = [...$("keypad").querySelectorAll("button")].find((b) => b.textContent === e.key);
    if (button) { e.preventDefault(); button.focus(); button.click(); }
  });
  $("sample-btn").addEventListener("click", () => playSample().catch((err) => {
    $("sample-info").textContent = err.message; $("sample-info").className = "error";
  }));
  $("voice-form").addEventListener("submit", (e) => save(e).catch((err) => { $("save-info").textContent = err.message; }));
  $("reset-btn").addEventListener("click", () => state.agent && fillVoice(state.agent.tts));
}

main();
