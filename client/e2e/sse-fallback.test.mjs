// Behind a proxy that refuses WebSocket upgrades, the demo page with
// ?transport=auto falls back to SSE and receives a published message.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  ARTIFACTS, assertNoPanic, cleanup, openBrowser, publish, startNoWebSocketProxy, startRedcast, startRedis, text,
  waitForMessage, waitForRedisSubscribers, waitForState,
} from "./harness.mjs";

describe("SSE fallback", () => {
  let redis, redcast, proxy, browser, page;

  before(async () => {
    redis = await startRedis();
    redcast = await startRedcast({ redisPort: redis.port });
    proxy = await startNoWebSocketProxy(redcast.port);
    browser = await openBrowser();
    page = browser.page;
  });

  after(async () => {
    redcast?.child.saveLog("sse-fallback-redcast.log");
    await cleanup(
      () => browser?.close(),
      () => proxy?.stop(),
      () => redcast?.stop(),
      () => redis?.stop(),
    );
  });

  test("auto transport falls back to SSE when upgrades are refused", async () => {
    await page.goto(`${proxy.url}/demo?transport=auto`);
    await page.locator('#transport[data-transport="sse"]').waitFor();
    await waitForState(page, "open");
    assert.equal(await text(page, "#transport"), "sse (fallback)");
    assert.ok(proxy.seen.upgrades >= 2, `WebSocket was tried first (${proxy.seen.upgrades} upgrades)`);
    assert.ok(proxy.seen.sse >= 1);

    const channels = ["demo.ticks", "demo.news", "demo.alerts"];
    await waitForRedisSubscribers(redis.port, channels);
    assert.equal(await publish(redis.port, "demo.news", { via: "server-sent events" }), 1);
    await waitForMessage(page, "demo.news", "server-sent events");
    assert.equal(await page.locator("#errors li").count(), 0);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, "demo-sse.png") });
    assert.deepEqual(browser.errors, []);
  });

  test("transport=sse goes straight to SSE", async () => {
    const upgrades = proxy.seen.upgrades;
    // A channel the previous page's stream did not hold: redcast subscribes
    // it in Redis only once this page's stream has joined, so the Redis
    // subscriber count below is a real sync point (the old stream may still
    // be winding down and holding the other channels).
    await page.goto(`${proxy.url}/demo?transport=sse&channel=demo.quotes`);
    await page.locator('#transport[data-transport="sse"]').waitFor();
    await waitForState(page, "open");
    assert.equal(await text(page, "#transport"), "sse");
    assert.equal(proxy.seen.upgrades, upgrades, "no WebSocket attempt with transport=sse");
    await waitForRedisSubscribers(redis.port, ["demo.quotes"]);
    assert.equal(await publish(redis.port, "demo.quotes", { price: 42.5 }), 1);
    await waitForMessage(page, "demo.quotes", "42.5");
  });

  // An SSE stream that ends within server.handshake_timeout (here: the
  // first page's EventSource, closed by the navigation above) once panicked
  // its connection task; the log must stay clean.
  test("redcast logged no panic", () => {
    assertNoPanic(redcast.child);
  });
});
