-- The scopes an authorization code was granted for (space-separated, as requested), kept
-- on the tokens it is exchanged for: `openid` makes the token answer carry an `id_token`
-- and lets the access token read `userinfo`.
ALTER TABLE oauth_tokens ADD COLUMN scope TEXT;
