/**
 * Types for the redcast browser client.
 *
 * `redcast.js` is a classic script that defines `globalThis.Redcast`;
 * `redcast.mjs` re-exports the same class as `Redcast` and as the default
 * export. These declarations cover both (see `redcast.d.mts`).
 */

/** Connection state, reported by `rc.state` and the `"state"` event. */
export type RedcastState =
  /** First connection attempt in progress (or after an explicit `connect()`). */
  | "connecting"
  /** Transport is open (WebSocket open, or SSE stream established). */
  | "open"
  /** Connection lost; waiting for the backoff delay or retrying. */
  | "reconnecting"
  /** Not connected and not retrying: `close()` was called, `connect()` not yet called, or the server refused us for good (1008/4003 without a fresh token). */
  | "closed";

/** Transport setting; `"auto"` tries WebSocket and falls back to SSE. */
export type RedcastTransportOption = "websocket" | "sse" | "auto";

/** Transport actually in use. */
export type RedcastTransport = "websocket" | "sse";

/** Any JSON value (what `publish` sends and what handlers receive). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Error codes sent by the server in `{"type":"error"}` frames. */
export type ServerErrorCode =
  | "invalid_json"
  | "unknown_type"
  | "invalid_field"
  | "invalid_channel"
  | "too_many_subscriptions"
  | "forbidden"
  | "rate_limited"
  /** A `refresh` token was refused; `refreshToken()` rejects with it. */
  | "invalid_token"
  /** Redis did not take a client `publish`; retry later. */
  | "publish_failed"
  /** A `since` position was malformed, or ahead of the channel's position in the same epoch. The client forgets it, emits `"recovery"` with `recovered: false` and subscribes again without it. */
  | "invalid_position"
  /** `since` or `history` on a channel whose rule keeps no history. */
  | "not_durable"
  /** Redis could not be read in time for a `history` request; retry later. */
  | "history_unavailable";

/** Error codes produced by the client itself. */
export type ClientErrorCode =
  /** The connection dropped after the publish was sent but before its ack (it may or may not have been delivered; it is never resent). */
  | "not_connected"
  /** Not connected and `maxQueue` publishes are already waiting. */
  | "queue_full"
  /** The client was closed (`close()`, or it gave up after 1008/4003). */
  | "closed"
  /** No ack within `requestTimeout` ms of the `publish()` (or in-band `refreshToken()`) call. */
  | "timeout"
  /** Publishing is impossible over the SSE transport. */
  | "unsupported_transport"
  /** `data` could not be serialised with `JSON.stringify`. */
  | "invalid_data"
  /** `getToken` threw / rejected, or returned nothing when a token was needed. */
  | "token_error"
  /** Closed with 1008 (policy violation) and no fresh token could be obtained. */
  | "policy_violation"
  /** Closed with 4003 (token expired) and no fresh token could be obtained. */
  | "token_expired";

export type RedcastErrorCode = ServerErrorCode | ClientErrorCode | (string & {});

/** Error used to reject `publish()`, `history()` and `refreshToken()` promises. */
export interface RedcastError extends Error {
  name: "RedcastError";
  code: RedcastErrorCode;
}

/** Payload of the `"error"` event. */
export interface RedcastErrorEvent {
  code: RedcastErrorCode;
  message?: string;
  /** Request id the server echoed, when the error answers a client frame. */
  id?: string;
  /** Channels concerned, e.g. the ones a `forbidden` subscribe was refused for. Those channels' handlers are dropped (for `forbidden`, `invalid_channel`, `too_many_subscriptions`); a `rate_limited` subscribe is retried. */
  channels?: string[];
  /** Set when the error results from a close frame (1008/4003). */
  closeCode?: number;
}

/** Payload of the `"close"` event (server / network closes, not `close()`). */
export interface RedcastCloseEvent {
  /** WebSocket close code; 1006 for network/SSE errors; 4000 = client-side heartbeat timeout; 4010 = client-side resync after a durable channel skipped offsets. */
  code: number;
  reason: string;
  /** Whether the client will reconnect on its own. */
  willReconnect: boolean;
}

/**
 * Position of a message in a durable channel. `offset` goes up by one per
 * message; `epoch` changes whenever the channel's history was lost (offsets
 * of different epochs are not comparable).
 */
export interface RedcastPosition {
  offset: number;
  epoch: string;
}

/** Payload of the `"message"` event (every message, any channel). */
export interface RedcastMessageEvent<T = Json> {
  channel: string;
  data: T;
  /** Set for messages on durable channels published with `FCALL redcast_publish`. */
  offset?: number;
  epoch?: string;
}

/**
 * Payload of the `"recovery"` event: the outcome of resuming one durable
 * channel after a reconnect (one event per channel that had a position).
 * `recovered: true`: every missed message follows, in order, before live
 * ones. `recovered: false`: what was missed is lost; reload the channel's
 * state (e.g. with `history()` or your own API). Live messages follow.
 */
