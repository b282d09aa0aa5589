// A real OpenID provider for the console's sign-in tests, and for trying the sign-in by hand in
// a browser: the npm package oidc-provider 8 (9 wants Node 22; 8 supports Node 18 and later).
//
//   node tests/oidc/provider.mjs [PORT] [CONFIG_JSON]
//
// PORT (or OIDC_PORT; 0 picks a free one) on 127.0.0.1; the issuer is http://127.0.0.1:PORT.
// CONFIG_JSON (or OIDC_PROVIDER_CONFIG) may set any of:
//   client_id, client_secret, redirect_uris   the one confidential client
//                                            (or OIDC_CLIENT_ID, OIDC_CLIENT_SECRET and
//                                            OIDC_REDIRECT_URIS, space-separated)
//   accounts        [{sub, email, name, email_verified?}]   who can sign in
//   jwks            {keys: [private JWKs]}   signing keys (default: new RSA and P-256 keys
//                                            at every start, so a restart rotates them)
//   id_token_signed_response_alg             RS256 by default
//   exit_with_stdin  true: stop when standard input closes (the tests' parent process died)
//
// Sign in with an account's `sub` as login and any password (oidc-provider's development
// interactions), then confirm. PKCE (S256) is required. Once listening it prints one line of
// JSON on stdout ({"issuer", "port"}); everything else goes to stderr. SIGTERM or SIGINT stops it.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

// oidc-provider prints its notices with console.info: keep stdout for the ready line.
console.log = console.error;
console.info = console.error;

const DEFAULT_ACCOUNTS = [
  { sub: 'ada', email: 'ada.lovelace@pitwarden.test', name: 'Ada Lovelace', email_verified: true },
  { sub: 'grace', email: 'grace.hopper@pitwarden.test', name: 'Grace Hopper', email_verified: true },
  { sub: 'alan', email: 'alan.turing@pitwarden.test', name: 'Alan Turing', email_verified: false },
];

function readConfig() {
  const raw = process.argv[3] ?? process.env.OIDC_PROVIDER_CONFIG ?? '{}';
  const config = JSON.parse(raw);
  const env = process.env;
  return {
    port: Number(process.argv[2] ?? env.OIDC_PORT ?? 0),
    clientId: config.client_id ?? env.OIDC_CLIENT_ID ?? 'pitwarden-console',
    clientSecret: config.client_secret ?? env.OIDC_CLIENT_SECRET ?? 'pitwarden-console-secret-for-tests-only',
    redirectUris: config.redirect_uris
      ?? (env.OIDC_REDIRECT_URIS ?? 'http://127.0.0.1:8000/console/oidc/callback').split(/\s+/).filter(Boolean),
    accounts: config.accounts ?? DEFAULT_ACCOUNTS,
    jwks: config.jwks ?? generatedKeys(),
    idTokenAlg: config.id_token_signed_response_alg ?? 'RS256',
    exitWithStdin: Boolean(config.exit_with_stdin ?? env.OIDC_EXIT_WITH_STDIN),
  };
}

function generatedKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: `rsa-${randomUUID()}`, use: 'sig', alg: 'RS256' },
      { ...ec, kid: `ec-${randomUUID()}`, use: 'sig', alg: 'ES256' },
    ],
  };
}

function configuration(settings) {
  const accounts = new Map(settings.accounts.map((account) => [account.sub, account]));
  return {
    clients: [{
      client_id: settings.clientId,
      client_secret: settings.clientSecret,
      redirect_uris: settings.redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: settings.idTokenAlg,
    }],
    jwks: settings.jwks,
    async findAccount(ctx, sub) {
      const account = accounts.get(sub);
      if (!account) return undefined; // an unknown login is asked to sign in again
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            email: account.email,
            email_verified: account.email_verified ?? true,
            name: account.name,
          };
        },
      };
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    scopes: ['openid', 'email', 'profile'],
    pkce: { methods: ['S256'], required: () => true },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    clientBasedCORS: () => false,
    ttl: {
      AccessToken: 10 * 60,
      AuthorizationCode: 60,
      IdToken: 10 * 60,
      Interaction: 10 * 60,
      Session: 60 * 60,
      Grant: 60 * 60,
    },
  };
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server.address().port));
  });
}

const settings = readConfig();
const server = createServer();
const port = await listen(server, settings.port);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, configuration(settings));

provider.use(async (ctx, next) => {
  await next();
  console.error(`${ctx.method} ${ctx.path} -> ${ctx.status}`);
});
for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
  provider.on(event, (ctx, error) => {
    console.error(`${event}: ${error.name}: ${error.message} ${error.error_description ?? ''}`);
  });
}

server.on('request', provider.callback());

function stop(reason) {
  console.error(`stopping (${reason})`);
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
if (settings.exitWithStdin) {
  process.stdin.on('end', () => stop('standard input closed'));
  process.stdin.resume();
}

console.error(`OpenID provider ${issuer}, client ${settings.clientId}, redirect URIs ${settings.redirectUris.join(' ')}`);
process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
