/*
 * tokend-fast: the byte pipe behind tokend's helpers and `tokend token`, for when
 * starting node (~100+ ms) or curl (~20 ms of shared-library loading) costs more than
 * the whole answer. It does one thing: POST its stdin to a path on the daemon's Unix
 * socket and relay the answer.
 *
 *   tokend-fast SOCKET PATH [ARG]
 *
 * Body: ARG when given (e.g. an account name), else all of stdin (at most 1 MiB).
 * Answer: the body goes to stdout; the `X-Tokend-Stderr` header (one line) to stderr;
 * the exit status is `X-Tokend-Exit` (else 0 for 2xx, 1 otherwise). That contract is
 * defined in src/protocol/helper-http.ts (HELPER_STATUS, HELPER_EXIT_HEADER,
 * HELPER_STDERR_HEADER); this file mirrors it, so a change there changes this too.
 *
 * Exit 111 means "the daemon could not be reached": nothing was read from stdin and
 * nothing was printed, so the calling shim can fall back to the node client (which
 * starts the daemon) with stdin intact. An answer other than 200/422, or any failure
 * after connecting, exits 112 having printed nothing.
 *
 * Exit 113 means "another user may be listening there": the socket or its folder is not
 * ours (or the folder is writable by others), or the kernel says the peer runs as another
 * uid (SO_PEERCRED on Linux, getpeereid elsewhere). One line on stderr says which; nothing
 * was read from stdin or sent, and no caller falls back to anything else.
 *
 * Its statuses are the answer's (0 to 3), 2 for bad usage, 111, 112 and 113; the shims take any
 * other (126 from a shell that cannot execute it, 128+N after a signal) as "it did not run"
 * and ask node instead.
 *
 * Plain C99 + POSIX, no dependencies; built on the installing machine by the package's
 * install script when a C compiler exists (scripts/build-native.mjs, which never ships a
 * binary), otherwise the shims use curl or node.
 */
#define _GNU_SOURCE       /* struct ucred for SO_PEERCRED (Linux) */
#define _DARWIN_C_SOURCE  /* getpeereid beside _POSIX_C_SOURCE (macOS) */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#ifdef __APPLE__
#include <mach-o/dyld.h> /* _NSGetExecutablePath */
#endif

#define UNREACHABLE 111
#define BROKEN 112
#define UNTRUSTED 113
/* At least the daemon's MAX_BODY_BYTES (src/protocol/routes.ts), so a valid input is
   never cut (test/fast-client.test.ts checks it). */
#define MAX_BODY (1024 * 1024)

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/*
 * Read fd to EOF into a growing buffer, but never more than limit+1 bytes: *out_len is
 * then limit+1, which means "too big". Exactly the bytes read are sent, and declared in
 * Content-Length: the daemon waits for every declared byte before it answers 413.
 */
static char *read_all(int fd, size_t *out_len, size_t limit) {
  size_t cap = 8192, len = 0;
  char *buf = malloc(cap);
  if (!buf) return NULL;
  while (len <= limit) {
    if (len == cap) {
      cap = cap * 2 > limit + 1 ? limit + 1 : cap * 2;
      char *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        return NULL;
      }
      buf = nb;
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      free(buf);
      return NULL;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  *out_len = len;
  return buf;
}

/* Find header `name` in the header block [start, end); returns a pointer to its value or NULL. */
static const char *header(const char *start, const char *end, const char *name, size_t *vlen) {
  size_t nlen = strlen(name);
  const char *p = start;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
      const char *v = p + nlen + 1;
      while (v < eol && (*v == ' ' || *v == '\t')) v++;
      const char *ve = eol;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
      *vlen = (size_t)(ve - v);
      return v;
    }
    p = eol + 1;
  }
  return NULL;
}

