// The page tokend serves at /. It fetches an access token from tokend,
// shows what the token says (decoded here from the JWT payload), creates a
// Twilio Voice SDK Device with it, and refreshes it ahead of its expiry,
// handing each new token to the Device.
//
// Query parameters:
//   identity     the identity to ask for (tokend's default otherwise)
//   ttl_seconds  the lifetime to ask for, in seconds
//   tokend       base URL of the tokend to ask (default: this page's origin);
//                another origin must list this page's origin in tokend's
//                --cors-origins, as a customer's own site would.
//
// Nothing here throws past its caller: every failure ends up in a visible
// status line and in the log list.
import { Device } from '@twilio/voice-sdk';

import { decodeJwt, formatSeconds, refreshDelayMs, tokenTiming } from './token.js';

/* global __VOICE_SDK_PACKAGE__ */

const $ = (id) => document.getElementById(id);

// Twilio error codes that mean the Device cannot reach Twilio's servers.
const UNREACHABLE_CODES = new Set([31000, 31003, 31005, 31009, 53000, 53001, 53405]);

const state = {
  cfg: null,
  current: null, // the token in use: see fetchToken
  device: null,
  refreshes: 0,
  refreshTimer: 0,
  refreshAt: 0,
  twilioReached: false,
  twilioErrors: 0,
};

class ConfigError extends Error {}

function log(level, text) {
  const li = document.createElement('li');
  li.dataset.level = level;
  const time = document.createElement('time');
  time.textContent = new Date().toISOString().slice(11, 19);
  li.append(time, document.createTextNode(text));
  const ol = $('log');
  ol.append(li);
  ol.scrollTop = ol.scrollHeight;
}

function setStatus(id, stateName, text) {
  const el = $(id);
  el.dataset.state = stateName;
  el.textContent = text;
}

