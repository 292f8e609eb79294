// The page in a real browser: headless Chromium with WebGPU on its software Vulkan
// (SwiftShader), driven by playwright-core. It trains a small LSTM on the built-in corpus and
// asserts that the loss fell, runs the gradient check and asserts that every tensor passed,
// downloads the checkpoint and has the native `unroll sample` read it.
//
//   node web/test/browser.mjs [--screenshot docs/web-page.png]
//
// Needs web/pkg (web/build.sh), the native unroll (cargo build --release: under
// $CARGO_TARGET_DIR/release where that is set, else target/release) and Chromium at
// $CHROMIUM or /usr/bin/chromium. A missing browser, WebGPU or adapter fails the test.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const web = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const root = resolve(web, "..");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const unroll = join(resolve(root, process.env.CARGO_TARGET_DIR || "target"), "release", "unroll");
const screenshotAt = process.argv.indexOf("--screenshot");
const screenshot = screenshotAt > 0 ? resolve(process.argv[screenshotAt + 1]) : null;
// Generous: a software GPU on a loaded two-core machine. The test waits for conditions, never
// for time; these only bound a hang.
const LIMIT_MS = 15 * 60 * 1000;
const STEPS = 60;

function fail(message) {
  console.error(`browser test FAILED: ${message}`);
  process.exit(1);
}

// The screenshot replaces only the page's own (docs/web-page.png), never another file.
if (screenshot && existsSync(screenshot) && screenshot !== join(root, "docs", "web-page.png")) {
  fail(`${screenshot} exists and is not the page's screenshot docs/web-page.png: pass a new path`);
}

for (const [path, fix] of [
  [join(web, "pkg", "unroll_web_bg.wasm"), "run web/build.sh"],
  [unroll, "run cargo build --release"],
  [chromiumPath, "install Chromium (apt-get install chromium) or set CHROMIUM"],
]) {
  if (!existsSync(path)) fail(`${path} is missing: ${fix}`);
}

