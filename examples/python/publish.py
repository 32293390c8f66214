#!/usr/bin/env python3
"""Publish COUNT messages to a durable redcast channel, the way a backend does.

One command per message, atomic in Redis: FCALL redcast_publish 1 <channel>
<payload>. redcast loaded that Function; it stores the message in the
channel's history, publishes it live and returns its position
[offset, epoch]. On a channel without history it only publishes (nil).

Settings from the environment:
  REDIS_URL  the Redis redcast uses (default redis://127.0.0.1:6379)
  CHANNEL    the Redis channel, including redis.channel_prefix
             (default durable.example)
  COUNT      how many messages (default 10)

Prints one line per message: "<n> offset=<offset> epoch=<epoch>".
"""

import json
import os
import sys
import time

import redis


def publish(client, channel, payload):
    """FCALL redcast_publish; returns [offset, epoch], or None if not durable."""
    try:
        return client.fcall("redcast_publish", 1, channel, payload)
    except redis.exceptions.ResponseError as err:
        # A Redis restarted without persistence has lost the library until
        # redcast reconnects and loads it again (within about a second).
        if "Function not found" not in str(err):
            raise
        time.sleep(1.0)
        return client.fcall("redcast_publish", 1, channel, payload)


def main():
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    channel = os.environ.get("CHANNEL", "durable.example")
    count = int(os.environ.get("COUNT", "10"))
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        for n in range(1, count + 1):
            payload = json.dumps({"n": n, "from": "python"})
            position = publish(client, channel, payload)
            if position is None:
                print(f"{n} live only: {channel} has no history_size in redcast's rules")
            else:
                offset, epoch = position
                print(f"{n} offset={offset} epoch={epoch}", flush=True)
    except redis.exceptions.RedisError as err:
        sys.exit(f"publish to {channel} via {url} failed: {err}")
    finally:
        client.close()


if __name__ == "__main__":
    main()
