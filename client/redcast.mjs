// ES-module entry point. redcast.js is a classic script (so it also works as a
// plain <script>); importing it for its side effect defines globalThis.Redcast,
// which we re-export here. See README.md.
import "./redcast.js";

export const Redcast = globalThis.Redcast;
export default Redcast;