/* Before connecting: the socket and its folder are ours and the folder is writable by no
   one else (src/protocol/local-trust.ts, untrustedSocket, says the same for node clients).
   0 when they are or the socket is not there (connect then says so); else UNTRUSTED, with
   one line on stderr. An lstat and a stat: the fast path stays fast. */
static int check_socket_files(const char *sock_path) {
  uid_t me = geteuid();
  struct stat st, dst;
  if (lstat(sock_path, &st) != 0) return 0;
  if (S_ISLNK(st.st_mode) && stat(sock_path, &st) != 0) return 0;
  char dir[4096];
  const char *slash = strrchr(sock_path, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == sock_path) snprintf(dir, sizeof dir, "/");
  else snprintf(dir, sizeof dir, "%.*s", (int)(slash - sock_path), sock_path);
  if (stat(dir, &dst) != 0) return 0;
  if (dst.st_uid != me) {
    fprintf(stderr, "tokend: the socket's folder %s belongs to uid %ld, not to you (uid %ld): another user may be listening there; nothing was sent to it\n",
            dir, (long)dst.st_uid, (long)me);
    return UNTRUSTED;
  }
  if (dst.st_mode & 022) {
    fprintf(stderr, "tokend: the socket's folder %s can be written by others (mode %03o): another user may be listening there; nothing was sent to it\n",
            dir, (unsigned)(dst.st_mode & 07777));
    return UNTRUSTED;
  }
  if (st.st_uid != me) {
    fprintf(stderr, "tokend: the socket %s belongs to uid %ld, not to you (uid %ld): another user is listening there; nothing was sent to it\n",
            sock_path, (long)st.st_uid, (long)me);
    return UNTRUSTED;
  }
  return 0;
}

/* After connecting, before sending: the kernel's word on who listens (the uid recorded
   when the daemon bound and listened). 0 when it is us, else UNTRUSTED with one line on
   stderr; where there is no such call, the file checks above are all there is. */
static int check_peer(int fd, const char *sock_path) {
  uid_t me = geteuid();
  uid_t peer;
#if defined(__linux__)
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    fprintf(stderr, "tokend: cannot tell who listens on %s (SO_PEERCRED failed); nothing was sent to it\n", sock_path);
    return UNTRUSTED;
  }
  peer = cred.uid;
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
#ifndef __APPLE__
  /* The BSDs hide it under _POSIX_C_SOURCE; same signature on each (getpeereid(3)). */
  extern int getpeereid(int, uid_t *, gid_t *);
#endif
  gid_t gid;
  if (getpeereid(fd, &peer, &gid) != 0) {
    fprintf(stderr, "tokend: cannot tell who listens on %s (getpeereid failed); nothing was sent to it\n", sock_path);
    return UNTRUSTED;
  }
#else
  (void)fd;
  (void)sock_path;
  peer = me;
#endif
  if (peer != me) {
    fprintf(stderr, "tokend: the daemon on %s runs as uid %ld, not as you (uid %ld): another user is listening there; nothing was sent to it\n",
            sock_path, (long)peer, (long)me);
    return UNTRUSTED;
  }
  return 0;
}

/* POST `arg` (or, when NULL, all of stdin) to url_path on the socket and relay the answer;
   returns the exit status described at the top. */
