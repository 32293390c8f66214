/*!
 * redcast browser client — fans Redis pub/sub out to the browser.
 *
 * This file is a classic script on purpose: a plain <script src="redcast.js">
 * defines `globalThis.Redcast`, and `redcast.mjs` re-exports that for ES-module
 * users. One source of truth, no build step. See README.md.
 */
(function (root) {
  "use strict";

  var SUBPROTOCOL = "redcast.v1";

  var DEFAULTS = {
    transport: "websocket",
    backoff: { initial: 500, max: 30000 },
    heartbeatInterval: 25000,
    heartbeatTimeout: 10000,
    requestTimeout: 10000,
    maxQueue: 100,
    autoConnect: true,
    fallbackAfter: 2,
  };

  // After a 4029 (rate limited) the next delay is drawn from at least
  // [0, initial * 2^3], even if the previous session was healthy: reconnecting
  // within half a second would just get us rate limited again.
  var THROTTLE_MIN_ATTEMPT = 3;

  // Server error codes for which retrying the same subscribe later can succeed.
  // (The server refuses a frame it had no budget for with rate_limited.)
  var TRANSIENT_CODES = { rate_limited: true };

  // Subscribe errors that reject only the channels they list: the server may
  // send several (invalid_channel, then forbidden) and then a `subscribed` ack
  // for the rest, all with the request's id.
  var PER_CHANNEL_CODES = { invalid_channel: true, forbidden: true };

  // Errors that refuse (part of) a resuming subscribe because of its `since`:
  // a position ahead of the channel, a channel no longer durable. The
  // positions concerned are forgotten, the channels stay subscribed (or are
  // subscribed again without them), and the app is told to refetch.
  var SINCE_CODES = { invalid_position: true, not_durable: true, invalid_field: true };

  // Close code the client uses when it abandons a socket that stopped answering.
  var HEARTBEAT_CLOSE_CODE = 4000;
  // Close code the client uses when a durable channel skipped offsets: the
  // gateway fills gaps in live delivery from the history itself, so one that
  // reaches the client could not be filled there; reconnecting resumes from
  // the last delivered position, and the server replays or says it cannot.
  var GAP_CLOSE_CODE = 4010;

  var WS_OPEN = 1;

  // ---------------------------------------------------------------------------
  // Pure helpers (exposed as static members so they can be unit-tested alone).
  // ---------------------------------------------------------------------------

  /**
   * Full-jitter exponential backoff: random(0, min(max, initial * 2^attempt)).
   * Full jitter (instead of "base + small jitter") spreads a thundering herd of
   * clients reconnecting after a server restart over the whole window.
   */
  function backoffDelay(attempt, opts, random) {
    var initial = opts && opts.initial != null ? opts.initial : DEFAULTS.backoff.initial;
    var max = opts && opts.max != null ? opts.max : DEFAULTS.backoff.max;
    // Clamp the exponent so 2^attempt never overflows to Infinity/NaN math.
    var n = Math.max(0, Math.min(Math.floor(attempt) || 0, 30));
    var cap = Math.min(max, initial * Math.pow(2, n));
    return Math.floor((random || Math.random)() * cap);
  }

  /** Derive the /ws and /sse endpoints from a ws(s):// or http(s):// base URL. */
  function endpoints(url, base) {
    var u = new URL(String(url), base);
    if (!/^(wss?|https?):$/.test(u.protocol)) {
      throw new TypeError("redcast: unsupported URL scheme " + u.protocol);
    }
    var secure = u.protocol === "wss:" || u.protocol === "https:";
    // Accept ".../ws" or ".../sse" too, so either endpoint can be pasted in.
    var path = u.pathname.replace(/\/+$/, "").replace(/\/(ws|sse)$/, "");
    return {
      ws: (secure ? "wss://" : "ws://") + u.host + path + "/ws" + u.search,
      sse: (secure ? "https://" : "http://") + u.host + path + "/sse" + u.search,
    };
  }

  /** Append query parameters (array of [key, value]) to an absolute URL. */
  function withParams(url, params) {
    var u = new URL(url);
    params.forEach(function (kv) { u.searchParams.append(kv[0], kv[1]); });
    return u.toString();
  }

  /** What must be sent so the server's set of channels matches `desired`. */
  function diffChannels(desired, current) {
    var subscribe = [];
    var unsubscribe = [];
    desired.forEach(function (c) { if (!current.has(c)) subscribe.push(c); });
    current.forEach(function (c) { if (!desired.has(c)) unsubscribe.push(c); });
    return { subscribe: subscribe, unsubscribe: unsubscribe };
  }

  /**
   * Reaction to a close code: "refresh" (needs a fresh token from getToken,
   * otherwise give up), "throttle" (reconnect, but with a longer minimum
   * backoff) or "reconnect". User-initiated close() never gets here.
   */
  function closePolicy(code) {
    if (code === 1008 || code === 4003) return "refresh";
    if (code === 4029) return "throttle";
    return "reconnect";
  }

  // RFC 7230 "token" characters. Anything else in Sec-WebSocket-Protocol makes
  // the browser's WebSocket constructor throw, so such tokens go in the query.
  var HTTP_TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  function isSubprotocolSafe(token) {
    return HTTP_TOKEN_RE.test(token);
  }

  function makeError(code, message, extra) {
    var err = new Error(message || code);
    err.name = "RedcastError";
    err.code = code;
    if (extra) Object.keys(extra).forEach(function (k) { err[k] = extra[k]; });
    return err;
  }

  /** `{offset, epoch}` if `p` is a well-formed position, otherwise null. */
  function asPosition(p) {
    if (!p || typeof p !== "object") return null;
    if (!Number.isSafeInteger(p.offset) || p.offset < 0 || typeof p.epoch !== "string" || p.epoch === "") return null;
    return { offset: p.offset, epoch: p.epoch };
  }

  /**
   * The SSE event id form of positions (`chat.1=42:18c2f-3a1&chat.2=7:...`,
   * application/x-www-form-urlencoded), as the server writes it in `id:` and
   * reads it from Last-Event-ID or `?last_event_id=`.
   */
  function sseEventId(positions) {
    var form = new URLSearchParams();
    Object.keys(positions).forEach(function (c) {
      form.append(c, positions[c].offset + ":" + positions[c].epoch);
    });
    return form.toString();
  }

  function isObject(x) {
    return !!x && typeof x === "object" && !Array.isArray(x);
  }

  function assertChannel(channel) {
    if (typeof channel !== "string" || channel === "") {
      throw new TypeError("redcast: channel must be a non-empty string");
    }
  }

  // A throwing user callback must not break the dispatch loop, but it should
  // still surface like any uncaught error would.
  function reportError(err) {
    if (typeof root.reportError === "function") root.reportError(err);
    else if (typeof console !== "undefined") console.error(err);
  }

  // ---------------------------------------------------------------------------
  // The client.
  // ---------------------------------------------------------------------------

  class Redcast {
    constructor(url, options) {
      var opts = Object.assign({}, DEFAULTS, options || {});
      opts.backoff = Object.assign({}, DEFAULTS.backoff, (options && options.backoff) || {});
      if (["websocket", "sse", "auto"].indexOf(opts.transport) < 0) {
        throw new TypeError("redcast: transport must be websocket, sse or auto");
      }
      if (!(opts.backoff.initial > 0) || !(opts.backoff.max >= opts.backoff.initial)) {
        throw new TypeError("redcast: backoff needs 0 < initial <= max");
      }
      this._opts = opts;
      this._endpoints = endpoints(url, root.location && root.location.href);
      this._WebSocket = opts.WebSocket || root.WebSocket;
      this._EventSource = opts.EventSource || root.EventSource;
      this._random = opts.random || Math.random;

      this._token = opts.token || null;
      // false | "initial" (ask getToken once, anonymous is fine) | "fresh"
      // (after 1008/4003: a new token is required or we stop).
      this._needToken = !this._token && typeof opts.getToken === "function" ? "initial" : false;

      this._transport = opts.transport === "sse" ? "sse" : "websocket";
      this._handlers = new Map(); // channel -> Set<{handler}>
      this._listeners = new Map(); // event -> Set<fn>
      this._queue = []; // publish requests waiting for an open socket
      this._pending = new Map(); // id -> request awaiting its ack on this connection
      // channel -> {offset, epoch} of the last message delivered on a durable
      // channel (or its position when subscribed): sent as `since` on resume.
      this._positions = new Map();
      this._timers = {};
      this._conn = null;
      this._gen = 0; // invalidates async work (getToken) from older attempts
      this._nextId = 1;
      this._hbSeq = 0;
      this._attempt = 0; // reconnect backoff exponent
      this._resyncAttempt = 0; // backoff exponent for transient subscribe errors
      this._wsFailures = 0; // consecutive WebSocket attempts that never opened
      this._everOpened = false;
      this._running = false;
      this._terminal = false; // close()d or gave up: publish rejects with "closed"
      this._syncScheduled = false;
      this._state = "closed";

      if (opts.autoConnect) this.connect();
    }

    // -- public API -----------------------------------------------------------

    get state() { return this._state; }

    /** Transport currently in use ("websocket" or "sse"). */
    get transport() { return this._transport; }

    /** Channels that currently have at least one handler. */
    get channels() { return Array.from(this._handlers.keys()); }

    connect() {
      if (this._running) return;
      this._running = true;
      this._terminal = false;
      this._everOpened = false; // an explicit connect() reports "connecting" again
      this._attempt = 0;
      this._startAttempt();
    }

    close() {
      this._shutdown("closed", 1000, "client closed");
    }

    subscribe(channel, handler) {
      assertChannel(channel);
      if (typeof handler !== "function") throw new TypeError("redcast: handler must be a function");
      var set = this._handlers.get(channel);
      if (!set) {
        set = new Set();
        this._handlers.set(channel, set);
        this._scheduleSync(); // first handler: the server needs to hear about it
      }
      // Wrap so the same function can be registered twice and removed once.
      var entry = { handler: handler };
      set.add(entry);
      var self = this;
      var active = true;
      return {
        channel: channel,
        unsubscribe: function () {
          if (!active) return;
          active = false;
          self._removeHandler(channel, entry);
        },
      };
    }

    publish(channel, data) {
      assertChannel(channel);
      var self = this;
      return new Promise(function (resolve, reject) {
        if (self._terminal) return reject(makeError("closed", "redcast client is closed"));
        if (self._transport === "sse") {
          return reject(makeError("unsupported_transport", "publish is not available over SSE"));
        }
        var value = data === undefined ? null : data;
        var check;
        try { check = JSON.stringify(value); } catch (e) { check = undefined; }
        if (check === undefined) return reject(makeError("invalid_data", "data is not JSON-serializable"));

        var frame = { type: "publish", channel: channel, data: value };
        self._submit({ kind: "publish", frame: frame, resolve: resolve, reject: reject, id: null, timer: null });
      });
    }

    /**
     * Last known position of a durable channel (a copy), or undefined when
     * the channel is not durable or not subscribed.
     */
    position(channel) {
      var p = this._positions.get(channel);
      return p ? { offset: p.offset, epoch: p.epoch } : undefined;
    }

    /**
     * The latest messages kept for a durable channel, oldest first:
     * resolves to {messages: [{offset, data}], position}. Read-only, so
     * unlike a publish it is sent again if the connection drops first.
     */
    history(channel, options) {
      assertChannel(channel);
      var limit = options && options.limit;
      var self = this;
      return new Promise(function (resolve, reject) {
        if (self._terminal) return reject(makeError("closed", "redcast client is closed"));
        if (self._transport === "sse") {
          return reject(makeError("unsupported_transport", "history is not available over SSE"));
        }
        if (limit !== undefined && !(Number.isSafeInteger(limit) && limit > 0)) {
          return reject(makeError("invalid_field", "limit must be a positive integer"));
        }
        var frame = { type: "history", channel: channel };
        if (limit !== undefined) frame.limit = limit;
        self._submit({ kind: "history", frame: frame, resolve: resolve, reject: reject, id: null, timer: null });
      });
    }

    /**
     * Replace the token. Over an open WebSocket the server is told in-band
     * ({"type":"refresh","id"}) and the promise settles on its answer:
     * `refreshed` resolves; an error (`invalid_token`) rejects with that code
     * and the previous token is kept, as the server keeps it. Otherwise the
     * token is used on the next connect and the promise resolves at once.
     */
    refreshToken(token) {
      var self = this;
      var get = token !== undefined ? Promise.resolve(token)
        : typeof this._opts.getToken === "function" ? Promise.resolve().then(function () { return self._opts.getToken(); })
        : Promise.reject(makeError("token_error", "no token given and no getToken option"));
      return get.then(function (t) {
        if (!t) throw makeError("token_error", "getToken returned no token");
        var previous = self._token;
        self._token = t;
        self._needToken = false;
        if (!self._isWsOpen()) return undefined;
        return new Promise(function (resolve, reject) {
          var req = {
            kind: "refresh",
            resolve: resolve,
            reject: function (err) {
              // The server kept the old token; so do we, unless a newer one came since.
              if (err.code !== "timeout" && self._token === t) self._token = previous;
              reject(err);
            },
            id: String(self._nextId++),
            timer: null,
          };
          self._pending.set(req.id, req);
          self._armRequestTimeout(req);
          self._send({ type: "refresh", id: req.id, token: t });
        });
      });
    }

    on(event, cb) {
      if (typeof cb !== "function") throw new TypeError("redcast: listener must be a function");
      if (!this._listeners.has(event)) this._listeners.set(event, new Set());
      this._listeners.get(event).add(cb);
      var self = this;
      return function () { self.off(event, cb); };
    }

    off(event, cb) {
      var set = this._listeners.get(event);
      if (set) set.delete(cb);
    }

    // -- connection lifecycle -------------------------------------------------

    _startAttempt() {
      this._clearTimer("reconnect");
      this._setState(this._everOpened ? "reconnecting" : "connecting");
      var gen = ++this._gen;
      if (!this._needToken) return this._openTransport();

      var self = this;
      var mustBeFresh = this._needToken === "fresh";
      var previous = this._token;
      Promise.resolve()
        .then(function () { return self._opts.getToken(); })
        .then(function (token) {
          if (gen !== self._gen || !self._running) return;
          // Reusing a token the server just refused would be a reconnect loop.
          if (mustBeFresh && (!token || token === previous)) {
            return self._giveUp(self._lastClose || { code: 1008, reason: "no fresh token" });
          }
          self._token = token || null;
          self._needToken = false;
          self._openTransport();
        }, function (err) {
          if (gen !== self._gen || !self._running) return;
          // A failing token endpoint is treated as transient: retry with backoff
          // (and ask getToken again, since _needToken is still set).
          self._emit("error", { code: "token_error", message: String((err && err.message) || err) });
          self._scheduleReconnect();
        });
    }

    _openTransport() {
      if (this._transport === "sse") this._openSse();
      else this._openWs();
    }

    _openWs() {
      var url = this._endpoints.ws;
      var protocols = [SUBPROTOCOL];
      if (this._token) {
        if (isSubprotocolSafe(this._token)) protocols.push("bearer." + this._token);
        else url = withParams(url, [["token", this._token]]);
      }
      var conn = { kind: "ws", socket: null, opened: false, healthy: false, serverChannels: new Set() };
      this._conn = conn;
      try {
        if (!this._WebSocket) throw new Error("no WebSocket implementation available");
        conn.socket = new this._WebSocket(url, protocols);
      } catch (err) {
        // Treat a constructor failure (no WebSocket, CSP, bad URL) as a failed
        // attempt, so "auto" can fall back and "websocket" backs off.
        return this._onClose(conn, 1006, String((err && err.message) || err));
      }
      var self = this;
      conn.socket.onopen = function () { self._onOpen(conn); };
      conn.socket.onmessage = function (ev) { self._onFrame(conn, ev.data); };
      conn.socket.onclose = function (ev) { self._onClose(conn, ev.code, ev.reason); };
      conn.socket.onerror = function () { /* a close event always follows; handled there */ };
    }

    _openSse() {
      var channels = Array.from(this._handlers.keys());
      var conn = { kind: "sse", socket: null, opened: false, healthy: false, channels: new Set(channels) };
      this._conn = conn;
      // Holding an idle stream with zero channels is pointless (and the server
      // may reject it); the client is still "open" and will connect on demand.
      if (channels.length === 0) return this._onOpen(conn);

      var params = channels.map(function (c) { return ["channel", c]; });
      if (this._token) params.push(["token", this._token]); // EventSource cannot set headers
      // A new EventSource sends no Last-Event-ID, so the positions to resume
      // from go in the query, in the same form as the server's event ids.
      // (Built from our own positions rather than the last `id:` seen, which
      // may be ahead of what was delivered when a replay was cut short.)
      conn.since = this._sinceFor(channels);
      if (conn.since) params.push(["last_event_id", sseEventId(conn.since)]);
      try {
        if (!this._EventSource) throw new Error("no EventSource implementation available");
        conn.socket = new this._EventSource(withParams(this._endpoints.sse, params));
      } catch (err) {
        return this._onClose(conn, 1006, String((err && err.message) || err));
      }
      var self = this;
      conn.socket.onopen = function () { self._onOpen(conn); };
      conn.socket.onmessage = function (ev) { self._onFrame(conn, ev.data); };
      // We drive retries ourselves (instead of EventSource's fixed retry) so
      // SSE gets the same jittered backoff and token refresh as WebSocket.
      conn.socket.onerror = function () { self._onClose(conn, 1006, "event stream error"); };
    }

    _onOpen(conn) {
      if (conn !== this._conn || conn.opened) return;
      conn.opened = true;
      this._everOpened = true;
      if (conn.kind === "sse") {
        this._setState("open");
        // No acks over SSE: an established stream is the best health signal.
        this._markHealthy(conn);
        return this._sync();
      }
      this._wsFailures = 0;
      this._setState("open");
      // Restore every subscription in ONE frame; its ack proves the session
      // healthy. With nothing to restore, a ping's pong does the same job.
      if (this._handlers.size > 0) this._sync();
      else this._send({ type: "ping", id: "hb-" + ++this._hbSeq });
      this._flushQueue();
      this._scheduleHeartbeat(conn);
    }

    _onClose(conn, code, reason) {
      if (conn !== this._conn) return;
      var wasOpen = conn.opened;
      // Only 1000 and 3000-4999 may be sent by a client (e.g. our own 4000).
      var ownCode = code >= 3000 && code <= 4999 ? code : 1000;
      this._teardown(conn, "not_connected", ownCode, reason);
      this._lastClose = { code: code, reason: reason || "" };

      if (!wasOpen && conn.kind === "ws" && this._opts.transport === "auto" &&
          ++this._wsFailures >= this._opts.fallbackAfter) {
        return this._switchToSse();
      }

      var policy = closePolicy(code);
      if (policy === "refresh") {
        if (typeof this._opts.getToken !== "function") return this._giveUp(this._lastClose);
        this._needToken = "fresh";
      } else if (policy === "throttle") {
        this._attempt = Math.max(this._attempt, THROTTLE_MIN_ATTEMPT);
      }
      this._emit("close", { code: code, reason: reason || "", willReconnect: true });
      this._scheduleReconnect();
    }

    _scheduleReconnect() {
      if (!this._running) return;
      this._setState("reconnecting");
      var delay = backoffDelay(this._attempt, this._opts.backoff, this._random);
      this._attempt++;
      var self = this;
      this._setTimer("reconnect", delay, function () { self._startAttempt(); });
    }

    _switchToSse() {
      this._transport = "sse";
      this._wsFailures = 0;
      // Queued publishes and history requests can never be answered over SSE.
      this._rejectQueue("unsupported_transport", "publish and history are not available over SSE");
      this._emit("transport", "sse");
      // Immediately: this is a different transport, not a retry of the failing one.
      this._startAttempt();
    }

    _giveUp(close) {
      var code = close.code === 4003 ? "token_expired" : "policy_violation";
      this._emit("error", { code: code, message: close.reason || code, closeCode: close.code });
      this._emit("close", { code: close.code, reason: close.reason || "", willReconnect: false });
      this._shutdown("closed");
    }

    _shutdown(rejectCode, closeCode, closeReason) {
      this._running = false;
      this._terminal = true;
      this._gen++;
      this._clearTimer("reconnect");
      this._clearTimer("resync");
      if (this._conn) this._teardown(this._conn, rejectCode, closeCode, closeReason);
      this._rejectQueue(rejectCode, "redcast client is closed");
      this._setState("closed");
    }

    /** Forget a connection: detach, close it, fail requests that were in flight. */
    _teardown(conn, rejectCode, closeCode, closeReason) {
      if (this._conn === conn) this._conn = null;
      this._clearTimer("heartbeat");
      this._clearTimer("dead");
      this._clearTimer("resync"); // a new connection resubscribes everything anyway
      var s = conn.socket;
      if (s) {
        s.onopen = s.onmessage = s.onclose = s.onerror = null;
        try {
          if (conn.kind === "sse") s.close();
          else if (s.readyState === 0 || s.readyState === WS_OPEN) s.close(closeCode || 1000, closeReason || "");
        } catch (e) { /* already closing; nothing more to do */ }
      }
      // In-flight publishes may or may not have reached the server; we never
      // resend them (at-most-once), we tell the caller instead.
      var pending = this._pending;
      this._pending = new Map();
      var why = rejectCode === "closed" ? "client closed before the server acknowledged"
        : "connection lost before the server acknowledged";
      var retry = [];
      pending.forEach(function (req) {
        if (req.kind === "history" && rejectCode !== "closed") {
          retry.push(req); // a read: safe to ask again on the next connection
        } else if (req.kind === "publish" || req.kind === "history") {
          clearTimeout(req.timer);
          req.reject(makeError(rejectCode, why));
        } else if (req.kind === "refresh") {
          // Not confirmed, but the new token is what the next connection uses.
          clearTimeout(req.timer);
          req.resolve();
        }
      });
      // Ahead of requests queued since: they were asked for earlier.
      this._queue = retry.concat(this._queue);
    }

    // -- heartbeat --------------------------------------------------------------

    _scheduleHeartbeat(conn) {
      var every = this._opts.heartbeatInterval;
      if (!(every > 0)) return;
      var self = this;
      this._setTimer("heartbeat", every, function () {
        if (conn !== self._conn) return;
        self._send({ type: "ping", id: "hb-" + ++self._hbSeq });
        self._armDeadTimer(conn);
        self._scheduleHeartbeat(conn);
      });
    }

    _armDeadTimer(conn) {
      // If an earlier heartbeat is still unanswered, keep its (earlier) deadline.
      if (this._timers.dead) return;
      var self = this;
      this._setTimer("dead", this._opts.heartbeatTimeout, function () {
        // A dead TCP connection may never deliver a close event: act now.
        self._onClose(conn, HEARTBEAT_CLOSE_CODE, "heartbeat timeout");
      });
    }

    // -- inbound frames ---------------------------------------------------------

    _onFrame(conn, raw) {
      if (conn !== this._conn) return;
      this._clearTimer("dead"); // any frame at all proves the connection alive
      if (typeof raw !== "string") return; // binary is not part of the protocol
      var msg;
      try { msg = JSON.parse(raw); } catch (e) { return; }
      if (!msg || typeof msg !== "object") return;
      switch (msg.type) {
        case "message": return this._onMessage(conn, msg);
        case "subscribed":
          this._onSubscribed(conn, msg);
          this._markHealthy(conn);
          return this._settle(msg.id);
        case "pong":
          this._markHealthy(conn);
          return this._settle(msg.id);
        case "history":
          return this._settle(msg.id, {
            messages: Array.isArray(msg.messages) ? msg.messages : [],
            position: asPosition(msg.position),
          });
        case "unsubscribed":
        case "published":
        case "refreshed":
          return this._settle(msg.id);
        case "error": return this._onServerError(conn, msg);
        default: return; // unknown types are ignored for forward compatibility
      }
    }

    _onMessage(conn, msg) {
      var channel = msg.channel;
      var pos = asPosition(msg);
      var known = pos && this._positions.get(channel);
      if (known) {
        // The server promises no duplicate across a resume; dropping what
        // is not past the last delivered offset makes sure of it here too.
        if (known.epoch === pos.epoch && pos.offset <= known.offset) return;
        // Offsets go up by one per message: anything else means messages
        // were lost on the way. Drop this one and resume from `known`; the
        // server replays what is missing, or says it cannot.
        if (pos.offset !== (known.epoch === pos.epoch ? known.offset + 1 : 1)) {
          return this._onClose(conn, GAP_CLOSE_CODE, "durable channel " + channel + " skipped to offset " +
            pos.offset + " after " + known.offset + ": resuming");
        }
      }
      if (pos && this._handlers.has(channel)) this._positions.set(channel, pos);
      this._deliver(channel, msg.data, pos || undefined);
    }

    _deliver(channel, data, pos) {
      var ev = { channel: channel, data: data };
      if (pos) { ev.offset = pos.offset; ev.epoch = pos.epoch; }
      this._emit("message", ev);
      var set = this._handlers.get(channel);
      if (!set) return;
      // Copy: a handler may unsubscribe (itself or others) while we iterate.
      Array.from(set).forEach(function (entry) {
        try { entry.handler(data, channel, pos ? { offset: pos.offset, epoch: pos.epoch } : undefined); } catch (err) { reportError(err); }
      });
    }

    /**
     * Positions from a `subscribed` ack. A channel that was resumed keeps
     * our position when recovered (the replay that follows moves it up to
     * the top); otherwise it takes the ack's, and the app hears that what
     * was missed is lost.
     */
    _onSubscribed(conn, msg) {
      var req = msg.id != null ? this._pending.get(msg.id) : undefined;
      var since = conn.kind === "sse" ? conn.since : req && req.since;
      if (conn.kind === "sse") conn.since = null; // one answer per stream
      var positions = isObject(msg.positions) ? msg.positions : {};
      var recovered = isObject(msg.recovered) ? msg.recovered : {};
      var channels = new Set(Array.isArray(msg.channels) ? msg.channels : []);
      Object.keys(positions).forEach(function (c) { channels.add(c); });
      Object.keys(recovered).forEach(function (c) { channels.add(c); });
      var outcomes = [];
      var self = this;
      channels.forEach(function (c) {
        if (!self._handlers.has(c)) return; // unsubscribed meanwhile
        var top = asPosition(positions[c]);
        if (since && since[c]) {
          if (recovered[c] === true) return outcomes.push({ channel: c, recovered: true });
          if (top) self._positions.set(c, top);
          else self._positions.delete(c);
          return outcomes.push({ channel: c, recovered: false, reason: "unrecoverable" });
        }
        var known = self._positions.get(c);
        if (top && (!known || known.epoch !== top.epoch || known.offset < top.offset)) self._positions.set(c, top);
      });
      outcomes.forEach(function (o) { self._emit("recovery", o); });
    }

    /** A resume refused for `channels`: forget their positions, tell the app. */
    _recoveryFailed(channels, reason) {
      var self = this;
      channels.forEach(function (c) {
        self._positions.delete(c);
        if (self._handlers.has(c)) self._emit("recovery", { channel: c, recovered: false, reason: reason });
      });
    }

    _settle(id, value) {
      if (id == null) return;
      var req = this._pending.get(id);
      if (!req) return;
      this._pending.delete(id);
      if (req.resolve) {
        clearTimeout(req.timer);
        req.resolve(value);
      }
    }

    _onServerError(conn, msg) {
      var req = msg.id != null ? this._pending.get(msg.id) : undefined;
      if (req && (req.kind === "publish" || req.kind === "refresh" || req.kind === "history")) {
        this._pending.delete(msg.id);
        clearTimeout(req.timer);
        // Reported through the promise only, to avoid double reporting.
        return req.reject(makeError(msg.code, msg.message));
      }
      var channels = Array.isArray(msg.channels) ? msg.channels : req && req.kind === "subscribe" ? req.channels : null;
      var since = conn.kind === "sse" ? conn.since : req && req.since;
      if (SINCE_CODES[msg.code] && since && Object.keys(since).length) {
        return this._onSinceRejected(conn, msg, req);
      }
      if (req) {
        // A subscribe can get an invalid_channel error, then a forbidden one,
        // then its ack: keep it pending while some of its channels are unanswered.
        if (req.kind === "subscribe" && PER_CHANNEL_CODES[msg.code] && channels) {
          channels.forEach(function (c) { req.remaining.delete(c); });
          if (req.remaining.size === 0) this._pending.delete(msg.id);
        } else {
          this._pending.delete(msg.id);
        }
      }
      var info = { code: msg.code, message: msg.message };
      if (msg.id != null) info.id = msg.id;
      if (channels) info.channels = channels;
      // Over SSE errors can't carry an id; a channel list is enough to act on.
      if (channels && ((req && req.kind === "subscribe") || conn.kind === "sse")) {
        this._onSubscribeRejected(conn, msg.code, channels);
      }
      this._emit("error", info);
    }

    /**
     * A `since` refused. `invalid_position` naming channels refuses those
     * positions only (ahead of the channel, e.g. after Redis lost recent
     * writes): the channels are still subscribed and the ack follows. Our
     * positions are always well-formed, so a malformed-entry error (same
     * code, whole frame) cannot come from us. `not_durable`/`invalid_field`
     * (and `invalid_position` naming nothing) refuse the whole subscribe:
     * it is sent again, without the positions named (all if none is).
     */
    _onSinceRejected(conn, msg, req) {
      var since = conn.kind === "sse" ? conn.since : req.since;
      var listed = (Array.isArray(msg.channels) ? msg.channels : []).filter(function (c) { return since[c]; });
      var refused = listed.length ? listed : Object.keys(since);
      // The ack that may still come treats them as fresh subscriptions.
      refused.forEach(function (c) { delete since[c]; });
      this._recoveryFailed(refused, msg.code);
      var info = { code: msg.code, message: msg.message, channels: refused };
      if (msg.id != null) info.id = msg.id;
      this._emit("error", info);
      // Over SSE only invalid_position comes as an event (the stream goes
      // on); a since a stream cannot take refuses it at the handshake.
      if (conn.kind === "sse" || (msg.code === "invalid_position" && listed.length)) return;
      this._pending.delete(msg.id);
      req.channels.forEach(function (c) { conn.serverChannels.delete(c); });
      this._scheduleSync();
    }

    _onSubscribeRejected(conn, code, channels) {
      var self = this;
      channels.forEach(function (c) { if (conn.serverChannels) conn.serverChannels.delete(c); });
      if (TRANSIENT_CODES[code]) {
        var delay = backoffDelay(this._resyncAttempt++, this._opts.backoff, this._random);
        return this._setTimer("resync", delay, function () { self._sync(); });
      }
      // forbidden / invalid_channel / too_many_subscriptions: retrying would
      // fail the same way on every reconnect, so the handlers are dropped.
      channels.forEach(function (c) {
        self._handlers.delete(c);
        self._positions.delete(c);
      });
      if (conn.kind === "sse") this._scheduleSync();
    }

    _markHealthy(conn) {
      if (conn.healthy) return;
      conn.healthy = true;
      this._attempt = 0;
      this._resyncAttempt = 0;
    }

    // -- subscriptions: reconcile desired state with the server -----------------

    _removeHandler(channel, entry) {
      var set = this._handlers.get(channel);
      if (!set || !set.delete(entry)) return;
      if (set.size > 0) return; // other handlers still want this channel
      this._handlers.delete(channel);
      // A later subscribe starts afresh; it does not resume from here.
      this._positions.delete(channel);
      this._scheduleSync();
    }

    // Batched in a microtask so a loop of subscribe() calls (or a subscribe
    // followed by an unsubscribe) costs at most one frame of each kind.
    _scheduleSync() {
      if (this._syncScheduled) return;
      this._syncScheduled = true;
      var self = this;
      queueMicrotask(function () {
        self._syncScheduled = false;
        self._sync();
      });
    }

    _sync() {
      var conn = this._conn;
      if (!conn || !conn.opened) return; // _onOpen syncs everything anyway
      if (conn.kind === "sse") return this._syncSse(conn);
      var diff = diffChannels(new Set(this._handlers.keys()), conn.serverChannels);
      if (diff.unsubscribe.length) {
        diff.unsubscribe.forEach(function (c) { conn.serverChannels.delete(c); });
        this._request({ type: "unsubscribe", channels: diff.unsubscribe });
      }
      if (diff.subscribe.length) {
        diff.subscribe.forEach(function (c) { conn.serverChannels.add(c); });
        var frame = { type: "subscribe", channels: diff.subscribe };
        // Channels with a known position resume from it, in the same frame.
        var since = this._sinceFor(diff.subscribe);
        if (since) frame.since = since;
        this._request(frame);
      }
    }

    /** `since` for those of `channels` with a known position, or null. */
    _sinceFor(channels) {
      var since = null;
      var self = this;
      channels.forEach(function (c) {
        var p = self._positions.get(c);
        if (!p) return;
        since = since || {};
        since[c] = { offset: p.offset, epoch: p.epoch };
      });
      return since;
    }

    // An EventSource's channel set is fixed, so changing it means a new stream.
    _syncSse(conn) {
      var diff = diffChannels(new Set(this._handlers.keys()), conn.channels);
      if (!diff.subscribe.length && !diff.unsubscribe.length) return;
      this._teardown(conn, "not_connected");
      this._openSse();
    }

    _request(frame) {
      frame.id = String(this._nextId++);
      this._pending.set(frame.id, {
        kind: frame.type, channels: frame.channels, remaining: new Set(frame.channels), since: frame.since || null,
      });
      this._send(frame);
    }

    // -- outbound ---------------------------------------------------------------

    _isWsOpen() {
      var c = this._conn;
      return !!(c && c.kind === "ws" && c.opened && c.socket.readyState === WS_OPEN);
    }

    _send(frame) {
      if (!this._isWsOpen()) return false;
      try {
        this._conn.socket.send(JSON.stringify(frame));
        return true;
      } catch (e) {
        return false; // socket is closing; its close event drives recovery
      }
    }

    /** Send a publish/history request now, or queue it until the socket opens. */
    _submit(req) {
      if (this._isWsOpen()) return this._sendRequest(req);
      if (this._queue.length >= this._opts.maxQueue) {
        return req.reject(makeError("queue_full", "request queue is full (maxQueue=" + this._opts.maxQueue + ")"));
      }
      this._armRequestTimeout(req);
      this._queue.push(req);
    }

    _sendRequest(req) {
      req.id = String(this._nextId++);
      this._pending.set(req.id, req);
      if (!req.timer) this._armRequestTimeout(req);
      this._send(Object.assign({}, req.frame, { id: req.id }));
    }

    // The timeout runs from the publish() call, so callers get an answer within
    // requestTimeout even if the client stays offline the whole time.
    _armRequestTimeout(req) {
      var ms = this._opts.requestTimeout;
      if (!(ms > 0)) return;
      var self = this;
      req.timer = setTimeout(function () {
        var i = self._queue.indexOf(req);
        if (i >= 0) self._queue.splice(i, 1);
        if (req.id != null && self._pending.get(req.id) === req) self._pending.delete(req.id);
        req.reject(makeError("timeout", "no acknowledgement within " + ms + " ms"));
      }, ms);
    }

    _flushQueue() {
      var queue = this._queue;
      this._queue = [];
      var self = this;
      queue.forEach(function (req) { self._sendRequest(req); });
    }

    _rejectQueue(code, message) {
      var queue = this._queue;
      this._queue = [];
      queue.forEach(function (req) {
        clearTimeout(req.timer);
        req.reject(makeError(code, message));
      });
    }

    // -- small utilities --------------------------------------------------------

    _setState(state) {
      if (this._state === state) return;
      this._state = state;
      this._emit("state", state);
    }

    _emit(event, payload) {
      var set = this._listeners.get(event);
      if (!set) return;
      Array.from(set).forEach(function (cb) {
        try { cb(payload); } catch (err) { reportError(err); }
      });
    }

    _setTimer(name, ms, fn) {
      this._clearTimer(name);
      var self = this;
      this._timers[name] = setTimeout(function () {
        self._timers[name] = null;
        fn();
      }, ms);
    }

    _clearTimer(name) {
      if (this._timers[name]) {
        clearTimeout(this._timers[name]);
        this._timers[name] = null;
      }
    }
  }

  Redcast.backoffDelay = backoffDelay;
  Redcast.endpoints = endpoints;
  Redcast.diffChannels = diffChannels;
  Redcast.closePolicy = closePolicy;
  Redcast.isSubprotocolSafe = isSubprotocolSafe;
  Redcast.sseEventId = sseEventId;
  Redcast.SUBPROTOCOL = SUBPROTOCOL;
  Redcast.GAP_CLOSE_CODE = GAP_CLOSE_CODE;
  Redcast.DEFAULTS = DEFAULTS;

  root.Redcast = Redcast;
  // CommonJS consumers (bundlers, Node require) get it too; harmless elsewhere.
  if (typeof module === "object" && module && module.exports) module.exports = Redcast;
})(typeof globalThis !== "undefined" ? globalThis : this);
