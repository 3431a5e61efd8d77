// moodstream browser client: microphone (AudioWorklet -> 16 kHz int16 frames) or a file, over /ws/analyze,
// with reconnect-and-resume, and a live view of VAD, provisional acoustic mood, utterances and a fused timeline.
"use strict";

const SAMPLE_RATE = 16000;
const FRAME_SAMPLES = 320; // 20 ms
const REPLAY_SAMPLES = 5 * SAMPLE_RATE; // audio kept to resend after a reconnect
const RESUMABLE = new Set([1001, 1006, 1011, 1012, 1013, 1014]);
const $ = (id) => document.getElementById(id);

function wsUrl() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const token = $("token").value.trim();
  return `${proto}://${location.host}/ws/analyze` + (token ? `?token=${encodeURIComponent(token)}` : "");
}

function notice(text, kind = "info") {
  $("notice").textContent = text;
  $("notice").className = kind;
}

function connectionState(text, ok) {
  $("connection").textContent = text;
  $("connection").className = "pill" + (ok === true ? " ok" : ok === false ? " bad" : "");
}

// One analysis session over one or more WebSocket connections (see producers/client.py for the same logic).
class Session {
  constructor(onMessage, onEnd, options = {}) {
    this.options = options; // the start's options: {channels: 2} for a call
    this.channels = options.channels || 1;
    this.onMessage = onMessage;
    this.onEnd = onEnd;
    this.token = null;
    this.sent = 0; // samples sent in this session
    this.replay = []; // [startSample, Int16Array]
    this.replaySamples = 0;
    this.finals = new Set();
    this.seen = new Set();
    this.ended = false; // "end" sent
    this.done = false;
    this.ws = null;
    this.attempts = 0;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl());
      ws.binaryType = "arraybuffer";
      let started = false;
      let fatal = null;
      ws.onopen = () => {
        const start = { type: "start", sample_rate: SAMPLE_RATE, options: this.options };
        if (this.token) {
          start.resume_token = this.token;
          start.resume_from_sample = this.replay.length ? this.replay[0][0] : this.sent;
          start.delivered_utterances = [...this.finals];
        }
        ws.send(JSON.stringify(start));
      };
      ws.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type === "session.started") {
          const resumed = this.token !== null;
          this.token = message.resume_token;
          this.ws = ws;
          this.attempts = 0;
          started = true;
          connectionState(resumed ? "resumed" : "connected", true);
          if (resumed) {
            for (const [, frame] of this.replay) ws.send(frame);
            if (this.ended) ws.send(JSON.stringify({ type: "end" }));
          }
          resolve(message);
          return;
        }
        if (message.type === "error" && message.fatal) fatal = message;
        if (message.type === "partial" && this.finals.has(message.utterance_seq)) return; // the final supersedes it
        if (message.type === "utterance") {
          const key = `${message.utterance_seq}/${message.revision}`;
          if (this.seen.has(key)) return;
          this.seen.add(key);
          if (message.final) this.finals.add(message.utterance_seq);
        }
        this.onMessage(message);
        if (message.type === "session.ended") this.finish();
      };
      ws.onclose = (event) => {
        if (this.ws === ws) this.ws = null;
        if (!started) {
          const why = fatal ? `${fatal.code}: ${fatal.message}` : `connection refused (code ${event.code})`;
          reject(Object.assign(new Error(why), { code: event.code, resumable: RESUMABLE.has(event.code) && !fatal }));
          return;
        }
        if (this.done) return;
        if (fatal && !RESUMABLE.has(event.code)) {
          notice(`The server ended the session: ${fatal.code}: ${fatal.message}`, "error");
          this.finish();
        } else if (event.code === 1000 && !fatal) {
          this.finish();
        } else {
          this.reconnect(`connection lost (code ${event.code})`);
        }
      };
    });
  }

  async reconnect(why) {
    if (this.reconnecting || this.done) return;
    this.reconnecting = true;
    while (!this.done && this.attempts < 30) {
      this.attempts += 1;
      const delay = Math.min(4000, 250 * 2 ** (this.attempts - 1));
      connectionState(`reconnecting (${this.attempts})`, false);
      notice(`${why}; reconnecting in ${(delay / 1000).toFixed(1)} s…`, "error");
      await new Promise((r) => setTimeout(r, delay));
      try {
        await this.open();
        notice("Reconnected: the session goes on where it left off.", "info");
        this.reconnecting = false;
        return;
      } catch (err) {
        if (!err.resumable && err.code !== 1006) {
          notice(`Could not resume: ${err.message}`, "error");
          break;
        }
      }
    }
    this.reconnecting = false;
    if (!this.done) {
      notice("The connection is gone and could not be restored.", "error");
      this.finish();
    }
  }

  send(frame /* Int16Array, channels interleaved */) {
    const samples = frame.length / this.channels; // the session's sample clock counts sample frames
    this.replay.push([this.sent, frame]);
    this.sent += samples;
    this.replaySamples += samples;
    while (this.replaySamples - this.replay[0][1].length / this.channels >= REPLAY_SAMPLES) {
      this.replaySamples -= this.replay.shift()[1].length / this.channels;
    }
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(frame);
  }

  buffered() {
    return this.ws ? this.ws.bufferedAmount : 0;
  }

  end() {
    this.ended = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "end" }));
  }

  finish() {
    if (this.done) return;
    this.done = true;
    if (this.ws) this.ws.close(1000);
    connectionState("idle");
    this.onEnd();
  }
}

