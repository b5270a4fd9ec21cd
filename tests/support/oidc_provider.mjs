// A real OpenID Connect provider for the tests: panva's certified `oidc-provider` (npm),
// configured from a JSON file (issuer, clients, signing keys, users with their claims).
// `POST /_test/reload` reads the file again and builds a new provider (the tests rotate
// the signing keys this way); sessions and grants live in the package's memory adapter.
// Sign-in is the package's development interaction: any password for a known login.
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const configPath = process.argv[2];
const port = Number(process.argv[3]);
let current;

function build() {
  const conf = JSON.parse(fs.readFileSync(configPath, 'utf8'));
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
  current.callback()(req, res);
});
server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
