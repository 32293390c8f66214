// The runnable backend examples (examples/python, examples/node) against
// the real gateway: a page subscribed to a durable channel with the JS
// client receives every message they publish, at the positions they print.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  REPO_ROOT, TIMEOUT, assertNoPanic, clientScript, openGatewayPage, startStack, stopStack,
} from "./harness.mjs";

const CHANNEL = "durable.examples";
const COUNT = 20;

/** Runs an example with the given env; resolves with its stdout, or rejects with its output. */
function runExample(cmd, args, env) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, timeout: TIMEOUT }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")} failed (${err.code ?? err.signal}):\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

/** The positions an example printed, one "<n> offset=<o> epoch=<e>" line per message. */
function parsePositions(stdout) {
  return stdout.trim().split("\n").map((line) => {
    const m = /^(\d+) offset=(\d+) epoch=(\S+)$/.exec(line);
    assert.ok(m, `unexpected output line: ${line}`);
    return { n: Number(m[1]), offset: Number(m[2]), epoch: m[3] };
  });
}

describe("backend examples", () => {
  const stack = {};
  let redis, redcast, page;

  before(async () => {
    ({ redis, redcast, page } = await startStack(stack));
    await openGatewayPage(page, redcast.url, { client: true, script: clientScript(CHANNEL) });
    await page.waitForFunction((c) => window.rc.position(c) !== undefined, CHANNEL, { timeout: TIMEOUT });
  });

  after(() => stopStack(stack, "examples-redcast.log"));

  const env = () => ({ REDIS_URL: `redis://127.0.0.1:${redis.port}`, CHANNEL, COUNT: String(COUNT) });

  /** Runs one example and checks the page got its COUNT messages at the printed positions. */
  async function check(from, cmd, args) {
    const before = await page.evaluate(() => window.got.length);
    const printed = parsePositions(await runExample(cmd, args, env()));
    assert.deepEqual(printed.map((p) => p.n), Array.from({ length: COUNT }, (_, i) => i + 1));
    await page.waitForFunction((n) => window.got.length >= n, before + COUNT, { timeout: TIMEOUT });
    const got = (await page.evaluate(() => window.got)).slice(before);
    assert.equal(got.length, COUNT, "no more than published");
    got.forEach((m, i) => {
      assert.deepEqual(m.data, { n: i + 1, from });
      assert.equal(m.offset, printed[i].offset);
      assert.equal(m.epoch, printed[i].epoch);
      if (i > 0) assert.equal(m.offset, got[i - 1].offset + 1, "offsets increase by one");
    });
    return got;
  }

  test("python: examples/python/publish.py (redis-py)", async () => {
    await check("python", "python3", [path.join("examples", "python", "publish.py")]);
  });

  test("node: examples/node/publish.mjs (node-redis)", async () => {
    if (!existsSync(path.join(REPO_ROOT, "examples", "node", "node_modules", "redis"))) {
      throw new Error("examples/node has no node_modules: run `(cd examples/node && npm ci)`");
    }
    const got = await check("node", process.execPath, [path.join("examples", "node", "publish.mjs")]);
    // The channel's offsets go on from where the Python example left them.
    const all = await page.evaluate(() => window.got);
    if (all.length > COUNT) assert.equal(got[0].offset, all[all.length - COUNT - 1].offset + 1);
    assert.deepEqual(stack.browser.errors, []);
    assertNoPanic(redcast.child);
  });
});
