// The page: drives unroll's WebAssembly build (web/src/lib.rs) and draws what it reports.
// `window.unroll` exposes the page's state to the browser test (web/test/browser.mjs).
import init, { Session, builtinCorpus, checkGradients, loadCheckpoint } from "./pkg/unroll_web.js";

const $ = (id) => document.getElementById(id);
const STEPS_PER_CALL = 10;
const SAMPLE_EVERY = 100;

const state = {
  ready: false, training: false, stopping: false, session: null, text: "", steps: 0, losses: [],
  tokensPerSecond: null, check: null, sample: "", error: null, device: "",
};
window.unroll = state;

function status(message, error = false) {
  $("status").textContent = message;
  $("status").className = error ? "error" : "";
  if (error) state.error = message;
}

function buttons() {
  const busy = !state.ready;
  $("start").disabled = busy || state.training;
  $("stop").disabled = !state.training || state.stopping;
  $("resume").disabled = busy || state.training || !state.session;
  $("check").disabled = busy || state.training;
  $("download").disabled = busy || state.training || !state.session;
}

function settings() {
  const int = (id) => parseInt($(id).value, 10);
  return {
    cell: $("cell").value, layers: int("layers"), hidden: int("hidden"),
    batch: int("batch"), steps: int("steps"), lr: parseFloat($("lr").value),
  };
}

function drawCurve() {
  const canvas = $("curve");
  const g = canvas.getContext("2d");
  const [w, h, pad] = [canvas.width, canvas.height, 48];
  g.clearRect(0, 0, w, h);
  g.font = "22px system-ui"; g.fillStyle = "#4a5264"; g.strokeStyle = "#dde1e8"; g.lineWidth = 2;
  g.strokeRect(pad, 8, w - pad - 8, h - pad - 8);
  const points = state.losses;
  if (points.length === 0) return;
  const maxStep = Math.max(points[points.length - 1][0], 1);
  const maxLoss = Math.max(...points.map((p) => p[1]));
  g.fillText(maxLoss.toFixed(2), 2, 28);
  g.fillText("0", pad - 20, h - pad);
  g.fillText(`step ${maxStep}`, w - 150, h - 12);
  g.strokeStyle = "#2557d6"; g.lineWidth = 3; g.beginPath();
  points.forEach(([step, loss], i) => {
    const x = pad + (step / maxStep) * (w - pad - 8);
    const y = 8 + (1 - loss / maxLoss) * (h - pad - 8);
    i === 0 ? g.moveTo(x, y) : g.lineTo(x, y);
  });
  g.stroke();
}

async function refreshSample() {
  state.sample = await state.session.sample(state.text.slice(0, 1), 300, 0.6);
  $("sample").textContent = state.sample;
}

// tokens/s over the last few calls: the rate now, past the first calls' pipeline compiles.
const RATE_WINDOW = 5;

async function trainLoop() {
  const { batch, steps } = settings();
  const recent = [];
  while (!state.stopping) {
    const t0 = performance.now();
    const loss = await state.session.train(STEPS_PER_CALL);
    recent.push((performance.now() - t0) / 1000);
    if (recent.length > RATE_WINDOW) recent.shift();
    state.steps += STEPS_PER_CALL;
    state.losses.push([state.steps, loss]);
    const seconds = recent.reduce((a, b) => a + b, 0);
    state.tokensPerSecond = (recent.length * STEPS_PER_CALL * batch * steps) / seconds;
    $("step").textContent = state.steps;
    $("loss").textContent = loss.toFixed(4);
    $("tps").textContent = Math.round(state.tokensPerSecond).toLocaleString("en");
    drawCurve();
    if (state.steps % SAMPLE_EVERY === 0) await refreshSample();
    await new Promise((resolve) => setTimeout(resolve, 0)); // let the page repaint
  }
}

async function run(fn) {
  try {
    await fn();
  } catch (e) {
    status(String(e.message || e), true);
  }
  state.training = false;
  state.stopping = false;
  buttons();
}