static int pipe_request(const char *sock_path, const char *url_path, const char *arg) {
  if (strlen(sock_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) return UNREACHABLE;
  /* A path with spaces or CR/LF would break the request line: refuse rather than inject. */
  for (const char *c = url_path; *c; c++)
    if (*c <= ' ' || *c == 0x7f) return 2;

  if (check_socket_files(sock_path) != 0) return UNTRUSTED;
  /* Connect before touching stdin, so a fallback still has it. */
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return UNREACHABLE;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  strcpy(addr.sun_path, sock_path);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return UNREACHABLE;
  if (check_peer(fd, sock_path) != 0) {
    close(fd);
    return UNTRUSTED;
  }

  size_t body_len = 0;
  char *body;
  if (arg) {
    body_len = strlen(arg);
    body = (char *)arg;
  } else {
    /* Past MAX_BODY, MAX_BODY+1 bytes go out: enough for the daemon to answer 413. */
    body = read_all(STDIN_FILENO, &body_len, MAX_BODY);
    if (!body) return BROKEN;
  }

  char head[512];
  int hl = snprintf(head, sizeof head,
                    "POST %s HTTP/1.1\r\nHost: tokend\r\nUser-Agent: tokend-fast\r\n"
                    "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n",
                    url_path, body_len);
  if (hl <= 0 || (size_t)hl >= sizeof head) return 2;
  if (write_all(fd, head, (size_t)hl) != 0 || write_all(fd, body, body_len) != 0) {
    /* The daemon may answer (413) before reading everything; read what it said. */
  }
  /* No shutdown(SHUT_WR) here: node's http server (httpAllowHalfOpen=false) ends a
     half-closed connection, cutting off an answer that is still being computed (a
     refresh). `Connection: close` makes the daemon close once it has answered. */

  size_t resp_len = 0;
  char *resp = read_all(fd, &resp_len, 4 * MAX_BODY);
  close(fd);
  if (!resp || resp_len < 12 || strncmp(resp, "HTTP/1.", 7) != 0) return BROKEN;
  int status = atoi(resp + 9);
  const char *hend = NULL;
  for (size_t i = 0; i + 3 < resp_len; i++) {
    if (resp[i] == '\r' && resp[i + 1] == '\n' && resp[i + 2] == '\r' && resp[i + 3] == '\n') {
      hend = resp + i;
      break;
    }
  }
  if (!hend) return BROKEN;
  /* Only 200 and 422 are helper answers; anything else (an older daemon's 404, a 5xx)
     is left to the node client, which explains it. Nothing has been printed yet. */
  if (status != 200 && status != 422) return BROKEN;
  const char *payload = hend + 4;
  size_t payload_len = resp_len - (size_t)(payload - resp);

  size_t vlen = 0;
  const char *te = header(resp, hend, "Transfer-Encoding", &vlen);
  if (te) {
    /* De-chunk in place: size line, data, CRLF, ... 0 CRLF CRLF. */
    char *out = (char *)payload;
    const char *p = payload, *end = payload + payload_len;
    size_t total = 0;
    while (p < end) {
      char *after;
      unsigned long n = strtoul(p, &after, 16);
      const char *eol = memchr(p, '\n', (size_t)(end - p));
      if (!eol || after == p) return BROKEN;
      p = eol + 1;
      if (n == 0) break;
      if ((size_t)(end - p) < n) return BROKEN;
      memmove(out + total, p, n);
      total += n;
      p += n;
      if (p < end && *p == '\r') p++;
      if (p < end && *p == '\n') p++;
    }
    payload_len = total;
  }

  const char *err = header(resp, hend, "X-Tokend-Stderr", &vlen);
  if (err && vlen > 0) {
    /* The daemon percent-encodes it (one line, no secret); decode %XX. */
    char line[1024];
    size_t o = 0;
    for (size_t i = 0; i < vlen && o + 2 < sizeof line; i++) {
      if (err[i] == '%' && i + 2 < vlen) {
        char hex[3] = {err[i + 1], err[i + 2], 0};
        line[o++] = (char)strtol(hex, NULL, 16);
        i += 2;
      } else {
        line[o++] = err[i];
      }
    }
    line[o++] = '\n';
    write_all(STDERR_FILENO, line, o);
  }
  if (write_all(STDOUT_FILENO, payload, payload_len) != 0) return BROKEN;

  const char *ex = header(resp, hend, "X-Tokend-Exit", &vlen);
  if (ex) return atoi(ex);
  return status >= 200 && status < 300 ? 0 : 1;
}

/* ---- As a credential helper: build/git-credential-tokend (a symlink to this file) ----
 *
 * `tokend setup git --native` names build/git-credential-tokend, so git starts this binary
 * alone, without the sh shim in front (one process instead of two). It does what the
 * shim's fast path does (bin/tokend-sh-lib: tokend_parse_args, tokend_resolve_socket, the
 * `store` shortcut) and, for everything else (an option only node knows, a daemon that does
 * not answer), runs the shim itself, bin/<tool>-credential-tokend, with stdin untouched:
 * the shim then tries curl and node, which explains and autostarts. A change to the shim's
 * rules changes these too (test/helper-wire.test.ts runs both on the same inputs,
 * test/socket-paths.test.ts both resolvers on the same environments).
 */

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The socket as src/protocol/paths.ts resolvePaths() finds it; 0 when only node can tell. */
static int resolve_socket(const char *opt, char *out, size_t cap) {
  const char *v;
  int n;
#define SET(v) (v && *v)
  if (SET(opt)) n = snprintf(out, cap, "%s", opt);
  else if (v = getenv("TOKEND_SOCKET"), SET(v)) n = snprintf(out, cap, "%s", v);
  else if (v = getenv("TOKEND_HOME"), SET(v)) n = snprintf(out, cap, "%s/run/tokend.sock", v);
  else if (v = getenv("XDG_RUNTIME_DIR"), SET(v)) n = snprintf(out, cap, "%s/tokend/tokend.sock", v);
  else if (v = getenv("TOKEND_DATA_DIR"), SET(v)) n = snprintf(out, cap, "%s/run/tokend.sock", v);
  else {
    const char *home = getenv("HOME");
    if (!SET(home)) return 0;
#ifdef __APPLE__
    n = snprintf(out, cap, "%s/Library/Application Support/tokend/run/tokend.sock", home);
#else
    const char *xdg = getenv("XDG_DATA_HOME");
    n = SET(xdg) ? snprintf(out, cap, "%s/tokend/run/tokend.sock", xdg) : snprintf(out, cap, "%s/.local/share/tokend/run/tokend.sock", home);
#endif
  }
#undef SET
  return n > 0 && (size_t)n < cap;
}

/* Nothing could answer: say so the tool's way (bin/tokend-sh-lib, tokend_fail). */
static int tool_fail(const char *tool, const char *msg) {
  if (strcmp(tool, "docker") == 0) {
    printf("%s\n", msg);
    return 1; /* docker: errors on stdout, exit 1 */
  }
  fprintf(stderr, "%s\n", msg);
  return 0; /* git: a hint, exit 0, git moves on */
}

/* Run the sh shim beside this install (<root>/bin/<tool>-credential-tokend) in our place. */
static int run_shim(const char *tool, char **argv) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = 0;
  } else if (!strchr(argv[0], '/') || !realpath(argv[0], self)) {
    return tool_fail(tool, "tokend: cannot tell which folder this helper is in; configure it by its full path (tokend setup git)");
  }
  /* <root>/build/tokend-fast -> <root> */
  for (int i = 0; i < 2; i++) {
    char *slash = strrchr(self, '/');
    if (!slash) return tool_fail(tool, "tokend: cannot tell which folder this helper is in");
    *slash = 0;
  }
  char shim[4200];
  snprintf(shim, sizeof shim, "%s/bin/%s-credential-tokend", self, tool);
  argv[0] = shim;
  execv(shim, argv);
  return tool_fail(tool, "tokend: cannot run its helper script bin/*-credential-tokend beside build/ (is the install complete?)");
}

