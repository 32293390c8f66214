// Publish COUNT messages to a durable redcast channel, the way a backend does.
//
// One command per message, atomic in Redis: FCALL redcast_publish 1
// <channel> <payload>. redcast loaded that Function; it stores the message in
// the channel's history, publishes it live and returns its position
// [offset, epoch]. On a channel without history it only publishes (null).
//
// Settings from the environment:
//   REDIS_URL  the Redis redcast uses (default redis://127.0.0.1:6379)
//   CHANNEL    the Redis channel, including redis.channel_prefix
//              (default durable.example)
//   COUNT      how many messages (default 10)
//
// Prints one line per message: "<n> offset=<offset> epoch=<epoch>".

import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "redis";

const url = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const channel = process.env.CHANNEL || "durable.example";
const count = Number(process.env.COUNT || "10");

/** FCALL redcast_publish; resolves to [offset, epoch], or null if not durable. */
async function publish(client, payload) {
  const call = () => client.fCall("redcast_publish", { keys: [channel], arguments: [payload] });
  try {
    return await call();
  } catch (err) {
    // A Redis restarted without persistence has lost the library until
    // redcast reconnects and loads it again (within about a second).
    if (!String(err?.message).includes("Function not found")) throw err;
    await sleep(1000);
    return call();
  }
}

const client = createClient({
  url,
  // A one-shot script gives up after a few attempts (the default retries forever).
  socket: { connectTimeout: 5000, reconnectStrategy: (retries) => (retries < 3 ? 250 * (retries + 1) : false) },
});
// Without a listener, a connection error would be an unhandled 'error' event;
// the failure itself is reported once, below.
client.on("error", () => {});
try {
  await client.connect();
  for (let n = 1; n <= count; n++) {
    const position = await publish(client, JSON.stringify({ n, from: "node" }));
    if (position === null) {
      console.log(`${n} live only: ${channel} has no history_size in redcast's rules`);
    } else {
      const [offset, epoch] = position;
      console.log(`${n} offset=${offset} epoch=${epoch}`);
    }
  }
} catch (err) {
  console.error(`publish to ${channel} via ${url} failed: ${err.message}`);
  process.exitCode = 1;
} finally {
  if (client.isOpen) await client.close();
}
