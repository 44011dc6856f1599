/**
 * The kubectl / client-go exec credential plugin format (client-go's credential plugin documentation;
 * client-go `pkg/apis/clientauthentication/v1/types.go`). Pure: text in, typed out.
 */
import { z } from 'zod';
import { rfc3339Seconds } from './bazel.js';
import { parseFailure, type HelperParseError, type HelperParseResult } from './parse-result.js';

export const KUBE_API_V1 = 'client.authentication.k8s.io/v1';
export const KUBE_API_V1BETA1 = 'client.authentication.k8s.io/v1beta1';
/** client-go accepts only …/v1beta1 and v1 (v1alpha1 was removed). */
export const KubeApiVersion = z.enum([KUBE_API_V1, KUBE_API_V1BETA1]);
export type KubeApiVersion = z.infer<typeof KubeApiVersion>;

export const KUBE_MAX_INPUT_BYTES = 64 * 1024;

/** `KUBERNETES_EXEC_INFO`: only the parts we read; everything else passes (cluster CA data, config…). */
export const KubeExecInfo = z.looseObject({
  apiVersion: z.string().optional(),
  kind: z.string().optional(),
  spec: z
    .looseObject({
      interactive: z.boolean().optional(),
      // Present only with `provideClusterInfo: true` in the kubeconfig.
      cluster: z.looseObject({ server: z.string().optional() }).optional(),
    })
    .optional(),
});

export interface KubectlRequest {
  /** The version to answer in: client-go fails if it differs from the kubeconfig's. */
  apiVersion: KubeApiVersion;
  /** The API server URL, when the kubeconfig sets `provideClusterInfo: true`. */
  server?: string;
  interactive: boolean;
}

export type KubectlParseErrorCode = 'input_too_large' | 'invalid_json' | 'invalid_exec_info' | 'unsupported_api_version';

/** `message` is one line for stderr. */
export type KubectlParseError = HelperParseError<KubectlParseErrorCode>;

export type KubectlParseResult = HelperParseResult<KubectlRequest, KubectlParseErrorCode>;

const fail = parseFailure<KubectlParseErrorCode>;

/**
 * Parse the `KUBERNETES_EXEC_INFO` env var (client-go: input arrives there, not on stdin).
 * Absent or empty (the plugin run by hand) means v1 with no cluster info.
 */
export function parseKubectlExecInfo(raw: string | Buffer | undefined): KubectlParseResult {
  const text = raw === undefined ? '' : typeof raw === 'string' ? raw : raw.toString('utf8');
  if (Buffer.byteLength(text, 'utf8') > KUBE_MAX_INPUT_BYTES) {
    return fail('input_too_large', `KUBERNETES_EXEC_INFO is larger than ${KUBE_MAX_INPUT_BYTES} bytes`);
  }
  if (text.trim() === '') return { ok: true, request: { apiVersion: KUBE_API_V1, interactive: false } };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return fail('invalid_json', 'KUBERNETES_EXEC_INFO is not JSON');
  }
  const parsed = KubeExecInfo.safeParse(json);
  if (!parsed.success) return fail('invalid_exec_info', 'KUBERNETES_EXEC_INFO is not an ExecCredential object');
  const info = parsed.data;
  let apiVersion: KubeApiVersion = KUBE_API_V1;
  if (info.apiVersion !== undefined) {
    const v = KubeApiVersion.safeParse(info.apiVersion);
    if (!v.success) {
      return fail('unsupported_api_version', `unsupported ExecCredential apiVersion; use ${KUBE_API_V1} or ${KUBE_API_V1BETA1}`);
    }
    apiVersion = v.data;
  }
  const request: KubectlRequest = { apiVersion, interactive: info.spec?.interactive ?? false };
  const server = info.spec?.cluster?.server;
  if (server) request.server = server;
  return { ok: true, request };
}

export interface KubeCredential {
  apiVersion: KubeApiVersion;
  token: string;
  /** epoch ms, or null: client-go then caches the token until a 401 or process exit. */
  expires_at: number | null;
}

/**
 * The ExecCredential to print: same apiVersion as asked, `status.token`, and
 * `status.expirationTimestamp` as RFC 3339 (a `metav1.Time`, parsed with Go's
 * `time.RFC3339`; whole seconds, as client-go itself marshals it).
 */
export function formatExecCredential(cred: KubeCredential): Buffer {
  const status: { token: string; expirationTimestamp?: string } = { token: cred.token };
  if (cred.expires_at !== null) status.expirationTimestamp = rfc3339Seconds(cred.expires_at);
  const body = { apiVersion: cred.apiVersion, kind: 'ExecCredential', status };
  return Buffer.from(`${JSON.stringify(body)}\n`, 'utf8');
}
