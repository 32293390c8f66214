// Shared plumbing for the end-to-end tests: a private redis-server, the
// real redcast binary, Debian's headless Chromium through playwright-core,
// and a raw RESP client for publishing. Every wait is bounded and waits on
// a condition (a log line, an HTTP status, a DOM state), never on a sleep.
//
// This file is not a test file: `node --test client/e2e/` only runs files
// named *.test.mjs (and the like).

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const ARTIFACTS = path.join(REPO_ROOT, "artifacts");
/** Upper bound of every wait in these tests. */
export const TIMEOUT = 15_000;

export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** The rules every test runs redcast with; `durable.*` channels keep history. */
export const RULES =
  '[{pattern = "demo.*", subscribe = "anyone"}, {pattern = "secret.*", subscribe = "nobody"}, ' +
  '{pattern = "durable.*", subscribe = "anyone", history_size = 1000, history_ttl = "10m"}]';

/** Path of the redcast binary: $REDCAST_BIN, default target/release/redcast. */
export function redcastBin() {
  const bin = path.resolve(REPO_ROOT, process.env.REDCAST_BIN || "target/release/redcast");
  if (!existsSync(bin)) {
    throw new Error(
      `redcast binary not found at ${bin}: build it with \`cargo build --release\` ` +
        "or point REDCAST_BIN at one",
    );
  }
  return bin;
}

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Rejects after `ms` with a message naming what was awaited. */
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A child process with its output kept (bounded) for diagnostics, and a
 * kill() that resolves once the process is gone.
 */
class Child {
  constructor(name, cmd, args, opts = {}) {
    this.name = name;
    this.output = "";
    this.proc = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
    this.exited = new Promise((resolve) => {
      this.proc.once("exit", (code, signal) => resolve({ code, signal }));
      this.proc.once("error", (err) => {
        this.output += `\n[spawn error] ${err.message}\n`;
        resolve({ code: null, signal: null, error: err });
      });
    });
    this.done = false;
    this.exited.then(() => { this.done = true; });
    const keep = (chunk) => {
      this.output += chunk.toString();
      if (this.output.length > 256 * 1024) this.output = this.output.slice(-128 * 1024);
      for (const fn of this.watchers) fn(this.output);
    };
    this.watchers = new Set();
    this.proc.stdout.on("data", keep);
    this.proc.stderr.on("data", keep);
    live.add(this);
  }

  /** Resolves once the output contains `text`; rejects if the process exits first. */
  waitForOutput(text, ms = TIMEOUT) {
    return withTimeout(
      new Promise((resolve, reject) => {
        if (this.output.includes(text)) return resolve();
        const fn = (out) => {
          if (out.includes(text)) { this.watchers.delete(fn); resolve(); }
        };
        this.watchers.add(fn);
        this.exited.then(({ code, signal }) => {
          this.watchers.delete(fn);
          reject(new Error(`${this.name} exited (code ${code}, signal ${signal}) before printing "${text}":\n${this.output}`));
        });
      }),
      ms,
      `${this.name} to print "${text}"`,
    );
  }

  async kill(signal = "SIGKILL") {
    if (!this.done) {
      try { this.proc.kill(signal); } catch { /* already gone */ }
    }
    await withTimeout(this.exited, TIMEOUT, `${this.name} to exit`);
    live.delete(this);
  }

  /** Writes the output to artifacts/e2e-logs/<file>. */
  saveLog(file) {
    const dir = path.join(ARTIFACTS, "e2e-logs");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, file), this.output);
  }
}

// Anything still running when the test process exits is killed, so a
// crashed test cannot leave servers behind.
const live = new Set();
process.on("exit", () => {
  for (const c of live) {
    try { c.proc.kill("SIGKILL"); } catch { /* gone */ }
  }
});