/* tokend_parse_args: `[--socket=PATH | --socket PATH] ACTION`; 0 when anything else is there (node's). */
static int parse_helper_args(int argc, char **argv, const char **sock_opt_out, const char **action_out) {
  const char *sock_opt = NULL;
  int fast = 1;
  for (int i = 1; i < argc - 1 && fast; i++) {
    if (strncmp(argv[i], "--socket=", 9) == 0) {
      if (argv[i][9]) sock_opt = argv[i] + 9;
    } else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc - 1) {
      i++;
      if (argv[i][0]) sock_opt = argv[i];
    } else {
      fast = 0;
    }
  }
  const char *action = argc > 1 ? argv[argc - 1] : "";
  if (!*action || strlen(action) > 32) fast = 0;
  for (const char *c = action; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || *c == '-') || (c == action && *c == '-')) fast = 0;
  *sock_opt_out = sock_opt;
  *action_out = action;
  return fast;
}

static int helper_main(const char *tool, int argc, char **argv) {
  const char *sock_opt, *action;
  int fast = parse_helper_args(argc, argv, &sock_opt, &action);
  /* docker-credential-helpers answer `version` themselves; here node does. */
  if (strcmp(tool, "docker") == 0 && strcmp(action, "version") == 0) fast = 0;
  if (!fast) return run_shim(tool, argv);

  /* git sends `store` after every command that worked; tokend keeps nothing a tool gives it. */
  if (strcmp(tool, "git") == 0 && strcmp(action, "store") == 0) {
    char buf[4096];
    while (read(STDIN_FILENO, buf, sizeof buf) > 0) {
    }
    return 0;
  }
  char sock[4096];
  struct stat st;
  if (!resolve_socket(sock_opt, sock, sizeof sock) || stat(sock, &st) != 0 || !S_ISSOCK(st.st_mode)) return run_shim(tool, argv);
  char url[96];
  snprintf(url, sizeof url, "/v1/helpers/%s/%s", tool, action);
  int rc = pipe_request(sock, url, NULL);
  if (rc >= 0 && rc <= 3) return rc;
  if (rc == BROKEN) return tool_fail(tool, "tokend: the daemon broke off the answer");
  /* Never another way (the shim, curl, node) to the same place: said why on stderr already. */
  if (rc == UNTRUSTED) return tool_fail(tool, "tokend: refused to talk to that socket (see tokend doctor); nothing was sent");
  return run_shim(tool, argv); /* not reachable: stdin is untouched */
}

