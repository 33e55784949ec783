// A real OpenID Connect provider for the tests (the npm package oidc-provider, pinned in package.json), started by
// tests/oidc.py. People are read from ACCOUNTS_FILE at each sign-in, so a test can take a group away between two
// logins. ID_TOKEN_OVERRIDE (JSON) re-signs every ID token with those claims changed, with the provider's own key:
// a token issued by another issuer or for another client, which the dashboard must refuse.
import fs from "node:fs";

import * as jose from "jose";
import Provider from "oidc-provider";

const env = process.env;
const { privateKey } = await jose.generateKeyPair("RS256", { extractable: true });
const key = { ...(await jose.exportJWK(privateKey)), kid: "test-key", alg: "RS256", use: "sig" };
const accounts = () => JSON.parse(fs.readFileSync(env.ACCOUNTS_FILE, "utf8"));

const provider = new Provider(env.ISSUER, {
  clients: [{
    client_id: env.CLIENT_ID,
    client_secret: env.CLIENT_SECRET,
    redirect_uris: env.REDIRECT_URIS.split(" "),
    post_logout_redirect_uris: (env.POST_LOGOUT_URIS || "").split(" ").filter(Boolean),
  }],
  jwks: { keys: [key] },
  cookies: { keys: ["picas-dashboard-tests"] },
  scopes: ["openid", "profile", "email", "eduperson_entitlement"],
  claims: {
    openid: ["sub"],
    profile: ["name", "given_name", "family_name", "preferred_username"],
    email: ["email"],
    eduperson_entitlement: ["eduperson_entitlement"],
  },
  // The login and consent pages oidc-provider ships for development: enough for a browser to sign in.
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  async findAccount(ctx, id) {
    const person = accounts()[id];
    return person && { accountId: id, claims: async () => ({ sub: id, ...person }) };
  },
});

if (env.ID_TOKEN_OVERRIDE) {
  const override = JSON.parse(env.ID_TOKEN_OVERRIDE);
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path.endsWith("/token") && ctx.body && ctx.body.id_token) {
      const claims = { ...jose.decodeJwt(ctx.body.id_token), ...override };
      ctx.body = { ...ctx.body, id_token: await new jose.SignJWT(claims)
        .setProtectedHeader({ alg: "RS256", kid: "test-key" }).sign(privateKey) };
    }
  });
}

provider.listen(Number(env.PORT), "127.0.0.1", () => console.log(`listening on ${env.PORT}`));
