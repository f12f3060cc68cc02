// Interoperability with Twilio's own Node libraries: every conformance case
// (testdata/conformance.json) is minted by a running tokend (TOKEND_URL,
// seeded with the file's credentials), verified with jsonwebtoken and the
// API secret, and compared, decoded, with what the twilio package's
// AccessToken mints for the same inputs.
//
// Run by `make interop-test` (interop/run.sh), which starts tokend.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import jwt from 'jsonwebtoken';
import twilio from 'twilio';

const { AccessToken } = twilio.jwt;
const { VoiceGrant, VideoGrant, ChatGrant, SyncGrant, TaskRouterGrant, PlaybackGrant } = AccessToken;

const conformance = JSON.parse(readFileSync(new URL('../../testdata/conformance.json', import.meta.url), 'utf8'));
const cred = conformance.credentials;
const tokendURL = (process.env.TOKEND_URL || '').replace(/\/+$/, '');

// The seed's default grants: outgoing voice through its application,
// incoming not allowed. A request without grants gets these.
const seedGrants = { voice: { outgoing: { application_sid: cred.application_sid } } };

// reference mints with twilio's AccessToken what a request asks tokend for.
function reference(req) {
  const token = new AccessToken(cred.account_sid, cred.api_key_sid, cred.api_secret, {
    identity: req.identity ?? 'user',
    ttl: req.ttl_seconds ?? 3600,
    region: req.region,
  });
  const g = req.grants ?? seedGrants;
  if (g.voice) {
    token.addGrant(new VoiceGrant({
      incomingAllow: g.voice.incoming?.allow,
      outgoingApplicationSid: g.voice.outgoing?.application_sid,
      outgoingApplicationParams: g.voice.outgoing?.params,
      pushCredentialSid: g.voice.push_credential_sid,
      endpointId: g.voice.endpoint_id,
    }));
  }
  if (g.video) {
    token.addGrant(new VideoGrant({ room: g.video.room }));
  }
  if (g.chat) {
    token.addGrant(new ChatGrant({
      serviceSid: g.chat.service_sid,
      endpointId: g.chat.endpoint_id,
      deploymentRoleSid: g.chat.deployment_role_sid,
      pushCredentialSid: g.chat.push_credential_sid,
    }));
  }
  if (g.data_sync) {
    token.addGrant(new SyncGrant({ serviceSid: g.data_sync.service_sid, endpointId: g.data_sync.endpoint_id }));
  }
  if (g.task_router) {
    token.addGrant(new TaskRouterGrant({
      workspaceSid: g.task_router.workspace_sid,
      workerSid: g.task_router.worker_sid,
      role: g.task_router.role,
    }));
  }
  if (g.player) {
    token.addGrant(new PlaybackGrant({ grant: g.player }));
  }
  return token.toJwt();
}

async function mint(method, req) {
  const init = { method, headers: {} };
  let url = `${tokendURL}/token`;
  if (method === 'POST') {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(req);
  }
  const resp = await fetch(url, init);
  const text = await resp.text();
  assert.equal(resp.status, 200, `${method} /token ${JSON.stringify(req)}: HTTP ${resp.status}: ${text}`);
  return JSON.parse(text);
}

const verify = (token) => jwt.verify(token, cred.api_secret, { algorithms: ['HS256'], complete: true });

const jtis = new Set();

// check compares a tokend token with the twilio reference for req, and
// with the conformance file's expectations when given.
function check(body, req, want) {
  const got = verify(body.token); // throws on a bad signature, alg or an expired token
  const ref = verify(reference(req));

  assert.deepEqual(got.header, ref.header, 'header');
  assert.equal(got.payload.iss, ref.payload.iss, 'iss');
  assert.equal(got.payload.sub, ref.payload.sub, 'sub');
  assert.deepEqual(got.payload.grants, ref.payload.grants, 'grants');
  assert.equal(got.payload.exp - got.payload.iat, ref.payload.exp - ref.payload.iat, 'exp - iat');
  // The claims are twilio's, plus an optional nbf no later than iat.
  const claims = (p) => Object.keys(p).filter((k) => k !== 'nbf').sort();
  assert.deepEqual(claims(got.payload), claims(ref.payload), 'claim names');
  if ('nbf' in got.payload) {
    assert.ok(got.payload.nbf <= got.payload.iat, `nbf ${got.payload.nbf} after iat ${got.payload.iat}`);
  }
  const now = Math.floor(Date.now() / 1000);
  assert.ok(Math.abs(got.payload.iat - now) <= 60, `iat ${got.payload.iat} is not now (${now})`);
  // jti differs by design: the key SID, a dash, something unique.
  assert.ok(got.payload.jti.startsWith(`${got.payload.iss}-`), `jti ${got.payload.jti} does not start with ${got.payload.iss}-`);
  assert.ok(got.payload.jti.length > got.payload.iss.length + 1, 'jti has nothing after the key SID');
  assert.ok(!jtis.has(got.payload.jti), `jti ${got.payload.jti} repeats`);
  jtis.add(got.payload.jti);

  // The response says what the token says.
  assert.equal(body.jti, got.payload.jti, 'response jti');
  assert.equal(body.identity, got.payload.grants.identity, 'response identity');
  assert.equal(body.api_key_sid, got.payload.iss, 'response api_key_sid');
  assert.equal(body.account_sid, got.payload.sub, 'response account_sid');
  assert.equal(body.application_sid, cred.application_sid, 'response application_sid');

  if (want) {
    assert.deepEqual(got.header, want.header, 'header (conformance)');
    assert.equal(got.payload.iss, want.iss, 'iss (conformance)');
    assert.equal(got.payload.sub, want.sub, 'sub (conformance)');
    assert.deepEqual(got.payload.grants, want.grants, 'grants (conformance)');
    assert.equal(got.payload.exp - got.payload.iat, want.lifetime_seconds, 'lifetime (conformance)');
  }
  return got;
}

test('TOKEND_URL names a running tokend', async () => {
  assert.ok(tokendURL, 'set TOKEND_URL to the base URL of a tokend seeded with testdata/conformance.json credentials (make interop-test does)');
  const resp = await fetch(`${tokendURL}/healthz`);
  assert.equal(resp.status, 200);
});

for (const c of conformance.cases) {
  test(`conformance case ${c.name}`, async () => {
    check(await mint('POST', c.request), c.request, c.want);
  });
}

test('GET /token as the seed\'s browser page calls it', async () => {
  const body = await mint('GET');
  const got = check(body, {}, null);
  assert.equal(got.payload.grants.identity, 'user');
  assert.deepEqual(got.payload.grants.voice, seedGrants.voice);
});

test('tokens minted in the same second have distinct jti', async () => {
  const req = conformance.cases[0].request;
  const bodies = await Promise.all(Array.from({ length: 5 }, () => mint('POST', req)));
  const ids = new Set(bodies.map((b) => b.jti));
  assert.equal(ids.size, bodies.length);
});

test('the signature is checked: another secret or algorithm is refused', async () => {
  const { token } = await mint('POST', conformance.cases[0].request);
  assert.throws(() => jwt.verify(token, `${cred.api_secret}x`, { algorithms: ['HS256'] }), /invalid signature/);
  assert.throws(() => jwt.verify(token, cred.api_secret, { algorithms: ['HS512'] }), /invalid algorithm/);
  // A tampered payload breaks the signature.
  const [h, p, s] = token.split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  claims.grants.identity = 'mallory';
  const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
  assert.throws(() => jwt.verify(forged, cred.api_secret, { algorithms: ['HS256'] }), /invalid signature/);
});
