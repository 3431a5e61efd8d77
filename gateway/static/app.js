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
  constructor(onMessage, onEnd) {
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
        const start = { type: "start", sample_rate: SAMPLE_RATE };
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

  send(frame /* Int16Array */) {
    this.replay.push([this.sent, frame]);
    this.sent += frame.length;
    this.replaySamples += frame.length;
    while (this.replaySamples - this.replay[0][1].length >= REPLAY_SAMPLES) {
      this.replaySamples -= this.replay.shift()[1].length;
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
const points = []; // [end seconds, fused score, label]
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

let captionSeq = null; // the utterance the live caption shows

function showPartial(m) {
  if (captionSeq !== null && m.utterance_seq < captionSeq) return;
  captionSeq = m.utterance_seq;
  const name = label(m.text_sentiment);
  const text = m.text.replace(/[<>&]/g, (c) => `&#${c.charCodeAt(0)};`);
  $("caption").innerHTML = `${text} <span class="label ${name}">${name}</span>`;
}

function showUtterance(m) {
  if (m.final && m.utterance_seq === captionSeq) $("caption").textContent = "";
  let row = rows.get(m.utterance_seq);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.seq = m.utterance_seq;
    $("utterances").prepend(row);
    rows.set(m.utterance_seq, row);
  }
  const text = m.text ? m.text.replace(/[<>&]/g, (c) => `&#${c.charCodeAt(0)};`) : '<span class="muted">(no words)</span>';
  row.className = "utterance" + (m.final ? " final" : "");
  row.innerHTML =
    `<td>${(m.start_ms / 1000).toFixed(1)}–${(m.end_ms / 1000).toFixed(1)} s</td>` +
    `<td class="transcript">${text}${m.final ? "" : ' <span class="muted">(waiting for words)</span>'}</td>` +
    `<td>${cell(m.text_sentiment)}</td><td>${cell(m.audio_sentiment)}</td>` +
    `<td>${emotionCell(m)}</td><td>${arousalCell(m)}</td>` +
    `<td><span class="label ${m.fused_label}">${m.fused_label}</span> <span class="fused-score">${m.fused_score.toFixed(2)}</span></td>`;
  if (m.final) {
    points.push([m.end_ms / 1000, m.fused_score, m.fused_label]);
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
  g.strokeStyle = "#1f6feb"; g.lineWidth = 2; g.beginPath();
  points.forEach(([t, s], i) => (i ? g.lineTo(x(t), y(s)) : g.moveTo(x(t), y(s))));
  g.stroke();
  const colours = { negative: "#d64545", neutral: "#8a8f98", positive: "#2f9e5a" };
  for (const [t, s, name] of points) {
    g.fillStyle = colours[name]; g.beginPath(); g.arc(x(t), y(s), 4, 0, 2 * Math.PI); g.fill();
  }
}

function onMessage(m) {
  switch (m.type) {
    case "vad.speech_start": $("vad").textContent = "speaking"; $("vad").className = "speaking"; break;
    case "vad.speech_end": $("vad").textContent = "silent"; $("vad").className = ""; break;
    case "level": $("level").textContent = `${m.rms_dbfs.toFixed(0)} dBFS`; break;
    case "acoustic": showAcoustic(m); break;
    case "partial": showPartial(m); break;
    case "utterance": showUtterance(m); break;
    case "error": notice(`${m.code}: ${m.message}`, m.fatal ? "error" : "info"); break;
    case "session.ended": notice(`Session ended (${m.reason}): ${m.utterances} utterances.`, "info"); break;
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

function newSession() {
  session = new Session(onMessage, () => {
    if (stopCapture) stopCapture();
    stopCapture = null;
    busy(false);
  });
  return session;
}

// A started session, or null after telling the user why the server refused it.
async function openSession() {
  const s = newSession();
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

async function decodeTo16k(file) {
  const bytes = await file.arrayBuffer();
  const decoded = await new AudioContext().decodeAudioData(bytes);
  const offline = new OfflineAudioContext(1, Math.ceil(decoded.duration * SAMPLE_RATE), SAMPLE_RATE);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const floats = (await offline.startRendering()).getChannelData(0);
  const pcm = new Int16Array(floats.length);
  for (let i = 0; i < floats.length; i++) {
    const v = Math.max(-1, Math.min(1, floats[i]));
    pcm[i] = v < 0 ? v * 0x8000 : v * 0x7fff;
  }
  return pcm;
}

async function analyseFile(file) {
  busy(true);
  let pcm;
  try {
    pcm = await decodeTo16k(file);
  } catch (err) {
    notice(`Could not decode ${file.name}: ${err.message}`, "error");
    busy(false);
    return;
  }
  const s = await openSession();
  if (!s) return;
  notice(`Analysing ${file.name} (${(pcm.length / SAMPLE_RATE).toFixed(1)} s)…`, "info");
  let stopped = false;
  stopCapture = () => { stopped = true; };
  for (let i = 0; i < pcm.length && !stopped && !s.done; i += FRAME_SAMPLES) {
    while (s.buffered() > 256 * 1024 || s.reconnecting) await new Promise((r) => setTimeout(r, 20));
    s.send(pcm.slice(i, i + FRAME_SAMPLES));
    if ((i / FRAME_SAMPLES) % 50 === 49) await new Promise((r) => setTimeout(r, 0));
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