/* ---- As the `tokend` command: build/tokend (a symlink to this file) ----
 *
 * `tokend setup cli` points the `tokend` on PATH here, so `tokend token NAME` (and
 * `kubectl-credential NAME`) start one process instead of sh and then this. It takes
 * exactly the calls bin/tokend's sh part takes (two arguments, a plain account name,
 * the socket as tokend_resolve_socket finds it) and answers them the same way: the
 * answer's status 0-3, exit 1 when another user may be listening (113). Everything else
 * runs bin/tokend in its place, and a daemon that does not answer (111, 112) goes to
 * `node bin/tokend` as the sh part does: node explains and autostarts. A change to the
 * sh part's rules changes these too (test/cli-fast-native.test.ts runs both).
 */

/* The install root: <root>/build/tokend-fast, this executable, symlinks resolved; 0 when unknown. */
static int install_root(const char *argv0, char *out, size_t cap) {
  ssize_t n = readlink("/proc/self/exe", out, cap - 1);
  if (n > 0) {
    out[n] = 0;
  } else {
    /* No /proc (macOS): the path the kernel ran, else argv[0] when it has a folder. */
    char tmp[4096];
    const char *p = strchr(argv0, '/') ? argv0 : NULL;
#ifdef __APPLE__
    char exe[4096];
    uint32_t size = sizeof exe;
    if (_NSGetExecutablePath(exe, &size) == 0) p = exe;
#endif
    if (!p || !realpath(p, tmp) || strlen(tmp) >= cap) return 0;
    strcpy(out, tmp);
  }
  for (int i = 0; i < 2; i++) {
    char *slash = strrchr(out, '/');
    if (!slash) return 0;
    *slash = 0;
  }
  return 1;
}

/* A plain account name (src/protocol/names.ts), as bin/tokend's `case` lets through. */
static int plain_name(const char *s) {
  if (!*s || *s == '-') return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
      return 0;
  return 1;
}

