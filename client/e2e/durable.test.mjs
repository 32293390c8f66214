// Durable channels across a redcast restart, while a backend keeps
// publishing with FCALL redcast_publish: a page using the JS client, and a
// page with a plain EventSource resuming through the browser's own
// Last-Event-ID, each end with every message, in order, exactly once.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  TIMEOUT, assertNoPanic, cleanup, clientScript, openBrowser, openGatewayPage, startBackend,
  startRedcast, startRedis, waitUntil,
} from "./harness.mjs";

/** Messages the backend publishes in each test (one every 10 ms or so). */
const COUNT = 300;

/** Asserts `got` is exactly the backend's messages 1..COUNT at their positions. */
function assertComplete(got, published) {
  assert.equal(published.length, COUNT);
  const ns = got.map((m) => m.data.n);
  const missing = [];
  for (let n = 1; n <= COUNT; n++) if (!ns.includes(n)) missing.push(n);
  assert.deepEqual(missing, [], "no message is missing");
  assert.deepEqual(ns, Array.from({ length: COUNT }, (_, i) => i + 1), "in order, each exactly once");
  got.forEach((m, i) => {
    assert.equal(m.offset, published[i].offset, `message ${i + 1} carries the offset FCALL returned`);
    assert.equal(m.epoch, published[i].epoch);
  });
}

describe("durable channels across a redcast restart", () => {
  let redis, redcast, browser;
  const logs = [];

  before(async () => {
    redis = await startRedis();
    redcast = await startRedcast({ redisPort: redis.port });
    logs.push(redcast.child);
    browser = await openBrowser();
  });

  after(async () => {
    logs.forEach((child, i) => child.saveLog(`durable-redcast-${i + 1}.log`));
    await cleanup(
      () => browser?.close(),
      () => redcast?.stop(),
      () => redis?.stop(),
    );
  });

  /**
   * Kills redcast once the page has `seen()` some messages, lets the backend
   * publish more while it is down, and starts it again on the same ports.
   */
  async function restartMidStream(backend, seen, gone) {
    await waitUntil(async () => (await seen()) >= 30, "the page to receive 30 messages");
    const { port, adminPort } = redcast;
    await redcast.stop(); // SIGKILL: the browser sees the connection drop
    await gone();
    const atKill = backend.published.length;
    await waitUntil(() => backend.published.length >= Math.min(COUNT, atKill + 30), "30 publishes while redcast is down");
    redcast = await startRedcast({ redisPort: redis.port, port, adminPort });
    logs.push(redcast.child);
    return backend.published.length - atKill;
  }

  test("the JS client keeps every message: it resumes from its position after the restart", async () => {
    const channel = "durable.client";
    const page = browser.page;
    await openGatewayPage(page, redcast.url, { client: true, script: clientScript(channel) });
    // The ack's position is what the client resumes from, even before any message.
    await page.waitForFunction((c) => window.rc.position(c) !== undefined, channel, { timeout: TIMEOUT });

    const backend = startBackend(redis.port, channel, { count: COUNT });
    const whileDown = await restartMidStream(
      backend,
      () => page.evaluate(() => window.got.length),
      () => page.waitForFunction(() => window.rc.state === "reconnecting", null, { timeout: TIMEOUT }),
    );
    const published = await backend.done;
    await page.waitForFunction((n) => window.got.length >= n, COUNT, { timeout: TIMEOUT });

    assert.ok(whileDown >= 30, `${whileDown} messages were published while redcast was down`);
    assertComplete(await page.evaluate(() => window.got), published);
    assert.deepEqual(await page.evaluate(() => window.recoveries), [{ channel, recovered: true }]);
    assert.deepEqual(await page.evaluate(() => window.rc.position("durable.client")), published.at(-1));
    assert.deepEqual(browser.errors, []);
    assertNoPanic(redcast.child);
  });

  test("a plain EventSource page resumes through the browser's Last-Event-ID", async () => {
    const channel = "durable.sse";
    const page = await browser.context.newPage();
    const errors = [];
    page.on("pageerror", (err) => errors.push(err.message));
    // Nothing of the JS client here: the browser's own EventSource retries
    // (after the server's `retry:` hint) and sends Last-Event-ID itself.
    await openGatewayPage(page, redcast.url, { script: `
  window.got = [];
  window.acks = [];
  window.es = new EventSource("/sse?channel=${channel}");
  es.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "message") got.push({ data: m.data, offset: m.offset, epoch: m.epoch, id: ev.lastEventId });
    else if (m.type === "subscribed") acks.push({ recovered: m.recovered, positions: m.positions, id: ev.lastEventId });
  };
` });
    await page.waitForFunction(() => window.acks.length === 1 && window.acks[0].id !== "", null, { timeout: TIMEOUT });

    const backend = startBackend(redis.port, channel, { count: COUNT });
    const whileDown = await restartMidStream(
      backend,
      () => page.evaluate(() => window.got.length),
      () => page.waitForFunction(() => window.es.readyState === EventSource.CONNECTING, null, { timeout: TIMEOUT }),
    );
    const published = await backend.done;
    // The browser retries after the `retry:` hint (3 s), within TIMEOUT.
    await page.waitForFunction((n) => window.got.length >= n, COUNT, { timeout: TIMEOUT });

    assert.ok(whileDown >= 30, `${whileDown} messages were published while redcast was down`);
    const got = await page.evaluate(() => window.got);
    assertComplete(got, published);
    const acks = await page.evaluate(() => window.acks);
    assert.equal(acks.length, 2, "one ack per stream");
    assert.deepEqual(acks[1].recovered, { [channel]: true });
    // Each id names the channel's position, so the browser resumes from it.
    const last = got.at(-1);
    assert.equal(new URLSearchParams(last.id).get(channel), `${last.offset}:${last.epoch}`);
    assert.equal(await page.evaluate(() => window.es.readyState), 1, "the same EventSource is open again");
    assert.deepEqual(errors, []);
    assertNoPanic(redcast.child);
    await page.close();
  });
});