function readConfig() {
  const q = new URLSearchParams(window.location.search);
  let base = window.location.origin;
  const t = q.get('tokend');
  if (t !== null && t !== '') {
    let u;
    try {
      u = new URL(t);
    } catch {
      throw new ConfigError(`tokend=${t}: not a URL`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new ConfigError(`tokend=${t}: must be an http or https URL`);
    }
    if (u.username || u.password || u.search || u.hash) {
      throw new ConfigError(`tokend=${t}: must be a base URL without credentials, query or fragment`);
    }
    base = u.origin + u.pathname.replace(/\/+$/, '');
  }
  const body = {};
  const identity = q.get('identity');
  if (identity !== null) {
    body.identity = identity;
  }
  const ttl = q.get('ttl_seconds');
  if (ttl !== null) {
    if (!/^[0-9]{1,6}$/.test(ttl)) {
      throw new ConfigError(`ttl_seconds=${ttl}: must be a whole number of seconds`);
    }
    body.ttl_seconds = Number(ttl);
  }
  const tokenUrl = `${base}/token`;
  return { tokenUrl, body, crossOrigin: new URL(tokenUrl).origin !== window.location.origin };
}

// fetchToken asks tokend for a token and decodes it.
async function fetchToken(cfg) {
  let resp;
  try {
    resp = await fetch(cfg.tokenUrl, {
      method: 'POST',
      mode: 'cors',
      // Same-origin requests carry cookies, so an authenticating proxy in
      // front of tokend (such as oauth2-proxy, trusted with
      // --trusted-proxies) sees its session; cross-origin ones carry none
      // (tokend's CORS never allows credentials).
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(cfg.body),
    });
  } catch (e) {
    let hint = '';
    if (cfg.crossOrigin) {
      hint = ` tokend is on another origin: it answers this page only if its --cors-origins (TOKEND_CORS_ORIGINS) lists ${window.location.origin}.`;
    }
    throw new Error(`Cannot fetch a token from ${cfg.tokenUrl}: ${e.message}.${hint}`);
  }
  const receivedAt = Date.now();
  const text = await resp.text();
  let data = null;
  try {
    data = JSON.parse(text);
  } catch {
    // reported below
  }
  if (!resp.ok) {
    const msg = (data && typeof data.message === 'string' && data.message) || text.slice(0, 200) || resp.statusText;
    throw new Error(`tokend refused the request (HTTP ${resp.status}): ${msg}`);
  }
  if (!data || typeof data.token !== 'string') {
    throw new Error('tokend answered without a token');
  }
  const { header, claims } = decodeJwt(data.token);
  const { lifetimeMs, expiresAtLocal } = tokenTiming(claims, receivedAt);
  return { token: data.token, response: data, header, claims, receivedAt, lifetimeMs, expiresAtLocal };
}

function renderGrants(grants) {
  const ul = $('grants');
  ul.replaceChildren();
  const names = Object.keys(grants || {}).filter((k) => k !== 'identity');
  if (names.length === 0) {
    const li = document.createElement('li');
    li.className = 'muted';
    li.textContent = 'No product grants: identity only.';
    ul.append(li);
    return;
  }
  for (const name of names) {
    const li = document.createElement('li');
    li.dataset.grant = name;
    const code = document.createElement('code');
    code.textContent = name;
    const pre = document.createElement('pre');
    pre.textContent = JSON.stringify(grants[name], null, 2);
    li.append(code, pre);
    ul.append(li);
  }
}

function showToken(t) {
  const { claims, header } = t;
  const identity = claims.grants && typeof claims.grants.identity === 'string' ? claims.grants.identity : '';
  $('identity').textContent = identity || '(none)';
  $('application-sid').textContent = t.response.application_sid || '–';
  $('api-key-sid').textContent = claims.iss || '–';
  $('jti').textContent = claims.jti || '–';
  const lifetime = Math.round(t.lifetimeMs / 1000);
  const region = header.twr ? `, region ${header.twr}` : '';
  $('lifetime').textContent = `${formatSeconds(lifetime)} (exp ${new Date(claims.exp * 1000).toISOString()}${region})`;
  renderGrants(claims.grants);
}

function tick() {
  const t = state.current;
  if (!t) {
    return;
  }
  const now = Date.now();
  const left = t.expiresAtLocal - now;
  const el = $('expires-in');
  if (left <= 0) {
    el.dataset.state = 'expired';
    el.textContent = 'expired';
  } else {
    el.dataset.state = 'valid';
    el.textContent = formatSeconds(Math.ceil(left / 1000));
  }
  if (state.refreshAt > 0) {
    $('next-refresh').textContent = `in ${formatSeconds(Math.max(0, Math.ceil((state.refreshAt - now) / 1000)))}`;
  }
}

function scheduleRefresh(delayMs) {
  clearTimeout(state.refreshTimer);
  const d = Math.max(0, delayMs);
  state.refreshAt = Date.now() + d;
  state.refreshTimer = setTimeout(() => {
    refresh().catch((e) => log('error', `refresh: ${e.message}`));
  }, d);
}

async function refresh() {
  const prev = state.current;
  let t;
  try {
    t = await fetchToken(state.cfg);
  } catch (e) {
    const left = prev.expiresAtLocal - Date.now();
    const retryMs = left > 0 ? Math.min(5000, Math.max(500, left / 2)) : 5000;
    setStatus('token-status', left > 0 ? 'warn' : 'expired',
      `${e.message} ${left > 0 ? 'The current token is still valid.' : 'The current token has expired.'} Retrying in ${formatSeconds(Math.ceil(retryMs / 1000))}.`);
    log('error', `refresh failed: ${e.message}`);
    scheduleRefresh(retryMs);
    return;
  }
  state.current = t;
  state.refreshes += 1;
  showToken(t);
  $('refreshes').textContent = String(state.refreshes);
  const leftMs = prev.expiresAtLocal - t.receivedAt;
  let deviceNote = '';
  if (state.device) {
    try {
      state.device.updateToken(t.token);
      const took = state.device.token === t.token;
      deviceNote = took ? ' The Device has the new token.' : ' The Device did not take the new token.';
      setStatus('device-status', took ? 'ok' : 'error',
        `Device (state: ${state.device.state}) ${took ? 'has' : 'did not take'} the token ${t.claims.jti}: Device.updateToken called ${state.refreshes} time${state.refreshes === 1 ? '' : 's'}.`);
    } catch (e) {
      deviceNote = ` Device.updateToken failed: ${e.message}`;
      log('error', `Device.updateToken: ${e.message}`);
    }
  }
  setStatus('token-status', 'ok',
    `Token refreshed (${state.refreshes}) with ${formatSeconds(Math.max(0, Math.round(leftMs / 1000)))} left on the previous one: new jti ${t.claims.jti}.${deviceNote}`);
  log('info', `refreshed: jti ${prev.claims.jti} → ${t.claims.jti}${deviceNote}`);
  scheduleRefresh(refreshDelayMs(t, Date.now()));
  tick();
}

function onTwilioError(err) {
  state.twilioErrors += 1;
  const code = err && typeof err.code === 'number' ? err.code : null;
  const msg = (err && (err.message || err.explanation)) || String(err);
  const unreachable = code === null ? /websocket|network|connect|fetch/i.test(msg) : UNREACHABLE_CODES.has(code);
  if (state.twilioErrors <= 3) {
    log('warn', `Device error${code !== null ? ` ${code}` : ''}: ${msg}`);
  }
  if (state.twilioReached) {
    return;
  }
  if (unreachable) {
    setStatus('twilio-status', 'unreachable',
      `Cannot reach Twilio: the Device could not connect to Twilio's servers (${code !== null ? `error ${code}, ` : ''}${state.twilioErrors} failed attempt${state.twilioErrors === 1 ? '' : 's'}). ` +
      'The token is fine; this network does not reach Twilio, so the Device cannot register or place calls here.');
  } else {
    setStatus('twilio-status', 'error', `Twilio refused the Device${code !== null ? ` (error ${code})` : ''}: ${msg}`);
  }
}

function startDevice(t) {
  $('sdk-version').textContent = `${__VOICE_SDK_PACKAGE__} (Device.version ${Device.version})`;
  if (!Device.isSupported) {
    setStatus('device-status', 'error', 'This browser lacks WebRTC support: the Voice SDK cannot run here.');
    return;
  }
  let device;
  try {
    device = new Device(t.token, { closeProtection: false, logLevel: 'warn' });
  } catch (e) {
    setStatus('device-status', 'error', `Cannot create the Device: ${e.message}`);
    log('error', `new Device: ${e.message}`);
    return;
  }
  state.device = device;
  device.on('error', onTwilioError);
  device.on('registering', () => {
    if (!state.twilioReached && state.twilioErrors === 0) {
      setStatus('twilio-status', 'connecting', 'Registering with Twilio…');
    }
  });
  device.on('registered', () => {
    state.twilioReached = true;
    setStatus('twilio-status', 'ok', 'Registered with Twilio: the Device can receive calls.');
    log('info', 'Device registered with Twilio');
  });
  device.on('unregistered', () => log('info', 'Device unregistered'));
  device.on('tokenWillExpire', () => log('info', 'Device: tokenWillExpire'));
  setStatus('device-status', 'ok', `Device created (state: ${device.state}) with the token ${t.claims.jti}.`);
  log('info', `Device created with jti ${t.claims.jti}`);

  setStatus('twilio-status', 'connecting', 'Registering with Twilio…');
  let registering;
  try {
    registering = Promise.resolve(device.register());
  } catch (e) {
    registering = Promise.reject(e);
  }
  registering.then(() => {
    state.twilioReached = true;
    setStatus('twilio-status', 'ok', 'Registered with Twilio: the Device can receive calls.');
  }, onTwilioError);
  setTimeout(() => {
    if (!state.twilioReached && state.twilioErrors === 0) {
      setStatus('twilio-status', 'unreachable', 'Cannot reach Twilio: no answer from Twilio\'s servers within 20 s. The Device cannot register or place calls here.');
    }
  }, 20_000);
}

async function main() {
  window.addEventListener('error', (e) => log('error', `uncaught error: ${e.message}`));
  window.addEventListener('unhandledrejection', (e) => log('error', `unhandled rejection: ${e.reason && e.reason.message ? e.reason.message : e.reason}`));
  try {
    state.cfg = readConfig();
  } catch (e) {
    setStatus('token-status', 'error', `Bad query parameter: ${e.message}`);
    log('error', e.message);
    return;
  }
  $('token-url').textContent = state.cfg.tokenUrl;
  let t;
  try {
    t = await fetchToken(state.cfg);
  } catch (e) {
    setStatus('token-status', 'error', e.message);
    setStatus('device-status', 'none', 'Not created: there is no token.');
    log('error', e.message);
    return;
  }
  state.current = t;
  showToken(t);
  setStatus('token-status', 'ok', `Token minted by tokend for ${t.claims.grants && t.claims.grants.identity}: jti ${t.claims.jti}.`);
  log('info', `token: jti ${t.claims.jti}, lifetime ${Math.round(t.lifetimeMs / 1000)} s`);
  scheduleRefresh(refreshDelayMs(t, Date.now()));
  setInterval(tick, 250);
  tick();
  startDevice(t);
}

main().catch((e) => {
  setStatus('token-status', 'error', `The page failed: ${e.message}`);
  log('error', e.message);
});
