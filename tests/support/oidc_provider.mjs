// A real OpenID Connect provider for the tests: panva's certified `oidc-provider` (npm),
// configured from a JSON file (issuer, clients, signing keys, users with their claims).
// `POST /_test/reload` reads the file again and builds a new provider (the tests rotate
// the signing keys this way); sessions and grants live in the package's memory adapter.
// Sign-in is the package's development interaction: any password for a known login.
// With `idTokenTamper` in the file, the token endpoint's ID token is changed on its way
// out: "expired" (exp an hour ago) and "audience" (another client) are signed again with
// the provider's own key, so only the claim is wrong; "signature" changes a claim and
// keeps the old signature.
import fs from 'node:fs';
import http from 'node:http';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const configPath = process.argv[2];
const port = Number(process.argv[3]);
let current;
let currentConf;

function build() {
  const conf = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  currentConf = conf;
  const provider = new Provider(conf.issuer, {
    clients: conf.clients,
    jwks: conf.jwks,
    scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email'],
      groups: ['groups'],
    },
    conformIdTokenClaims: conf.conformIdTokenClaims ?? true,
    findAccount: async (ctx, id) => {
      const user = conf.users[id];
      if (!user) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...user }) };
    },
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    pkce: { required: () => true },
    cookies: { keys: ['dockyard-tests-cookie-key'] },
    // Consent is given at once for whatever scopes the client asks (a test has no one to click).
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const found = await ctx.oidc.provider.Grant.find(grantId);
        if (found) return found;
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
      await grant.save();
      return grant;
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return provider;
}

current = build();
const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/_test/reload') {
    try {
      current = build();
      res.writeHead(204).end();
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
    return;
  }
  const mode = currentConf.idTokenTamper;
  if (mode && req.method === 'POST' && req.url.startsWith('/token')) {
    tamperIdToken(res, mode, currentConf.jwks.keys[0]);
  }
  current.callback()(req, res);
});

async function changed(idToken, mode, jwk) {
  const [header, payload, signature] = idToken.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  if (mode === 'signature') {
    claims.name = 'Mallory';
    return [header, Buffer.from(JSON.stringify(claims)).toString('base64url'), signature].join('.');
  }
  if (mode === 'expired') {
    claims.iat -= 7200;
    claims.exp = claims.iat + 3600;
  } else if (mode === 'audience') {
    claims.aud = 'another-client';
    delete claims.azp;
  }
  const key = await jose.importJWK(jwk, 'RS256');
  const protectedHeader = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
  return new jose.CompactSign(Buffer.from(JSON.stringify(claims)))
    .setProtectedHeader(protectedHeader)
    .sign(key);
}

function tamperIdToken(res, mode, jwk) {
  const chunks = [];
  const end = res.end.bind(res);
  res.write = (chunk) => { chunks.push(Buffer.from(chunk)); return true; };
  res.end = (chunk) => {
    if (chunk) chunks.push(Buffer.from(chunk));
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    const finish = (text) => {
      res.setHeader('content-length', Buffer.byteLength(text));
      end(text);
    };
    if (!body.id_token) return finish(JSON.stringify(body));
    changed(body.id_token, mode, jwk).then(
      (token) => finish(JSON.stringify({ ...body, id_token: token })),
      (err) => { console.error('tamper', err); finish(JSON.stringify(body)); },
    );
    return res;
  };
}
server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
