/**
 * `tokend git-credential|docker-credential|kubectl-credential|bazel-credential`: the same
 * helpers as bin/*-credential-tokend, for configs that name `tokend` itself. Each is a
 * byte pipe to the daemon, which speaks the tool's protocol (helper-main.ts).
 */
import { parseOptions } from './args.js';
import { HELPER_HELP } from './helper-help.js';
import { processIo, runHelper } from './helper-main.js';
import { EXIT, UsageError, type Command } from './io.js';
import { isAccountName } from '../protocol/names.js';

/** `tokend git-credential get|store|erase` (the same as bin/git-credential-tokend). */
export const gitCredential: Command = (args) => runHelper('git', args, processIo());

/** `tokend docker-credential get|store|erase|list` (the same as bin/docker-credential-tokend). */
export const dockerCredential: Command = (args) => runHelper('docker', args, processIo());

/**
 * `tokend kubectl-credential [NAME]`: a client-go exec credential plugin. Its
 * input is the KUBERNETES_EXEC_INFO variable, not stdin; an account NAME skips host matching.
 */
export const kubectlCredential: Command = async (args, io) => {
  const { values, positionals } = parseOptions('kubectl-credential', args, {});
  if (values.help) {
    io.stdout(HELPER_HELP.kubectl);
    return EXIT.ok;
  }
  const name = positionals[0];
  if (name !== undefined && !isAccountName(name))
    throw new UsageError(`"${name.slice(0, 80)}" is not a valid account name`, 'kubectl-credential');
  const env: Record<string, string> = {};
  if (io.env.KUBERNETES_EXEC_INFO) env.KUBERNETES_EXEC_INFO = io.env.KUBERNETES_EXEC_INFO;
  if (name) env.TOKEND_ACCOUNT = name;
  return runHelper('kubectl', ['get'], { ...processIo(), stdin: async () => Buffer.alloc(0) }, env);
};

/** `tokend bazel-credential [--account NAME] get`: the EngFlow credential-helper spec. */
export const bazelCredential: Command = (args) => {
  const env: Record<string, string> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--account') env.TOKEND_ACCOUNT = args[++i] ?? '';
    else if (args[i].startsWith('--account=')) env.TOKEND_ACCOUNT = args[i].slice('--account='.length);
    else rest.push(args[i]);
  }
  return runHelper('bazel', rest.length ? rest : ['get'], processIo(), Object.keys(env).length ? env : undefined);
};
