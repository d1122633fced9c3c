// zbroker dashboard session: who is logged in, and every request the page makes to the API.
// Rules:
// - The login is the HTTP API's own basic auth. The form's username and password become
//   one Authorization value, checked with GET /api/whoami (so the refusal is the API's:
//   "Login failed", "Not management user") and kept in sessionStorage only: this tab's,
//   gone when the tab closes, removed at log out; never localStorage, never a cookie.
// - URLs are built from location.origin, never relative: a page opened at
//   http://user:pass@host/ has a document URL with credentials, and fetch() refuses
//   every relative URL resolved against it.
// - Every request says X-Requested-With (the server then answers 401 without
//   WWW-Authenticate) and omits the browser's credentials (no cached basic auth, no
//   cookie, no login box of the browser's own): the session's value is the only login.
// - A 401 ends the session only if the login itself is refused (whoami says 401); a 401
//   for one action ("Not administrator user") is that action's error.
"use strict";
const AUTH_KEY = "zbroker.authorization";
const USER_KEY = "zbroker.user";

class LoggedOut extends Error {}

const base64 = (text) => btoa(Array.from(new TextEncoder().encode(text), (b) => String.fromCharCode(b)).join(""));

async function send(path, options, authorization) {
  const headers = new Headers(options.headers || {});
  headers.set("X-Requested-With", "XMLHttpRequest");
  if (authorization) headers.set("Authorization", authorization);
  const response = await fetch(location.origin + "/api" + path, {...options, headers, credentials: "omit"});
  if (response.ok) {  // a 201 or 204 may have no body (a PUT that created or replaced)
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }
  let reason = response.statusText;
  try { reason = (await response.json()).reason; } catch (e) { /* not JSON */ }
  const error = new Error(reason);
  error.status = response.status;
  throw error;
}

/** The API's 401 if it refuses this login itself, else null. */
async function loginRefusal(authorization) {
  try {
    await send("/whoami", {}, authorization);
    return null;
  } catch (error) {
    return error.status === 401 ? error : null;
  }
}

const session = {
  user: () => sessionStorage.getItem(USER_KEY),
  active: () => sessionStorage.getItem(AUTH_KEY) !== null,

  /** Log in as user (LoggedOut with the API's reason if refused); resolves to whoami. */
  async login(user, password) {
    const authorization = "Basic " + base64(`${user}:${password}`);
    let me;
    try {
      me = await send("/whoami", {}, authorization);
    } catch (error) {
      throw error.status === 401 ? new LoggedOut(error.message) : error;
    }
    sessionStorage.setItem(AUTH_KEY, authorization);
    sessionStorage.setItem(USER_KEY, me.name);
    return me;
  },

  logout() {
    sessionStorage.removeItem(AUTH_KEY);
    sessionStorage.removeItem(USER_KEY);
  },

  /** The credentials of the document's URL (http://user:pass@host/), or null. */
  urlLogin() {
    const url = new URL(document.URL);
    const decode = (part) => { try { return decodeURIComponent(part); } catch (e) { return part; } };
    return url.username ? [decode(url.username), decode(url.password)] : null;
  },

  /** A request to /api + path as the session's user: its JSON, an Error with the API's
   * reason, or LoggedOut when the login itself is refused (the session is then over). */
  async request(path, options = {}) {
    const authorization = sessionStorage.getItem(AUTH_KEY);
    if (authorization === null) throw new LoggedOut("");
    try {
      return await send(path, options, authorization);
    } catch (error) {
      if (error.status !== 401) throw error;
      const refusal = path === "/whoami" ? error : await loginRefusal(authorization);
      if (refusal === null) throw error;  // the login holds: only this action is refused
      if (sessionStorage.getItem(AUTH_KEY) === authorization) this.logout();  // not a newer login's
      throw new LoggedOut(refusal.message);
    }
  },
};