export interface RedcastRecoveryEvent {
  channel: string;
  recovered: boolean;
  /**
   * Why recovery failed: `"unrecoverable"` (the server answered
   * `recovered: false`: history lost or expired, new epoch, or more missed
   * than the history/replay limits), or the server's error code
   * (`"invalid_position"`, `"not_durable"`, `"invalid_field"`).
   */
  reason?: "unrecoverable" | "invalid_position" | "not_durable" | "invalid_field";
}

/** One kept message returned by `history()`. */
export interface RedcastHistoryMessage<T = Json> {
  offset: number;
  data: T;
}

/** What `history()` resolves to. */
export interface RedcastHistory<T = Json> {
  /** The latest messages kept, oldest first, at most `limit`. */
  messages: RedcastHistoryMessage<T>[];
  /** The channel's current position (the last message's, or offset 0 when nothing was published in this epoch). */
  position: RedcastPosition | null;
}

export interface RedcastEventMap {
  state: RedcastState;
  error: RedcastErrorEvent;
  close: RedcastCloseEvent;
  message: RedcastMessageEvent;
  /** Emitted once when `transport: "auto"` falls back to SSE. */
  transport: RedcastTransport;
  /** Outcome of resuming a durable channel after a reconnect. */
  recovery: RedcastRecoveryEvent;
}

/** Handler for one channel's messages; `position` is set on durable channels (not for plain `PUBLISH` messages). */
export type MessageHandler<T = Json> = (data: T, channel: string, position?: RedcastPosition) => void;

/** Returned by `subscribe()`. */
export interface Subscription {
  readonly channel: string;
  /** Remove this handler. Idempotent. The server is told only when the channel's last handler goes. */
  unsubscribe(): void;
}

export interface BackoffOptions {
  /** Base delay in ms for attempt 0. Default 500. Must be > 0. */
  initial?: number;
  /** Upper bound in ms of any delay. Default 30000. Must be >= initial. */
  max?: number;
}

/** Minimal WebSocket surface the client uses (for injection in tests). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Minimal EventSource surface the client uses (for injection in tests). */
export interface EventSourceLike {
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: string; lastEventId?: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  close(): void;
}
export type EventSourceConstructor = new (url: string) => EventSourceLike;

export interface RedcastOptions {
  /**
   * Bearer token. Sent as the `bearer.<token>` WebSocket subprotocol (after
   * `redcast.v1`), or as `?token=` when it contains characters not allowed in
   * a subprotocol (e.g. `/`, `=`), and always as `?token=` for SSE.
   */
  token?: string;
  /**
   * Supplies tokens. Called before the first connect when `token` is not set
   * (a falsy result then connects anonymously), and after a 1008 or 4003
   * close, when a *different*, non-empty token is required — otherwise the
   * client gives up (state `"closed"`). A rejection is treated as transient:
   * `"error"` event with code `token_error`, then retry with backoff.
   */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Default `"websocket"`. */
  transport?: RedcastTransportOption;
  /** Reconnect backoff; delay = random(0, min(max, initial * 2^attempt)). */
  backoff?: BackoffOptions;
  /** ms between client heartbeat pings over WebSocket. Default 25000; 0 disables. */
  heartbeatInterval?: number;
  /** ms after a heartbeat without any incoming frame before the socket is declared dead. Default 10000. */
  heartbeatTimeout?: number;
  /** ms from `publish()` / `history()` to its answer before rejecting with `timeout`. Default 10000; 0 disables. */
  requestTimeout?: number;
  /** Max publishes and history requests waiting for an open socket. Default 100. */
  maxQueue?: number;
  /** Connect from the constructor. Default true. */
  autoConnect?: boolean;
  /** `transport: "auto"`: consecutive WebSocket attempts that fail before opening, before switching to SSE. Default 2. */
  fallbackAfter?: number;
  /** WebSocket implementation. Default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** EventSource implementation. Default `globalThis.EventSource`. */
  EventSource?: EventSourceConstructor;
  /** Random source in [0, 1) for jitter (tests). Default `Math.random`. */
  random?: () => number;
}

export declare class Redcast {
  /**
   * @param url Base URL: `ws(s)://host[/prefix]` or `http(s)://host[/prefix]`
   *   (a trailing `/ws` or `/sse` is accepted). Relative URLs resolve against
   *   `location.href`. Both `/ws` and `/sse` endpoints are derived from it.
   */
  constructor(url: string, options?: RedcastOptions);

  /** Current connection state. */
  readonly state: RedcastState;
  /** Transport in use (changes from "websocket" to "sse" on auto fallback). */
  readonly transport: RedcastTransport;
  /** Channels that currently have at least one handler. */
  readonly channels: string[];

