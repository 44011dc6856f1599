/*
 * tokend-peer: who is on the other end of an accepted Unix-socket connection, and a daemon
 * other processes of the user cannot read. A Node-API addon (no node-gyp: scripts/build-native.mjs
 * compiles it with `cc -shared` against node's headers), loaded by src/daemon/caller/peer.ts.
 *
 *   peer(fd)      -> { pid, uid, gid, at } or null. `at` is the kernel's boot-time clock in
 *                    clock ticks (the unit of field 22 of /proc/PID/stat) when the peer was
 *                    read: a process that started after it cannot be the peer (a reused pid).
 *   nonDumpable() -> true when the process is now non-dumpable (prctl(2) PR_SET_DUMPABLE 0:
 *                    no ptrace attach, no /proc/PID/mem or environ for other processes of the user).
 *   clockTicks()  -> sysconf(_SC_CLK_TCK).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#ifdef __APPLE__
#include <sys/ucred.h>
#include <sys/un.h>
#endif

static napi_value make_int(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static napi_value null_value(napi_env env) {
  napi_value out;
  napi_get_null(env, &out);
  return out;
}

static napi_value peer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "peer(fd): fd must be a file descriptor");
    return NULL;
  }
  double pid, uid, gid, at = -1;
#ifdef __linux__
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) return null_value(env);
  pid = cred.pid;
  uid = cred.uid;
  gid = cred.gid;
  /* /proc/PID/stat's starttime counts ticks since boot (CLOCK_BOOTTIME, suspend included). */
  struct timespec ts;
  if (clock_gettime(CLOCK_BOOTTIME, &ts) == 0) {
    long hz = sysconf(_SC_CLK_TCK);
    if (hz > 0) at = (double)ts.tv_sec * hz + (double)ts.tv_nsec / (1e9 / hz);
  }
#elif defined(__APPLE__)
  struct xucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_LOCAL, LOCAL_PEERCRED, &cred, &len) != 0 || cred.cr_version != XUCRED_VERSION) return null_value(env);
  pid_t p = 0;
  socklen_t plen = sizeof p;
  if (getsockopt(fd, SOL_LOCAL, LOCAL_PEERPID, &p, &plen) != 0) return null_value(env);
  pid = p;
  uid = cred.cr_uid;
  gid = cred.cr_ngroups > 0 ? cred.cr_groups[0] : -1;
#else
  (void)fd;
  return null_value(env);
#endif
  napi_value out;
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "pid", make_int(env, pid));
  napi_set_named_property(env, out, "uid", make_int(env, uid));
  napi_set_named_property(env, out, "gid", make_int(env, gid));
  napi_set_named_property(env, out, "at", make_int(env, at));
  return out;
}

static napi_value non_dumpable(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
#ifdef __linux__
  napi_get_boolean(env, prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 && prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0, &out);
#else
  napi_get_boolean(env, 0, &out);
#endif
  return out;
}

static napi_value clock_ticks(napi_env env, napi_callback_info info) {
  (void)info;
  return make_int(env, (double)sysconf(_SC_CLK_TCK));
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    {"peer", NULL, peer, NULL, NULL, NULL, napi_default, NULL},
    {"nonDumpable", NULL, non_dumpable, NULL, NULL, NULL, napi_default, NULL},
    {"clockTicks", NULL, clock_ticks, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
