// A real, independent OAuth 2.0 server for m2mtoken's interoperability
// tests: oidc-provider with the client_credentials grant, one client per
// authentication method, a client that must use DPoP (RFC 9449), and JWT
// access tokens for one RFC 8707 resource (bound with cnf.jkt when the
// request carried a DPoP proof).
// It listens on 127.0.0.1 (a free port), prints one JSON line with its
// token endpoint, and runs until killed.
//
// Environment: SECRET (the clients' secret), TOKEN_TTL (seconds),
// RESOURCE (the resource indicator), DPOP_NONCE=1 to require DPoP nonces.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';

const secret = process.env.SECRET;
const ttl = Number(process.env.TOKEN_TTL || 60);
const resource = process.env.RESOURCE || 'https://api.interop.test/';
const dpopNonce = process.env.DPOP_NONCE === '1';
if (!secret) {
  console.error('SECRET is required');
  process.exit(2);
}

const client = (id, method, extra = {}) => ({
  client_id: id,
  client_secret: secret,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: method,
  scope: 'read:messages',
  ...extra,
});

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      client('interop-post', 'client_secret_post'),
      client('interop-basic', 'client_secret_basic'),
      client('interop-dpop', 'client_secret_post', { dpop_bound_access_tokens: true }),
    ],
    scopes: ['read:messages'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      dPoP: {
        enabled: true,
        nonceSecret: dpopNonce ? crypto.randomBytes(32) : undefined,
        requireNonce: () => dpopNonce,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator) => {
          if (indicator !== resource) {
            throw new errors.InvalidTarget();
          }
          return { scope: 'read:messages', audience: resource, accessTokenTTL: ttl, accessTokenFormat: 'jwt' };
        },
      },
    },
  });
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer, token_endpoint: `${issuer}/token` }));
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
