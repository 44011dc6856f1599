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
 * Its statuses are the answer's (0 to 3), 2 for bad usage, 111 and 112; the shims take any
 * other (126 from a shell that cannot execute it, 128+N after a signal) as "it did not run"
 * and ask node instead.
 *
 * Plain C99 + POSIX, no dependencies; built on the installing machine by the package's
 * install script when a C compiler exists (scripts/build-native.mjs, which never ships a
 * binary), otherwise the shims use curl or node.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define UNREACHABLE 111
#define BROKEN 112
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

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    fputs("usage: tokend-fast SOCKET PATH [ARG]\n", stderr);
    return 2;
  }
  const char *sock_path = argv[1], *url_path = argv[2];
  if (strlen(sock_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) return UNREACHABLE;
  /* A path with spaces or CR/LF would break the request line: refuse rather than inject. */
  for (const char *c = url_path; *c; c++)
    if (*c <= ' ' || *c == 0x7f) return 2;

  /* Connect before touching stdin, so a fallback still has it. */
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return UNREACHABLE;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  strcpy(addr.sun_path, sock_path);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return UNREACHABLE;

  size_t body_len = 0;
  char *body;
  if (argc == 4) {
    body_len = strlen(argv[3]);
    body = argv[3];
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
