// The demo page against the real redcast and Redis: a published message
// shows up, and a screenshot with messages and the rate chart is saved to
// artifacts/demo.png.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  ARTIFACTS, TIMEOUT, assertNoPanic, publish, startStack, stopStack, text,
  waitForMessage, waitForRedisSubscribers, waitForState,
} from "./harness.mjs";

const CHANNELS = ["demo.ticks", "demo.news", "demo.alerts"];

describe("demo page", () => {
  let redis, redcast, browser, page;

  const stack = {};

  before(async () => {
    ({ redis, redcast, browser, page } = await startStack(stack));
  });

  after(() => stopStack(stack, "demo-redcast.log"));

  test("subscribes to the default channels and shows a published message", async () => {
    await page.goto(`${redcast.url}/demo`);
    await waitForState(page, "open");
    assert.match(await text(page, "#transport"), /^websocket/);
    await waitForRedisSubscribers(redis.port, CHANNELS);

    const receivers = await publish(redis.port, "demo.news", { headline: "redcast e2e says hello" });
    assert.equal(receivers, 1, "redcast should be the one Redis subscriber");
    await waitForMessage(page, "demo.news", "redcast e2e says hello");

    assert.equal(await text(page, "#total"), "1");
    assert.equal(await page.locator("#messages li").count(), 1);
    assert.equal(await page.locator("#errors li").count(), 0);
    const status = await page.locator('#channels li[data-channel="demo.news"]').getAttribute("data-status");
    assert.equal(status, "subscribed");
    assert.deepEqual(browser.errors, []);
  });

  test("lists newest first and saves a screenshot with the chart", async () => {
    // Bursts of varying size spread over a few seconds, so the per-second
    // chart has bars of different heights.
    const bursts = [2, 5, 3, 8, 4, 6];
    let total = 0;
    for (const size of bursts) {
      for (let k = 0; k < size; k++, total++) {
        const i = total;
        const channel = CHANNELS[(i * 7 + k) % 3];
        const payload =
          channel === "demo.ticks" ? { symbol: "ACME", price: +(100 + Math.sin(i) * 3).toFixed(2), seq: i }
          : channel === "demo.news" ? { headline: `Market update #${i}`, source: "wire" }
          : `alert ${i}: latency above 250 ms`;
        assert.equal(await publish(redis.port, channel, payload), 1);
      }
      await new Promise((r) => setTimeout(r, 1000)); // pacing of the generated data, not a wait
    }
    // 1 message from the previous test plus these.
    await page.waitForFunction(
      (n) => document.getElementById("total").textContent === String(n),
      total + 1,
      { timeout: TIMEOUT },
    );
    const first = await page.locator("#messages li").first().textContent();
    assert.match(first, new RegExp(`(#|seq":|alert )${total - 1}\\b`), "the newest message is listed first");

    // The chart drew at least one bar: some non-background pixels in the plot.
    const painted = await page.evaluate(() => {
      const c = document.getElementById("chart");
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] > 60 || d[i + 1] > 120)) n++;
      return n;
    });
    assert.ok(painted > 100, `the chart should have drawn bars (painted pixels: ${painted})`);

    mkdirSync(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, "demo.png");
    await page.screenshot({ path: file, fullPage: true });
    assert.deepEqual(browser.errors, []);
    assertNoPanic(redcast.child);
  });
});