async function start() {
  const s = settings();
  status("Building the model on WebGPU…");
  state.session?.free();
  state.session = await Session.create(state.text, s.cell, s.layers, s.hidden, s.batch, s.steps, s.lr, 1);
  state.steps = 0; state.losses = []; state.tokensPerSecond = null;
  const info = JSON.parse(state.session.info());
  state.device = info.device;
  $("params").textContent = info.parameters.toLocaleString("en");
  $("device").textContent = `${info.cell} × ${info.layers}, H = ${info.hidden}, vocabulary ${info.vocab}, ` +
    `B = ${info.batch}, T = ${info.steps} on WebGPU (adapter: ${state.adapter})`;
  await resume();
}

async function resume() {
  state.training = true;
  buttons();
  status("Training…");
  await trainLoop();
  status(`Stopping at step ${state.steps}: a last sample…`);
  await refreshSample();
  status(`Stopped at step ${state.steps}.`);
}

async function check() {
  const s = settings();
  status("Checking gradients: one step on WebGPU and on the CPU reference…");
  state.check = null;
  const report = JSON.parse(await checkGradients(s.cell, s.layers, s.hidden, 7));
  state.check = report;
  const rows = report.rows.map((r) =>
    `<tr><td>${r.name}</td><td>[${r.shape.join(", ")}]</td><td>${r.max_diff.toExponential(3)}</td>` +
    `<td>${r.max_ref.toExponential(3)}</td><td>${r.relative.toExponential(3)}</td>` +
    `<td>${r.f32_own === null ? "–" : r.f32_own.toExponential(3)}</td>` +
    `<td>${r.ratio === null ? "–" : r.ratio.toFixed(2)}</td><td>${r.tolerance.toExponential(1)}</td>` +
    `<td class="${r.pass ? "pass" : "fail"}">${r.pass ? "pass" : "FAIL"}</td></tr>`).join("");
  $("checkTable").innerHTML = "<tr><th>tensor</th><th>shape</th><th>max |Δ|</th><th>max |ref|</th>" +
    "<th>rel. error</th><th>f32's own</th><th>ratio</th><th>tolerance</th><th>result</th></tr>" + rows;
  $("checkSummary").innerHTML = `<span class="${report.pass ? "pass" : "fail"}">` +
    `${report.pass ? "Every tensor passed" : "Some tensors FAILED"}</span> on WebGPU (adapter: ${state.adapter}).`;
  status(report.pass ? "Gradients agree." : "The GPU and the CPU reference disagree.", !report.pass);
}

async function download() {
  const bytes = await state.session.checkpoint();
  const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
  const a = Object.assign(document.createElement("a"), { href: url, download: "model.safetensors" });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  status(`Checkpoint of step ${state.steps} downloaded (model.safetensors; unroll sample --checkpoint reads it).`);
}

async function load(file) {
  const model = loadCheckpoint(new Uint8Array(await file.arrayBuffer()));
  $("sample").textContent = model.sample("", 300, 0.6);
  status(`Loaded ${file.name}: ${model.describe()}. The sample is drawn from it.`);
  model.free();
}

async function useText(file) {
  state.text = await file.text();
  $("source").textContent = `${file.name} (${state.text.length.toLocaleString("en")} characters)`;
}

function wire() {
  $("start").onclick = () => run(start);
  $("stop").onclick = () => { state.stopping = true; buttons(); };
  $("resume").onclick = () => run(resume);
  $("check").onclick = () => run(check);
  $("download").onclick = () => run(download);
  $("load").onchange = (e) => e.target.files[0] && run(() => load(e.target.files[0]));
  $("file").onchange = (e) => e.target.files[0] && run(() => useText(e.target.files[0]));
  $("builtin").onclick = () => {
    state.text = builtinCorpus();
    $("source").textContent = "the built-in corpus (lines of integer arithmetic)";
  };
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files[0]) run(() => useText(e.dataTransfer.files[0]));
  };
}

async function main() {
  wire();
  await init();
  state.text = builtinCorpus();
  if (!navigator.gpu) {
    status("This browser has no WebGPU (navigator.gpu is missing): use a recent Chrome, Edge or " +
      "Safari, or Firefox 141+ on Windows; on Linux start Chrome with --enable-unsafe-webgpu.", true);
    return;
  }
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) {
    status("This browser has WebGPU but offers no adapter: check chrome://gpu (or about:support).", true);
    return;
  }
  const info = adapter.info || {};
  state.adapter = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") || "unnamed";
  state.ready = true;
  buttons();
  status(`Ready: WebGPU adapter ${state.adapter}.`);
}

run(main);