/* Run `node <root>/bin/tokend ARGS` (with_node) or the sh script itself in our place. */
static int run_cli(const char *root, char **argv, int with_node) {
  char script[4200];
  snprintf(script, sizeof script, "%s/bin/tokend", root);
  if (with_node) {
    /* bin/tokend's last line, `exec node "$0" "$@"`: argv[0] "node", then the script. */
    int argc = 0;
    while (argv[argc]) argc++;
    char **nargv = malloc(sizeof(char *) * (size_t)(argc + 2));
    if (nargv) {
      nargv[0] = "node";
      nargv[1] = script;
      for (int i = 1; i <= argc; i++) nargv[i + 1] = argv[i];
      execvp("node", nargv);
    }
  }
  argv[0] = script;
  execv(script, argv);
  fprintf(stderr, "tokend: cannot run %s (%s); is the install complete?\n", script, strerror(errno));
  return 1;
}

static int cli_main(int argc, char **argv) {
  char root[4096];
  if (!install_root(argv[0], root, sizeof root)) {
    fputs("tokend: cannot tell which folder this program is in; run bin/tokend by its full path\n", stderr);
    return 1;
  }
  int token = argc == 3 && strcmp(argv[1], "token") == 0;
  int kube = argc == 3 && strcmp(argv[1], "kubectl-credential") == 0;
  char sock[4096];
  struct stat st;
  if (!(token || kube) || !plain_name(argv[2]) || !resolve_socket(NULL, sock, sizeof sock) || stat(sock, &st) != 0 ||
      !S_ISSOCK(st.st_mode))
    return run_cli(root, argv, 0);
  int rc;
  if (token) {
    rc = pipe_request(sock, "/v1/helpers/cli/token", argv[2]);
  } else {
    /* Its input is $KUBERNETES_EXEC_INFO (client-go's exec credential plugins), sent as the body. */
    char url[160];
    snprintf(url, sizeof url, "/v1/helpers/kubectl/get?account=%s", argv[2]);
    const char *info = getenv("KUBERNETES_EXEC_INFO");
    rc = pipe_request(sock, url, info ? info : "");
  }
  if (rc >= 0 && rc <= 3) return rc;
  /* Another user may be listening there; pipe_request said why. Never node instead. */
  if (rc == UNTRUSTED) return 1;
  return run_cli(root, argv, 1); /* not reachable, or no usable answer: node explains */
}

#ifdef TOKEND_SOCKET_PROBE
/* Built only by test/socket-paths.test.ts: prints the socket a helper call with these
   arguments would use, or exits 7 when it would leave the answer to the shim. */
int main(int argc, char **argv) {
  const char *sock_opt, *action;
  char sock[4096];
  if (!parse_helper_args(argc, argv, &sock_opt, &action) || !resolve_socket(sock_opt, sock, sizeof sock)) return 7;
  fputs(sock, stdout);
  return 0;
}
#else
int main(int argc, char **argv) {
  const char *me = strrchr(argv[0], '/');
  me = me ? me + 1 : argv[0];
  if (strcmp(me, "tokend") == 0) return cli_main(argc, argv);
  if (ends_with(me, "-credential-tokend")) {
    size_t n = strlen(me) - strlen("-credential-tokend");
    if (n == 3 && strncmp(me, "git", 3) == 0) return helper_main("git", argc, argv);
    if (n == 6 && strncmp(me, "docker", 6) == 0) return helper_main("docker", argc, argv);
    if (n == 5 && strncmp(me, "bazel", 5) == 0) return helper_main("bazel", argc, argv);
  }
  if (argc < 3 || argc > 4) {
    fputs("usage: tokend-fast SOCKET PATH [ARG]\n", stderr);
    return 2;
  }
  return pipe_request(argv[1], argv[2], argc == 4 ? argv[3] : NULL);
}
#endif
