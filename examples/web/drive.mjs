// node drive.mjs URL OUT.json [--screenshot PNG] [--pick FILE ...] [--stop-at ITERATION] [--stop-after SECONDS]
//                [--timeout SECONDS] [--chromium PATH] [--kit]
//
// Opens URL (the page served by `python -m gs_onnx serve-demo`) in headless Chromium (the system's: CHROMIUM or
// --chromium, default /usr/bin/chromium) through puppeteer-core, optionally picks FILEs in the page's file input
// (and clicks Stop once the page reports an iteration >= ITERATION, or SECONDS after the recovery started),
// waits until the page reports done, refused or error, and writes OUT.json: the page's state and message, its
// result (the recovered image as base64 float32), the kept trace (every array as base64), whether the page was
// cross-origin isolated and what WebGPU offered. --screenshot saves the page. --kit: the served folder is a
// conformance kit (examples/conformance/make_kit.py); the page's own reader (folder.mjs on rules.mjs) reads every
// folder of its kit.json in the browser, and OUT.json lists { folder, outcome: 'read' | 'refuse', rule, message }
// (open the page with ?folder= so that it loads nothing itself). Exit 0 when the page finished (whatever its
// state), 2 when the browser could not be driven.
import fs from 'node:fs';
import puppeteer from 'puppeteer-core';

function args(argv) {
  const o = { pick: [], timeout: 600, chromium: process.env.CHROMIUM || '/usr/bin/chromium' };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--screenshot') o.screenshot = argv[++i];
    else if (a === '--timeout') o.timeout = Number(argv[++i]);
    else if (a === '--chromium') o.chromium = argv[++i];
    else if (a === '--stop-at') o.stopAt = Number(argv[++i]);
    else if (a === '--stop-after') o.stopAfter = Number(argv[++i]);
    else if (a === '--kit') o.kit = true;
    else if (a === '--pick') { while (i + 1 < argv.length && !argv[i + 1].startsWith('--')) o.pick.push(argv[++i]); }
    else rest.push(a);
  }
  [o.url, o.out] = rest;
  return o;
}

async function main() {
  const o = args(process.argv.slice(2));
  if (!o.url || !o.out) throw new Error('usage: node drive.mjs URL OUT.json [--screenshot PNG] [--pick FILE ...]');
  const browser = await puppeteer.launch({
    executablePath: o.chromium, headless: true, protocolTimeout: (o.timeout + 60) * 1000,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--enable-unsafe-webgpu'],
  });
  const logs = [];
  try {
    const page = await browser.newPage();
    page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    await page.setViewport({ width: 1000, height: 900 });
    await page.goto(o.url, { waitUntil: 'load' });
    if (o.kit) {
      await page.waitForFunction(() => window.gs, { timeout: 60000, polling: 200 });
      const results = await page.evaluate(async () => {
        const { readFolder, urlSource } = await import(new URL('./folder.mjs', location.href).href);
        const kit = await (await fetch('folder/kit.json')).json();
        const out = [];
        for (const e of kit.folders) {
          try {
            await readFolder(urlSource(`folder/${e.folder}`, 2 ** 31));
            out.push({ folder: e.folder, outcome: 'read' });
          } catch (err) {
            const m = /\(rule (\d+)\)$/.exec(err.message);
            out.push({ folder: e.folder, outcome: 'refuse', rule: m ? Number(m[1]) : null, message: err.message,
                       error: err.constructor.name });
          }
        }
        return out;
      });
      fs.writeFileSync(o.out, JSON.stringify({ kit: results, console: logs }));
      console.log(`read ${results.length} folders of the kit`);
      return;
    }
    if (o.pick.length) {
      await page.waitForFunction(() => window.gs && document.getElementById('message').textContent.startsWith('Pick'),
                                 { timeout: 60000, polling: 200 });
      const input = await page.$('#pick');
      await input.uploadFile(...o.pick);
    }
    if (o.stopAt) {
      await page.waitForFunction((n) => window.gs && (['done', 'refused', 'error'].includes(window.gs.state) ||
        Number((document.getElementById('s-iter').textContent.match(/^(\d+) of/) || [0, 0])[1]) >= n),
      { timeout: o.timeout * 1000, polling: 50 }, o.stopAt);
      await page.click('#stop');
    }
    if (o.stopAfter) {
      await page.waitForFunction(() => window.gs && ['running', 'done', 'refused', 'error'].includes(window.gs.state),
                                 { timeout: o.timeout * 1000, polling: 50 });
      await new Promise((r) => setTimeout(r, o.stopAfter * 1000));
      await page.click('#stop');
    }
    await page.waitForFunction(() => window.gs && ['done', 'refused', 'error'].includes(window.gs.state),
                               { timeout: o.timeout * 1000, polling: 200 });
    const report = await page.evaluate(() => {
      const b64 = (t) => {
        const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
        let s = '';
        for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        return { dtype: t.dtype || t.type, dims: Array.from(t.dims), b64: btoa(s) };
      };
      const gs = window.gs;
      const res = gs.result && { ...gs.result, image: b64({ data: gs.result.image, dtype: 'float32', dims: gs.result.dims }) };
      const trace = {};
      for (const [j, t] of Object.entries(gs.trace)) {
        trace[j] = { start: t.start, chunk: t.chunk, image: b64(t.image),
                     state: Object.fromEntries(Object.entries(t.state).map(([k, v]) => [k, b64(v)])),
                     next: Object.fromEntries(Object.entries(t.next).map(([k, v]) => [k, b64(v)])) };
      }
      return { state: gs.state, message: gs.message, result: res, trace, isolated: gs.isolated, webgpu: gs.webgpu,
               ep: gs.ep, device: gs.device ?? null,
               longestPauseMs: gs.longestPauseMs,
               psnrShown: document.getElementById('s-psnr').textContent,
               userAgent: navigator.userAgent, cores: navigator.hardwareConcurrency };
    });
    report.console = logs;
    if (o.screenshot) await page.screenshot({ path: o.screenshot, fullPage: true });
    fs.writeFileSync(o.out, JSON.stringify(report));
    console.log(`${report.state}: ${report.message}`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(`error: ${e.message}`); process.exit(2); });
