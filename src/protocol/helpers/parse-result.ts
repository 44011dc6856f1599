/** What every helper's input parser returns (git, docker, kubectl, Bazel). Zod-free. */

/** Why input was refused: a code to branch on, and a message that never repeats input (it may hold a secret). */
export interface HelperParseError<Code extends string> {
  code: Code;
  message: string;
}

export type HelperParseResult<Request, Code extends string> = { ok: true; request: Request } | { ok: false; error: HelperParseError<Code> };

export function parseFailure<Code extends string>(code: Code, message: string): { ok: false; error: HelperParseError<Code> } {
  return { ok: false, error: { code, message } };
}