// ---- view ---------------------------------------------------------------------------------------------------
const points = []; // [end seconds, fused score, label, channel]
const PARTY_COLOURS = ["#1f6feb", "#b35cd6"]; // a call's channels on the timeline
const rows = new Map(); // utterance seq -> <tr>

function label(scores) {
  if (!scores) return null;
  return ["negative", "neutral", "positive"].reduce((a, b) => (scores[a] >= scores[b] ? a : b));
}

function cell(scores) {
  const name = label(scores);
  if (!name) return '<span class="muted">—</span>';
  return `<span class="label ${name}">${name}</span> <span class="muted">${scores[name].toFixed(2)}</span>`;
}

function showAcoustic(m) {
  const parts = $("acoustic").children;
  ["negative", "neutral", "positive"].forEach((name, i) => {
    parts[3 * i + 1].firstElementChild.style.width = `${Math.round(m.sentiment[name] * 100)}%`;
    parts[3 * i + 2].textContent = m.sentiment[name].toFixed(2);
  });
  if (m.arousal !== null && m.arousal !== undefined) {
    parts[10].firstElementChild.style.width = `${Math.round(m.arousal * 100)}%`;
    parts[11].textContent = m.arousal.toFixed(2);
  }
}

function emotionCell(m) {
  if (!m.emotion_label) return '<span class="muted">—</span>';
  return `${m.emotion_label} <span class="muted">${m.emotion[m.emotion_label].toFixed(2)}</span>`;
}

function arousalCell(m) {
  if (m.arousal === null || m.arousal === undefined) return '<span class="muted">—</span>';
  return `<span class="muted">${m.arousal.toFixed(2)}</span>`;
}

let captionSeq = null; // the utterance the live caption shows last
const captions = new Map(); // channel -> [utterance seq, html]: in a call both parties may speak at once