const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
const server = createServer((req, res) => {
  const path = join(web, decodeURIComponent(new URL(req.url, "http://x").pathname));
  const file = path.endsWith("/") ? join(path, "index.html") : path;
  if (!file.startsWith(web) || !existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": types[extname(file)] || "application/octet-stream" });
  res.end(readFileSync(file));
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://localhost:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: [
    "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
    "--use-webgpu-adapter=swiftshader", "--no-sandbox", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
  ],
});
const out = mkdtempSync(join(tmpdir(), "unroll-web-"));
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 }, acceptDownloads: true });
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && problems.push(`console error: ${m.text()}`));
  page.setDefaultTimeout(60_000);
  await page.goto(url);

  // Waits for a condition on the page, printing its progress now and then for the log.
  async function until(what, condition, arg) {
    const started = Date.now();
    let reported = started;
    for (;;) {
      const [done, progress] = await page.evaluate(condition, arg);
      if (done) return;
      if (Date.now() - started > LIMIT_MS) fail(`${what}: not done after ${LIMIT_MS / 1000} s (${progress})`);
      if (Date.now() - reported > 20_000) {
        console.log(`  ${what}: ${progress}`);
        reported = Date.now();
      }
      await new Promise((ok) => setTimeout(ok, 250));
    }
  }
  await until("the page starting", () => [window.unroll && (window.unroll.ready || window.unroll.error), ""]);
  const error = await page.evaluate(() => window.unroll.error);
  if (error) fail(`the page did not start: ${error}`);

  // A small model, so that the software GPU takes seconds per dozen steps.
  for (const [id, value] of [["cell", "lstm"], ["layers", "2"], ["hidden", "32"], ["batch", "16"], ["steps", "16"]]) {
    if (id === "cell") await page.selectOption(`#${id}`, value);
    else await page.fill(`#${id}`, value);
  }
  await page.click("#start");
  const stepsDone = (n) => [window.unroll.steps >= n || window.unroll.error,
    `step ${window.unroll.steps}, status: ${document.querySelector("#status").textContent}`];
  const stopped = () => [!window.unroll.training && !document.querySelector("#resume").disabled,
    document.querySelector("#status").textContent];
  const failed = async (what) => {
    const error = await page.evaluate(() => window.unroll.error);
    if (error) fail(`${what}: ${error}`);
  };
  await until("training", stepsDone, STEPS);
  await failed("training");
  await page.click("#stop");
  await until("stopping", stopped);
  const run = await page.evaluate(() => ({ ...window.unroll, session: undefined }));
  if (run.error) fail(`training failed: ${run.error}`);
  const first = run.losses[0][1];
  const last = run.losses[run.losses.length - 1][1];
  console.log(`trained ${run.steps} steps on ${run.device}: loss ${first.toFixed(4)} (step ${run.losses[0][0]}) -> ${last.toFixed(4)}; ${Math.round(run.tokensPerSecond)} tokens/s`);
  if (!(last < first)) fail(`the loss did not fall: ${run.losses.map((l) => l[1].toFixed(4)).join(", ")}`);

  // Stop and resume: training goes on from where it stopped.
  await page.click("#resume");
  await until("resumed training", stepsDone, run.steps + 20);
  await failed("resumed training");
  await page.click("#stop");
  await until("stopping", stopped);
  const resumed = await page.evaluate(() => [window.unroll.steps, window.unroll.tokensPerSecond]);
  if (resumed[0] < run.steps + 20) fail(`resuming did not train on (step ${resumed[0]})`);
  console.log(`resumed to step ${resumed[0]}: ${Math.round(resumed[1])} tokens/s over the last calls`);

  // The gradient check of every cell family: one tanh layer on the fused Elman step, GRU and
  // LSTM on the stacked step. Odd sizes: a vocabulary of 11 and H = 13 fill no vec4 exactly.
  // The LSTM's, last, stays on the page for the screenshot.
  for (const [cell, layers, hidden] of [["rnn", 1, 13], ["gru", 2, 13], ["lstm", 2, 32]]) {
    await page.selectOption("#cell", cell);
    await page.fill("#layers", String(layers));
    await page.fill("#hidden", String(hidden));
    await page.evaluate(() => { window.unroll.check = null; });
    await page.click("#check");
    await until(`the gradient check (${cell})`, () => [window.unroll.check || window.unroll.error,
      document.querySelector("#status").textContent]);
    const check = await page.evaluate(() => window.unroll.check);
    if (!check) fail(`the gradient check failed: ${await page.evaluate(() => window.unroll.error)}`);
    console.log(check.text);
    const wrong = check.rows.filter((r) => !r.pass).map((r) => r.name);
    if (!check.pass || wrong.length || check.rows.length < 8) {
      fail(`gradient check of ${cell}: ${check.rows.length} tensors, failed: ${wrong.join(", ") || "(none named)"}`);
    }
  }

  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
  const checkpoint = join(out, "model.safetensors");
  await download.saveAs(checkpoint);
  const sample = execFileSync(unroll,
    ["sample", "--checkpoint", checkpoint, "--len", "80", "--prime", "1"], { encoding: "utf8" });
  console.log(`native unroll sample read the page's checkpoint:\n${sample}`);
  if (sample.trim().length < 40) fail(`unroll sample printed too little: ${JSON.stringify(sample)}`);

  // The page loads the checkpoint back and samples from it.
  await page.setInputFiles("#load", checkpoint);
  await until("loading the checkpoint", () => {
    const text = document.querySelector("#status").textContent;
    return [text.startsWith("Loaded") || window.unroll.error, text];
  });
  await failed("loading the checkpoint");

  if (problems.length) fail(problems.join("\n"));
  if (screenshot) {
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot: ${screenshot}`);
  }
  console.log("browser test passed");
} finally {
  await browser.close();
  server.close();
  rmSync(out, { recursive: true, force: true });
}