/** A private redis-server on a free loopback port, ready for commands. */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "redcast-e2e-redis-"));
  const child = new Child("redis-server", "redis-server", [
    "--port", String(port),
    "--bind", "127.0.0.1",
    "--save", "",
    "--appendonly", "no",
    "--dir", dir,
    "--logfile", "",
    "--daemonize", "no",
  ]);
  await child.waitForOutput("Ready to accept connections");
  return {
    port,
    child,
    async stop() {
      await child.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `GET url` until it answers `status`, or the process dies, or time runs out. */
async function waitForStatus(url, status, child, ms = TIMEOUT) {
  const deadline = Date.now() + ms;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (child.done) throw new Error(`${child.name} exited while waiting for ${url}:\n${child.output}`);
    try {
      const got = await new Promise((resolve, reject) => {
        const req = http.get(url, (res) => { res.resume(); resolve(res.statusCode); });
        req.setTimeout(1000, () => req.destroy(new Error("request timeout")));
        req.on("error", reject);
      });
      if (got === status) return;
      last = `status ${got}`;
    } catch (err) {
      last = err.message;
    }
    await new Promise((r) => setTimeout(r, 50)); // poll interval of a bounded condition wait
  }
  throw new Error(`timed out after ${ms} ms waiting for ${url} to answer ${status} (last: ${last}):\n${child.output}`);
}

/**
 * The real redcast binary with the demo on, on free ports (or the given
 * ones), ready once the admin listener's /readyz answers 200.
 */
export async function startRedcast({ redisPort, port, adminPort, env = {} }) {
  const bin = redcastBin();
  port = port || (await freePort());
  adminPort = adminPort || (await freePort());
  const child = new Child("redcast", bin, [
    "--demo",
    "--listen", `127.0.0.1:${port}`,
    "--admin-listen", `127.0.0.1:${adminPort}`,
    "--redis-url", `redis://127.0.0.1:${redisPort}`,
  ], {
    env: {
      ...process.env,
      REDCAST_CHANNELS__RULES: RULES,
      RUST_BACKTRACE: "1",
      ...env,
    },
  });
  await waitForStatus(`http://127.0.0.1:${adminPort}/readyz`, 200, child);
  return {
    port,
    adminPort,
    child,
    url: `http://127.0.0.1:${port}`,
    stop: () => child.kill(),
  };
}

// ---- Redis commands over a raw RESP socket ---------------------------------

function encodeCommand(args) {
  let out = `*${args.length}\r\n`;
  for (const a of args) {
    const b = Buffer.from(String(a));
    out += `$${b.length}\r\n${b}\r\n`;
  }
  return out;
}

/** Parses one RESP reply at `buf[i..]`; returns [value, next] or null when incomplete. */
function parseReply(buf, i = 0) {
  const eol = buf.indexOf("\r\n", i);
  if (eol < 0) return null;
  const type = String.fromCharCode(buf[i]);
  const line = buf.toString("utf8", i + 1, eol);
  const next = eol + 2;
  switch (type) {
    case "+": return [line, next];
    case "-": return [new Error(line), next];
    case ":": return [Number(line), next];
    case "$": {
      const len = Number(line);
      if (len < 0) return [null, next];
      if (buf.length < next + len + 2) return null;
      return [buf.toString("utf8", next, next + len), next + len + 2];
    }
    case "*": {
      const n = Number(line);
      const items = [];
      let at = next;
      for (let k = 0; k < n; k++) {
        const r = parseReply(buf, at);
        if (!r) return null;
        items.push(r[0]);
        at = r[1];
      }
      return [items, at];
    }
    default: throw new Error(`unexpected RESP reply: ${line}`);
  }
}

/** Sends one command to Redis on `port` and resolves with its reply. */
export function redisCommand(port, ...args) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const sock = net.connect(port, "127.0.0.1");
      let buf = Buffer.alloc(0);
      sock.on("connect", () => sock.write(encodeCommand(args)));
      sock.on("data", (d) => {
        buf = Buffer.concat([buf, d]);
        const r = parseReply(buf);
        if (!r) return;
        sock.end();
        if (r[0] instanceof Error) reject(r[0]);
        else resolve(r[0]);
      });
      sock.on("error", reject);
    }),
    TIMEOUT,
    `redis ${args[0]}`,
  );
}

/** PUBLISH; resolves with the number of Redis subscribers that got it. */
export function publish(port, channel, payload) {
  const data = typeof payload === "string" ? payload : JSON.stringify(payload);
  return redisCommand(port, "PUBLISH", channel, data);
}