function escaped(text) {
  return text.replace(/[<>&]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function party(m) {
  return m.role ? `<span class="role party-${m.channel}">${escaped(m.role)}</span> ` : "";
}

function showCaptions() {
  $("caption").innerHTML = [...captions.values()].map(([, html]) => html).join(" · ");
}

function showPartial(m) {
  const shown = captions.get(m.channel || 0);
  if (shown && m.utterance_seq < shown[0]) return;
  captionSeq = m.utterance_seq;
  const name = label(m.text_sentiment);
  captions.set(m.channel || 0, [m.utterance_seq, `${party(m)}${escaped(m.text)} <span class="label ${name}">${name}</span>`]);
  showCaptions();
}

function showUtterance(m) {
  const shown = captions.get(m.channel || 0);
  if (m.final && shown && m.utterance_seq >= shown[0]) {
    captions.delete(m.channel || 0);
    showCaptions();
  }
  let row = rows.get(m.utterance_seq);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.seq = m.utterance_seq;
    $("utterances").prepend(row);
    rows.set(m.utterance_seq, row);
  }
  const text = m.text ? escaped(m.text) : '<span class="muted">(no words)</span>';
  row.className = "utterance" + (m.final ? " final" : "");
  row.innerHTML =
    `<td>${(m.start_ms / 1000).toFixed(1)}–${(m.end_ms / 1000).toFixed(1)} s</td>` +
    `<td>${party(m)}</td><td class="transcript">${text}${m.final ? "" : ' <span class="muted">(waiting for words)</span>'}</td>` +
    `<td>${cell(m.text_sentiment)}</td><td>${cell(m.audio_sentiment)}</td>` +
    `<td>${emotionCell(m)}</td><td>${arousalCell(m)}</td>` +
    `<td><span class="label ${m.fused_label}">${m.fused_label}</span> <span class="fused-score">${m.fused_score.toFixed(2)}</span></td>`;
  if (m.final) {
    points.push([m.end_ms / 1000, m.fused_score, m.fused_label, m.channel || 0]);
    drawTimeline();
  }
}

function drawTimeline() {
  const canvas = $("timeline");
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 24;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#e3e5e8";
  g.beginPath(); g.moveTo(pad, h / 2); g.lineTo(w - 4, h / 2); g.stroke();
  g.fillStyle = "#777"; g.font = "11px system-ui";
  g.fillText("+1", 2, 12); g.fillText(" 0", 2, h / 2 + 4); g.fillText("−1", 2, h - 4);
  if (!points.length) return;
  const tMax = Math.max(10, ...points.map((p) => p[0]));
  const x = (t) => pad + (t / tMax) * (w - pad - 8);
  const y = (s) => h / 2 - s * (h / 2 - 8);
  for (const channel of new Set(points.map((p) => p[3]))) { // one line per party
    g.strokeStyle = PARTY_COLOURS[channel]; g.lineWidth = 2; g.beginPath();
    points.filter((p) => p[3] === channel).forEach(([t, s], i) => (i ? g.lineTo(x(t), y(s)) : g.moveTo(x(t), y(s))));
    g.stroke();
  }
  const colours = { negative: "#d64545", neutral: "#8a8f98", positive: "#2f9e5a" };
  for (const [t, s, name] of points) {
    g.fillStyle = colours[name]; g.beginPath(); g.arc(x(t), y(s), 4, 0, 2 * Math.PI); g.fill();
  }
}

const levels = new Map(); // channel -> "role −20 dBFS"

function showLevel(m) {
  levels.set(m.channel || 0, `${m.role ? m.role + " " : ""}${m.rms_dbfs.toFixed(0)} dBFS`);
  $("level").textContent = [...levels.values()].join(" · ");
}

function onMessage(m) {
  switch (m.type) {
    case "vad.speech_start": $("vad").textContent = "speaking"; $("vad").className = "speaking"; break;
    case "vad.speech_end": $("vad").textContent = "silent"; $("vad").className = ""; break;
    case "level": showLevel(m); break;
    case "acoustic": showAcoustic(m); break;
    case "partial": showPartial(m); break;
    case "utterance": showUtterance(m); break;
    case "error": notice(`${m.code}: ${m.message}`, m.fatal ? "error" : "info"); break;
    case "session.ended": {
      const perParty = m.channel_utterances ? ` (${m.channel_utterances.join(" + ")} by channel)` : "";
      notice(`Session ended (${m.reason}): ${m.utterances} utterances${perParty}.`, "info");
      break;
    }
  }
}

// ---- sources ----------------------------------------------------------------------------------------------
let session = null;
let stopCapture = null;

function busy(on) {
  $("mic-start").disabled = on;
  $("file").disabled = on;
  $("stop").disabled = !on;
}

function newSession(options) {
  session = new Session(onMessage, () => {
    if (stopCapture) stopCapture();
    stopCapture = null;
    busy(false);
  }, options);
  captions.clear();
  levels.clear();
  return session;
}

// A started session, or null after telling the user why the server refused it.
async function openSession(options = {}) {
  const s = newSession(options);
  try {
    await s.open();
    return s;
  } catch (err) {
    notice(`The server refused the session: ${err.message}`, "error");
    busy(false);
    return null;
  }
}

async function startMicrophone() {
  busy(true);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (err) {
    const denied = err.name === "NotAllowedError" || err.name === "SecurityError";
    notice(denied ? "Microphone access was denied: allow it in the browser's site settings and try again."
                  : `No microphone available: ${err.message}`, "error");
    busy(false);
    return;
  }
  const s = await openSession();
  if (!s) {
    stream.getTracks().forEach((t) => t.stop());
    return;
  }
  const context = new AudioContext();
  await context.audioWorklet.addModule("/static/pcm-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const worklet = new AudioWorkletNode(context, "pcm-worklet", { processorOptions: { frameSamples: FRAME_SAMPLES } });
  worklet.port.onmessage = (event) => s.send(new Int16Array(event.data));
  source.connect(worklet);
  notice(`Listening (microphone at ${context.sampleRate} Hz, sent as 16 kHz).`, "info");
  stopCapture = () => {
    source.disconnect();
    worklet.disconnect();
    stream.getTracks().forEach((t) => t.stop());
    context.close();
  };
}

// 16 kHz int16 PCM of a file: mono, or a call's two channels interleaved when the file is stereo with two
// different channels (a mono recording stored as stereo stays one voice).
async function decodeTo16k(file) {
  const bytes = await file.arrayBuffer();
  const decoded = await new AudioContext().decodeAudioData(bytes);
  const stereo = decoded.numberOfChannels === 2 && !sameChannels(decoded);
  const channels = stereo ? 2 : 1;
  const offline = new OfflineAudioContext(channels, Math.ceil(decoded.duration * SAMPLE_RATE), SAMPLE_RATE);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const rendered = await offline.startRendering();
  const planes = [...Array(channels).keys()].map((c) => rendered.getChannelData(c));
  const pcm = new Int16Array(planes[0].length * channels);
  for (let i = 0; i < planes[0].length; i++) {
    for (let c = 0; c < channels; c++) {
      const v = Math.max(-1, Math.min(1, planes[c][i]));
      pcm[i * channels + c] = v < 0 ? v * 0x8000 : v * 0x7fff;
    }
  }
  return { pcm, channels };
}

function sameChannels(buffer) {
  const left = buffer.getChannelData(0), right = buffer.getChannelData(1);
  for (let i = 0; i < left.length; i += 7) if (Math.abs(left[i] - right[i]) > 1e-3) return false;
  return true;
}

async function analyseFile(file) {
  busy(true);
  let pcm, channels;
  try {
    ({ pcm, channels } = await decodeTo16k(file));
  } catch (err) {
    notice(`Could not decode ${file.name}: ${err.message}`, "error");
    busy(false);
    return;
  }
  const s = await openSession(channels === 2 ? { channels: 2 } : {});
  if (!s) return;
  const kind = channels === 2 ? ", a call: one party per channel" : "";
  notice(`Analysing ${file.name} (${(pcm.length / channels / SAMPLE_RATE).toFixed(1)} s${kind})…`, "info");
  let stopped = false;
  stopCapture = () => { stopped = true; };
  const step = FRAME_SAMPLES * channels;
  for (let i = 0; i < pcm.length && !stopped && !s.done; i += step) {
    while (s.buffered() > 256 * 1024 || s.reconnecting) await new Promise((r) => setTimeout(r, 20));
    s.send(pcm.slice(i, i + step));
    if ((i / step) % 50 === 49) await new Promise((r) => setTimeout(r, 0));
  }
  s.end();
}

$("mic-start").onclick = () => startMicrophone();
$("stop").onclick = () => {
  if (stopCapture) stopCapture();
  stopCapture = null;
  if (session && !session.done) session.end();
  notice("Finishing the last utterance…", "info");
};
$("file").onchange = (event) => {
  const file = event.target.files[0];
  if (file) analyseFile(file);
  event.target.value = "";
};
$("ws-url").textContent = wsUrl();

async function pollReady() {
  try {
    const r = await fetch("/readyz");
    const j = await r.json();
    $("ready").textContent = j.ready ? "service ready" : "not ready";
    $("ready").className = "pill " + (j.ready ? "ok" : "bad");
    $("ready").title = JSON.stringify(j.checks);
  } catch {
    $("ready").textContent = "gateway unreachable";
    $("ready").className = "pill bad";
  }
}
pollReady();
setInterval(pollReady, 5000);
drawTimeline();
