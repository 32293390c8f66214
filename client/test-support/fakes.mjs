// In-memory stand-ins for WebSocket and EventSource: no network, and the test
// drives every server-side event explicitly.

export function makeFakeWebSocket() {
  class FakeWebSocket {
    static instances = [];
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      FakeWebSocket.instances.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
      this.sent.push(data);
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }

    // --- test drivers (the "server" side) ---
    static get last() { return FakeWebSocket.instances[FakeWebSocket.instances.length - 1]; }

    frames() { return this.sent.map((s) => JSON.parse(s)); }

    open() {
      this.readyState = 1;
      this.onopen?.({ type: "open" });
    }

    receive(obj) {
      this.onmessage?.({ data: typeof obj === "string" ? obj : JSON.stringify(obj) });
    }

    serverClose(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason, wasClean: true });
    }

    // What a browser does when the handshake fails: error, then close 1006.
    fail() {
      this.readyState = 3;
      this.onerror?.({ type: "error" });
      this.onclose?.({ code: 1006, reason: "", wasClean: false });
    }
  }
  return FakeWebSocket;
}

export function makeFakeEventSource() {
  class FakeEventSource {
    static instances = [];
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.closed = false;
      FakeEventSource.instances.push(this);
    }
    close() { this.closed = true; this.readyState = 2; }

    static get last() { return FakeEventSource.instances[FakeEventSource.instances.length - 1]; }
    channels() { return new URL(this.url).searchParams.getAll("channel"); }
    open() { this.readyState = 1; this.onopen?.({ type: "open" }); }
    receive(obj) { this.onmessage?.({ data: JSON.stringify(obj) }); }
    fail() { this.readyState = 2; this.onerror?.({ type: "error" }); }
  }
  return FakeEventSource;
}

/** Let queued microtasks (batched subscribe sync, getToken promises) run. */
export function flush() {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Deterministic "random" for jitter: always the given fraction. */
export const fixedRandom = (x) => () => x;
