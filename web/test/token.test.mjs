// Unit tests of the page's token arithmetic: node --test web/test/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decodeJwt, formatSeconds, refreshDelayMs, refreshLeadMs, tokenTiming } from '../src/token.js';

const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

test('refreshLeadMs: 80% of the lifetime or 10 s before, whichever first, never before half', () => {
  assert.equal(refreshLeadMs(3600_000), 720_000); // at 80%
  assert.equal(refreshLeadMs(30_000), 10_000); // 10 s before
  assert.equal(refreshLeadMs(20_000), 10_000); // both: half
  assert.equal(refreshLeadMs(4_000), 2_000); // short: half, not at once
  assert.equal(refreshLeadMs(1_000), 500);
});

test('decodeJwt reads header and claims, UTF-8 and unpadded base64url', () => {
  const header = { alg: 'HS256', typ: 'JWT', cty: 'twilio-fpa;v=1' };
  for (const identity of ['a', 'ab', 'abc', 'José 東京 ✓']) {
    const claims = { iss: 'SK1', exp: 100, grants: { identity } };
    const got = decodeJwt(`${b64url(header)}.${b64url(claims)}.sig`);
    assert.deepEqual(got, { header, claims });
  }
  assert.throws(() => decodeJwt('a.b'), /2 parts/);
  assert.throws(() => decodeJwt('%%%.%%%.x'), /not base64url JSON/);
  assert.throws(() => decodeJwt(`${b64url(header)}.${b64url({ iss: 'x' })}.s`), /no exp/);
});

test('tokenTiming: exp when the clocks agree, from the arrival when they do not', () => {
  const claims = { iat: 1000, exp: 1004 };
  assert.deepEqual(tokenTiming(claims, 1000_300), { lifetimeMs: 4000, expiresAtLocal: 1004_000 });
  // The browser's clock is an hour behind: measured from the arrival.
  assert.deepEqual(tokenTiming(claims, 1000_300 - 3600_000), { lifetimeMs: 4000, expiresAtLocal: 1000_300 - 3600_000 + 3000 });
  // No iat: the local clock.
  assert.deepEqual(tokenTiming({ exp: 1004 }, 1000_000), { lifetimeMs: 4000, expiresAtLocal: 1004_000 });
});

test('refreshDelayMs: ahead of expiry, never a loop', () => {
  // A 4 s token received 0.3 s after iat: refresh 2 s before exp.
  assert.equal(refreshDelayMs({ lifetimeMs: 4000, expiresAtLocal: 1004_000 }, 1000_300), 1700);
  // An hour: 12 min before exp.
  assert.equal(refreshDelayMs({ lifetimeMs: 3600_000, expiresAtLocal: 3600_000 }, 0), 2880_000);
  // Refresh time already past: wait a little anyway.
  assert.equal(refreshDelayMs({ lifetimeMs: 1000, expiresAtLocal: 1000_000 }, 999_900), 250);
  assert.equal(refreshDelayMs({ lifetimeMs: 60_000, expiresAtLocal: 1000_000 }, 999_999), 1000);
});

test('formatSeconds', () => {
  assert.equal(formatSeconds(0), '0 s');
  assert.equal(formatSeconds(-3), '0 s');
  assert.equal(formatSeconds(59), '59 s');
  assert.equal(formatSeconds(60), '1 min 00 s');
  assert.equal(formatSeconds(3599), '59 min 59 s');
  assert.equal(formatSeconds(3600), '1 h 00 min 00 s');
});
