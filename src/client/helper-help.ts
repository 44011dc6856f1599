/**
 * What the credential helpers say about themselves. No tool asks: git passes its action
 * last (gitcredentials(7)), Bazel only `get` (the EngFlow spec), docker exactly one word
 * (docker-credential-helpers' Serve()), so `--help` where the action goes is a person at
 * a terminal. docker's helper library also answers `--version`/`-v`/`version`; so do we.
 */
import { packageVersion } from './version.js';

export type HelperTool = 'git' | 'docker' | 'kubectl' | 'bazel';

export const HELPER_HELP: Record<HelperTool, string> = {
  git: `usage: git-credential-tokend [--socket=PATH] get|store|erase
       tokend git-credential [--socket=PATH] get|store|erase

git's credential helper (git-credential(1)): git runs it, with key=value lines on
stdin describing the URL. \`get\` answers a valid access token of the account whose
--host patterns match: to git 2.46 or later (capability[]=authtype) as an ephemeral
Bearer credential, to older git as username and password; a host no account serves
gets no answer, so git asks its next helper.

  get             print capability[]=authtype, authtype=Bearer, credential=,
                  ephemeral=1 (git 2.46+), or username= and password= (older git);
                  and password_expiry_utc=
  store           nothing to do: the tokens live in the daemon
  erase           git saw the token refused (401): drop it, so the next get refreshes
  --socket=PATH   the daemon's socket, when not the default

Set it up with \`tokend setup git [--global]\`; see docs/helpers.md.
Exit status: 0, always (git ignores it); a reason for a miss goes to stderr.
`,
  docker: `usage: docker-credential-tokend get|store|erase|list|version
       tokend docker-credential get|store|erase|list|version

docker's credential helper: docker runs it with the action as the only argument and
the registry on stdin. \`get\` answers {"ServerURL","Username","Secret"}, the secret
being a valid access token of the account whose --host patterns match the registry.

  get       print the credential for the registry URL on stdin
  store     nothing to keep for a registry an account serves (its tokens live in the
            daemon); an error for any other, as tokend keeps no passwords
  erase     drop the token of the registry on stdin, so the next get refreshes
  list      the registries tokend serves, as {"URL": "username"}
  version   print the version (also --version, -v)

In ~/.docker/config.json, per registry an account serves (not credsStore, which
would send every docker login here): {"credHelpers": {"registry.example.com": "tokend"}}.
Exit status: 0 ok; 1 error, with the message on stdout as docker expects
("credentials not found in native keychain" when no account serves the registry);
2 bad usage (no action, or one docker never sends).
`,
  kubectl: `usage: tokend kubectl-credential [NAME]

A kubectl exec credential plugin (client.authentication.k8s.io/v1): prints an
ExecCredential with a valid access token and its expiry on stdout. kubectl runs it;
its input is the KUBERNETES_EXEC_INFO variable. With NAME it uses that account;
without, the account whose --host patterns match the cluster's server (needs
provideClusterInfo: true in the kubeconfig).

In the kubeconfig, under users[].user.exec:
  apiVersion: client.authentication.k8s.io/v1
  command: tokend
  args: ["kubectl-credential", "work"]
  interactiveMode: Never

Exit status: 0 ok, 1 error (the reason on stderr, which kubectl shows), 2 bad usage.
`,
  bazel: `usage: bazel-credential-tokend get
       tokend bazel-credential [--account NAME] get

A Bazel credential helper (the EngFlow credential-helper spec): Bazel runs it with
{"uri": ...} on stdin; it answers {"headers": {"Authorization": ["Bearer ..."]},
"expires": ...} for the account whose --host patterns match the URI.

  --account NAME   use this account instead of matching the URI's host

In .bazelrc: build --credential_helper=*.example.com=/path/to/bin/bazel-credential-tokend
Exit status: 0 ok, 1 error (the reason on stderr; also when no account serves the URI),
2 bad usage.
`,
};

const HELP_WORDS = new Set(['--help', '-h']);
const VERSION_WORDS = new Set(['--version', '-v', 'version']);

/** What `tool`'s helper prints for `args` instead of speaking its protocol, or undefined for a protocol call. */
export function helperInfo(tool: string, args: string[]): string | undefined {
  if (!Object.hasOwn(HELPER_HELP, tool)) return undefined;
  const last = args.at(-1) ?? '';
  if (HELP_WORDS.has(last)) return HELPER_HELP[tool as HelperTool];
  if (tool === 'docker' && args.length === 1 && VERSION_WORDS.has(last)) return `docker-credential-tokend (tokend) ${packageVersion()}\n`;
  return undefined;
}