/**
 * `FCALL redcast_publish 1 <channel> <payload>`, as a backend publishes to a
 * durable channel: resolves with `{offset, epoch}` (null on a channel
 * without history). "Function not found" means redcast has not loaded its
 * library into this Redis yet: that is waited for, within TIMEOUT.
 */
export async function durablePublish(port, channel, payload) {
  const data = typeof payload === "string" ? payload : JSON.stringify(payload);
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    try {
      const reply = await redisCommand(port, "FCALL", "redcast_publish", 1, channel, data);
      return reply === null ? null : { offset: reply[0], epoch: reply[1] };
    } catch (err) {
      if (!/Function not found/i.test(err.message) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50)); // poll interval of a bounded condition wait
    }
  }
}

/**
 * A backend publishing `{n}` for n = 1..count to a durable channel, one
 * FCALL after another, at most one every `everyMs` (a rate, so that the
 * publishing spans a restart; nothing waits on it). `published` holds the
 * positions so far; `done` resolves with all of them, or rejects on the
 * first failed publish.
 */
export function startBackend(port, channel, { count, everyMs = 10 }) {
  const published = [];
  const done = (async () => {
    for (let n = 1; n <= count; n++) {
      const started = Date.now();
      const pos = await durablePublish(port, channel, { n });
      if (!pos) throw new Error(`${channel} is not durable: FCALL returned nil`);
      published.push(pos);
      const rest = everyMs - (Date.now() - started);
      if (rest > 0) await new Promise((r) => setTimeout(r, rest));
    }
    return published;
  })();
  done.catch(() => {}); // observed by the test through `done`
  return { published, done };
}

/**
 * Waits until `cond()` is true, polling every 20 ms, for at most `ms`:
 * for conditions outside the browser (the page has waitForFunction).
 */
export async function waitUntil(cond, what, ms = TIMEOUT) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20)); // poll interval of a bounded condition wait
  }
}

/**
 * Waits until redcast holds a Redis subscription on every channel, so a
 * message published next reaches it. redcast adds a connection to its hub
 * before it asks Redis, so when no other connection held the channel, the
 * page's connection gets the message too. (A channel that another
 * connection still holds is no such sync point.)
 */
export async function waitForRedisSubscribers(port, channels, ms = TIMEOUT) {
  const deadline = Date.now() + ms;
  let counts = [];
  while (Date.now() < deadline) {
    const reply = await redisCommand(port, "PUBSUB", "NUMSUB", ...channels);
    counts = [];
    for (let k = 1; k < reply.length; k += 2) counts.push(reply[k]);
    if (counts.every((n) => n > 0)) return;
    await new Promise((r) => setTimeout(r, 50)); // poll interval of a bounded condition wait
  }
  throw new Error(`timed out waiting for Redis subscribers on ${channels.join(", ")} (counts ${counts.join(", ")})`);
}

// ---- the browser ---------------------------------------------------------------

/**
 * Debian's Chromium, headless, with a fresh profile. Page errors and
 * console errors are collected on `errors` so tests can assert none.
 */
export async function openBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install chromium)`);
  }
  const profile = mkdtempSync(path.join(os.tmpdir(), "redcast-e2e-chromium-"));
  // launchPersistentContext is Playwright's way of passing --user-data-dir.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
    timeout: TIMEOUT,
  });
  context.setDefaultTimeout(TIMEOUT);
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  return {
    context,
    page,
    errors,
    async close() {
      await withTimeout(context.close(), TIMEOUT, "chromium to close").catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Runs a test `script` in a page of the gateway's own origin, so that its
 * Origin check passes and `/redcast.js`, `/ws` and `/sse` are redcast's own.
 * The document is a real answer of the gateway (its `/redcast.js`, shown
 * as text): Chromium's Local Network Access checks block a page that
 * Playwright made up itself from reaching 127.0.0.1. With `client`, the
 * JS client is loaded first, from the gateway.
 */
export async function openGatewayPage(page, origin, { client = false, script }) {
  await page.goto(`${origin}/redcast.js`);
  if (client) await page.addScriptTag({ url: `${origin}/redcast.js` });
  await page.addScriptTag({ content: script });
}

/**
 * A script that subscribes to `channel` with the JS client (`window.rc`),
 * recording each message with its position in `window.got`, and the
 * `recovery` events and states it sees.
 */
export function clientScript(channel) {
  return `
  window.got = [];
  window.recoveries = [];
  window.states = [];
  window.rc = new Redcast(location.origin, { backoff: { initial: 100, max: 1000 } });
  rc.on("state", (s) => states.push(s));
  rc.on("recovery", (r) => recoveries.push(r));
  rc.subscribe(${JSON.stringify(channel)}, (data, channel, pos) => got.push({ data, offset: pos && pos.offset, epoch: pos && pos.epoch }));
