// A real, independent OAuth 2.0 server for m2mtoken's interoperability
// tests: oidc-provider with the client_credentials grant, one client per
// authentication method, a client that must use DPoP (RFC 9449), and JWT
// access tokens for one RFC 8707 resource (bound with cnf.jkt when the
// request carried a DPoP proof).
// It listens on 127.0.0.1 (a free port), prints one JSON line with its
// token endpoint, and runs until killed.
//
// Environment: SECRET (the clients' secret), TOKEN_TTL (seconds),
// RESOURCE (the resource indicator), DPOP_NONCE=1 to require DPoP nonces,
// ACCESS_TOKEN_FORMAT=opaque for opaque access tokens (a resource server
// learns their binding by introspection).
//
// With TLS_CERT and TLS_KEY (PEM files) it serves https instead, asks every
// client for a certificate, and adds RFC 8705's mutual TLS: two clients
// that authenticate with their certificate and get tokens bound to it
// (cnf.x5t#S256):
// - interop-tls (tls_client_auth): a certificate that a CA of CLIENT_CA
//   (PEM) issued, with the subject TLS_CLIENT_DN (RFC 4514, such as
//   "CN=interop-tls,O=m2mtoken interop");
// - interop-self-signed (self_signed_tls_client_auth): one of the
//   certificates of SELF_SIGNED_CERTS (PEM), registered in its jwks (x5c);
// and interop-api (client_secret_basic), the resource server, which may
// introspect tokens.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import Provider, { errors } from 'oidc-provider';

const secret = process.env.SECRET;
const ttl = Number(process.env.TOKEN_TTL || 60);
const resource = process.env.RESOURCE || 'https://api.interop.test/';
const dpopNonce = process.env.DPOP_NONCE === '1';
const accessTokenFormat = process.env.ACCESS_TOKEN_FORMAT || 'jwt';
if (!secret) {
  console.error('SECRET is required');
  process.exit(2);
}

const client = (id, method, extra = {}) => ({
  client_id: id,
  ...(method.startsWith('client_secret') ? { client_secret: secret } : undefined),
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: method,
  scope: 'read:messages',
  ...extra,
});

const tls = Boolean(process.env.TLS_CERT);
const clients = [
  client('interop-post', 'client_secret_post'),
  client('interop-basic', 'client_secret_basic'),
  client('interop-dpop', 'client_secret_post', { dpop_bound_access_tokens: true }),
];
let server = http.createServer();
let mTLS = { enabled: false };
if (tls) {
  const pems = (file) => fs.readFileSync(file, 'ascii').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g);
  // rejectUnauthorized: false lets a certificate no CA of CLIENT_CA issued
  // (a self-signed one) through the handshake; socket.authorized says
  // whether one did, for tls_client_auth.
  server = https.createServer({
    cert: fs.readFileSync(process.env.TLS_CERT),
    key: fs.readFileSync(process.env.TLS_KEY),
    ca: fs.readFileSync(process.env.CLIENT_CA),
    requestCert: true,
    rejectUnauthorized: false,
  });
  const bound = { tls_client_certificate_bound_access_tokens: true };
  clients.push(
    client('interop-tls', 'tls_client_auth', { ...bound, tls_client_auth_subject_dn: process.env.TLS_CLIENT_DN }),
    client('interop-self-signed', 'self_signed_tls_client_auth', {
      ...bound,
      jwks: {
        keys: pems(process.env.SELF_SIGNED_CERTS).map((pem) => {
          const cert = new crypto.X509Certificate(pem);
          return { ...cert.publicKey.export({ format: 'jwk' }), x5c: [cert.raw.toString('base64')] };
        }),
      },
    }),
    client('interop-api', 'client_secret_basic', { grant_types: [] }),
  );
  // The certificate the client presented in this connection's handshake.
  const peer = (ctx) => {
    const { raw } = ctx.socket.getPeerCertificate(false) || {};
    return raw ? new crypto.X509Certificate(raw) : undefined;
  };
  mTLS = {
    enabled: true,
    certificateBoundAccessTokens: true,
    tlsClientAuth: true,
    selfSignedTlsClientAuth: true,
    getCertificate: peer,
    // The chain was checked in the handshake, against CLIENT_CA.
    certificateAuthorized: (ctx) => ctx.socket.authorized === true,
    // Node lists the subject's attributes in the certificate's order, one
    // a line; RFC 4514 writes them the other way round, with commas.
    certificateSubjectMatches: (ctx, property, expected) => property === 'tls_client_auth_subject_dn'
      && peer(ctx)?.subject.split('\n').reverse().join(',') === expected,
  };
}

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients,
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', ...(tls ? ['tls_client_auth', 'self_signed_tls_client_auth'] : [])],
    scopes: ['read:messages'],
    features: {
      mTLS,
      devInteractions: { enabled: false },
      introspection: { enabled: tls },
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
          return { scope: 'read:messages', audience: resource, accessTokenTTL: ttl, accessTokenFormat };
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
