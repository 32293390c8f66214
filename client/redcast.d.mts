// Types for redcast.mjs (the ES-module entry); same declarations as redcast.d.ts.
import { Redcast } from "./redcast.js";
export * from "./redcast.js";
export default Redcast;