`;
}

/** The text of the page's header field `id` (state, transport, reconnects, ...). */
export function text(page, selector) {
  return page.locator(selector).textContent();
}

/** Waits until the connection box shows `state`. */
export function waitForState(page, state) {
  return page.locator(`#state-box[data-state="${state}"]`).waitFor({ timeout: TIMEOUT });
}

/** Waits until a message on `channel` whose data contains `needle` is listed. */
export function waitForMessage(page, channel, needle) {
  return page
    .locator(`#messages li[data-channel="${channel}"]`, { hasText: needle })
    .first()
    .waitFor({ timeout: TIMEOUT });
}

// ---- a proxy that refuses WebSocket upgrades -------------------------------

/**
 * An HTTP proxy in front of redcast that answers every upgrade with 403,
 * and forwards (streaming) GET /demo, /redcast.js and /sse. Host and the
 * other headers pass through unchanged, so redcast's same-origin check
 * sees the page's own origin.
 */
export async function startNoWebSocketProxy(target) {
  const port = await freePort();
  const seen = { upgrades: 0, sse: 0, paths: [] };
  const allowed = new Set(["/demo", "/redcast.js", "/sse"]);
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, "http://x").pathname;
    seen.paths.push(p);
    if (!allowed.has(p)) {
      res.writeHead(404, { "content-type": "text/plain" });
      return res.end("not proxied\n");
    }
    if (p === "/sse") seen.sse++;
    const up = http.request(
      { host: "127.0.0.1", port: target, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        res.writeHead(upRes.statusCode, upRes.headers);
        res.flushHeaders();
        upRes.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    // The browser left (EventSource closed): drop the upstream stream too.
    res.on("close", () => up.destroy());
    req.pipe(up);
  });
  server.on("upgrade", (req, socket) => {
    seen.upgrades++;
    const body = "no websockets here\n";
    socket.end(
      "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n" +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  server.on("connection", (s) => { sockets.add(s); s.on("close", () => sockets.delete(s)); });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    seen,
    stop: () => new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

/** Fails if the process printed a Rust panic. */
export function assertNoPanic(child) {
  const at = child.output.indexOf("panicked at");
  if (at >= 0) {
    throw new Error(`${child.name} panicked:\n${child.output.slice(Math.max(0, at - 200), at + 1500)}`);
  }
}

/** Runs every cleanup, even when some fail, then reports the first failure. */
export async function cleanup(...steps) {
  let first;
  for (const step of steps) {
    if (!step) continue;
    try { await step(); } catch (err) { first = first || err; }
  }
  if (first) throw first;
}

/**
 * Starts Redis, redcast and a browser page into `stack` (filled as it goes,
 * so that stopStack can tear down whatever did start).
 */
export async function startStack(stack) {
  stack.redis = await startRedis();
  stack.redcast = await startRedcast({ redisPort: stack.redis.port });
  stack.browser = await openBrowser();
  stack.page = stack.browser.page;
  return stack;
}

/** Saves redcast's log as `logName` and stops everything startStack started. */
export async function stopStack(stack, logName) {
  if (logName) stack.redcast?.child.saveLog(logName);
  await cleanup(
    () => stack.browser?.close(),
    () => stack.redcast?.stop(),
    () => stack.redis?.stop(),
  );
}