  /** Start connecting (only needed with `autoConnect: false`, or to restart after `close()`). No-op if already running. */
  connect(): void;

  /**
   * Stop for good: close the socket with 1000, cancel reconnects, reject
   * queued and in-flight publishes with `closed`. Handlers are kept, so a
   * later `connect()` restores the subscriptions.
   */
  close(): void;

  /**
   * Add a handler for `channel`. Only the first handler of a channel causes
   * a server subscribe (batched per microtask); subscriptions are state and
   * are restored on every reconnect in one `subscribe` frame. On a durable
   * channel that frame resumes from the last position (`since`), so no
   * message is lost or repeated across the reconnect; see the `"recovery"`
   * event for when that is impossible.
   */
  subscribe<T = Json>(channel: string, handler: MessageHandler<T>): Subscription;

  /**
   * Publish `data` (JSON; `undefined` is sent as `null`) to `channel`.
   * Resolves on the server's `published` ack. Rejects with a `RedcastError`
   * whose `code` is the server's error code, or one of `not_connected`,
   * `queue_full`, `closed`, `timeout`, `unsupported_transport`, `invalid_data`.
   * Queued (up to `maxQueue`) while not connected; never resent after it was sent.
   */
  publish(channel: string, data?: unknown): Promise<void>;

  /**
   * Last known position of a durable channel: from the `subscribed` ack,
   * then from each message delivered. `undefined` for a channel that is not
   * durable or has no handler (the last handler's removal forgets it).
   */
  position(channel: string): RedcastPosition | undefined;

  /**
   * The latest messages kept for a durable channel, oldest first (at most
   * `limit`, 1..`history.max_replay` on the server; server default 100).
   * Needs the channel's subscribe permission, not a subscription. Sent
   * again if the connection drops before the answer (it is a read).
   * Rejects with a `RedcastError`: `not_durable`, `forbidden`,
   * `history_unavailable`, `invalid_field` (bad `limit`), `timeout`,
   * `queue_full`, `closed`, or `unsupported_transport` over SSE.
   */
  history<T = Json>(channel: string, options?: { limit?: number }): Promise<RedcastHistory<T>>;

  /**
   * Replace the token (or fetch one with `getToken` when omitted). Over an
   * open WebSocket it is sent in-band as `{"type":"refresh","id"}` and the
   * promise settles on the server's answer: `refreshed` resolves, an error
   * (`invalid_token`) rejects with that code and the previous token is kept,
   * no answer within `requestTimeout` rejects with `timeout`. Otherwise the
   * token is used for the next connect and the promise resolves at once.
   */
  refreshToken(token?: string): Promise<void>;

  /** Listen to an event. Returns a function that removes the listener. */
  on<K extends keyof RedcastEventMap>(event: K, cb: (payload: RedcastEventMap[K]) => void): () => void;
  /** Remove a listener added with `on`. */
  off<K extends keyof RedcastEventMap>(event: K, cb: (payload: RedcastEventMap[K]) => void): void;

  // ---- pure helpers, exposed for testing and reuse ----

  /**
   * Full-jitter backoff delay in ms: `floor(random() * min(max, initial * 2^attempt))`,
   * so `0 <= delay < min(max, initial * 2^attempt) <= max`.
   */
  static backoffDelay(attempt: number, backoff?: BackoffOptions, random?: () => number): number;
  /** Derive the WebSocket and SSE endpoint URLs from a base URL. */
  static endpoints(url: string, base?: string): { ws: string; sse: string };
  /** Frames needed to turn the server's channel set `current` into `desired`. */
  static diffChannels(desired: Set<string>, current: Set<string>): { subscribe: string[]; unsubscribe: string[] };
  /** Reaction to a server close code: `refresh` (1008, 4003), `throttle` (4029) or `reconnect` (everything else). */
  static closePolicy(code: number): "reconnect" | "refresh" | "throttle";
  /** Whether a token can be carried in Sec-WebSocket-Protocol (RFC 7230 token characters). */
  static isSubprotocolSafe(token: string): boolean;
  /** Positions in the SSE event id form (`chat.1=42%3A18c2f-3a1&…`, form-urlencoded), as sent in `?last_event_id=`. */
  static sseEventId(positions: Record<string, RedcastPosition>): string;
  /** "redcast.v1" */
  static readonly SUBPROTOCOL: string;
  /** 4010: the close code the client uses when it reconnects to resume a durable channel that skipped offsets. */
  static readonly GAP_CLOSE_CODE: number;
  static readonly DEFAULTS: Readonly<Required<Omit<RedcastOptions, "token" | "getToken" | "WebSocket" | "EventSource" | "random">>>;
}

export default Redcast;

type RedcastClass = typeof Redcast;
declare global {
  /** Defined by loading redcast.js as a classic `<script>`. */
  var Redcast: RedcastClass;
}
