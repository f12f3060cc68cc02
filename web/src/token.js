// The token arithmetic of the page, free of the DOM and of the SDK so that
// node --test can check it (web/test/).

// How long before its expiry to replace a token of the given lifetime: at
// 80% of the lifetime or 10 s before the end, whichever comes first, but
// never earlier than half the lifetime (a 4 s token is replaced after 2 s,
// not at once and in a loop).
export function refreshLeadMs(lifetimeMs) {
  return Math.min(Math.max(0.2 * lifetimeMs, 10_000), 0.5 * lifetimeMs);
}

function decodePart(part) {
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '==='.slice((b64.length + 3) % 4));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
}

// decodeJwt reads a JWT's header and claims without checking the signature
// (the page has no secret; Twilio checks it).
export function decodeJwt(token) {
  const parts = token.split('.');
  if (parts.length !== 3) {
    throw new Error(`the token has ${parts.length} parts, not 3`);
  }
  let header;
  let claims;
  try {
    header = decodePart(parts[0]);
    claims = decodePart(parts[1]);
  } catch (e) {
    throw new Error(`the token is not base64url JSON: ${e.message}`);
  }
  if (typeof claims.exp !== 'number') {
    throw new Error('the token has no exp claim');
  }
  return { header, claims };
}

// tokenTiming returns a token's lifetime, from its own iat and exp, and
// its expiry in local time: exp itself when the browser's clock agrees
// with tokend's (iat is within a few seconds of the arrival), otherwise
// measured from the arrival, a second early since iat is rounded down, so
// that a wrong local clock shifts neither the countdown nor the refresh.
export function tokenTiming(claims, receivedAt) {
  let expiresAtLocal = claims.exp * 1000;
  let lifetimeMs = expiresAtLocal - receivedAt;
  if (typeof claims.iat === 'number') {
    lifetimeMs = (claims.exp - claims.iat) * 1000;
    const sinceIssue = receivedAt - claims.iat * 1000;
    if (sinceIssue < -2000 || sinceIssue > 5000) {
      expiresAtLocal = receivedAt + lifetimeMs - 1000;
    }
  }
  return { lifetimeMs, expiresAtLocal };
}

// refreshDelayMs is how long from now to wait before replacing the token
// t ({lifetimeMs, expiresAtLocal}). A token so short that its refresh time
// has passed already (a 1 s token minted late in its second) still waits a
// little: no refresh loop.
export function refreshDelayMs(t, now) {
  const due = t.expiresAtLocal - refreshLeadMs(t.lifetimeMs) - now;
  return Math.max(due, Math.min(1000, t.lifetimeMs / 4));
}

export function formatSeconds(totalSeconds) {
  const s = Math.max(0, totalSeconds);
  if (s < 60) {
    return `${s} s`;
  }
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h} h ${String(m).padStart(2, '0')} min ${sec} s` : `${m} min ${sec} s`;
}
