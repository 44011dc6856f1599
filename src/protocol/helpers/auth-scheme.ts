/** The HTTP auth scheme for an OAuth `token_type`, shared by the helper wire formats (git, Bazel) and the daemon's API proxy. Zod-free. */

/** `Bearer` for any spelling of bearer (RFC 6750 §4: the scheme is case-insensitive; providers often answer `bearer`), else as given (AMP's `token`). */
export function authScheme(tokenType: string | undefined): string {
  return !tokenType || tokenType.toLowerCase() === 'bearer' ? 'Bearer' : tokenType;
}
