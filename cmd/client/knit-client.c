// knit-client: the tiny front of every knit CNI plugin call (docs/design.md D4, "Start fast").
//
//   knit-client <plugin-name> <fallback-command> [args...]
//
// The launcher (cmd/launcher.sh) execs this when the agent's socket directory exists. When
// knitd serves the caller's network namespace (a socket at <dir>/<netns inode>.sock), the
// request (plugin name, CNI_* and KNIT_* environment, stdin) goes to knitd, which runs the
// plugin in-process and answers with the exit code, stdout and stderr the plugin would have
// produced. Otherwise the fallback command (the Node path: `node <bundle>` or `knit <name>`,
// chosen by the launcher) is exec'd with stdin untouched, exactly as without an agent.
//
// Frames (integers are u32 little-endian, str = u32 length + bytes):
//   request  "KNQ1" u32 body-length | body: str plugin, u32 n, n x str "KEY=VALUE", str stdin
//   response "KNR1" u32 body-length | body: u32 status, u32 exit code, str stdout, str stderr
// status 0 = answered; 1 = not served here (e.g. a plugin this knitd does not know): fall back.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#define REQ_MAGIC 0x31514e4bu  /* "KNQ1" */
#define RESP_MAGIC 0x31524e4bu /* "KNR1" */
#define MAX_FRAME (16u << 20)  /* knitd enforces the same bound */
#define DEFAULT_DIR "/run/knit/cni"
#define DEFAULT_TIMEOUT_MS 120000L

extern char **environ;

struct buf { char *p; size_t len, cap; };

static void die_oom(void) { fputs("knit-client: out of memory\n", stderr); exit(1); }

static void buf_put(struct buf *b, const void *src, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) die_oom();
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, src, n);
  b->len += n;
}

static void put_u32(struct buf *b, uint32_t v) {
  unsigned char le[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24 };
  buf_put(b, le, 4);
}

static void put_str(struct buf *b, const char *s, size_t n) { put_u32(b, (uint32_t)n); buf_put(b, s, n); }

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Like the Node path's readStdinSync: a terminal (a character device other than /dev/null) or a
 * closed fd 0 is empty input; a non-blocking pipe is waited on. Returns -1 on a read error. */
static int read_stdin(struct buf *in) {
  struct stat st;
  if (fstat(0, &st) < 0) return 0;
  if (S_ISCHR(st.st_mode) && st.st_rdev != makedev(1, 3)) return 0;
  char chunk[65536];
  for (;;) {
    ssize_t r = read(0, chunk, sizeof chunk);
    if (r > 0) { buf_put(in, chunk, (size_t)r); continue; }
    if (r == 0) return 0;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) { struct pollfd p = { .fd = 0, .events = POLLIN }; poll(&p, 1, -1); continue; }
    return -1;
  }
}

/* Prints a CNI error document; msg parts are JSON-escaped (paths come from the environment). */
static void cni_error(unsigned code, const char *a, const char *b, const char *c) {
  const char *parts[3] = { a, b, c };
  printf("{\"cniVersion\":\"1.1.0\",\"code\":%u,\"msg\":\"", code);
  for (int i = 0; i < 3; i++) {
    for (const unsigned char *s = (const unsigned char *)parts[i]; s && *s; s++) {
      if (*s == '"' || *s == '\\') printf("\\%c", *s);
      else if (*s < 0x20) printf("\\u%04x", *s);
      else putchar(*s);
    }
  }
  fputs("\"}", stdout);
  fflush(stdout);
}

/* The Node path, as the launcher would have run it. stdin is either untouched or, when it was
 * already read (knitd declined the request), replayed from an in-memory file. */
static void fallback(char **cmd, const struct buf *consumed) {
  if (consumed) {
    int fd = memfd_create("knit-stdin", MFD_CLOEXEC);
    if (fd < 0 || write_all(fd, consumed->p, consumed->len) < 0 || lseek(fd, 0, SEEK_SET) < 0 || dup2(fd, 0) < 0) {
      cni_error(999, "knit: cannot replay stdin to the Node path: ", strerror(errno), "");
      exit(1);
    }
    close(fd);
  }
  execvp(cmd[0], cmd);
  // The Node path cannot start: say so the way a plugin reports any failure.
  const char *err = strerror(errno);
  cni_error(999, cmd[0], ": cannot run the plugin: ", err);
  exit(1);
}

/* knitd took the request but gave no complete answer: CNI code 11, "try again later". */
static void try_again(const char *path, const char *reason) {
  cni_error(11, "knitd closed the connection before answering (", reason, "): try again");
  fprintf(stderr, "knit-client: no complete answer from knitd at %s\n", path);
  exit(1);
}

/* Reads exactly n bytes; -1 on EOF, error or timeout (errno says which; EOF is 0). */
static int read_exact(int fd, char *p, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) { if (r == 0) errno = 0; return -1; }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static const char *why(void) {
  if (errno == 0) return "end of stream";
  if (errno == EAGAIN || errno == EWOULDBLOCK) return "timed out";
  return strerror(errno);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fputs("usage: knit-client <plugin-name> <fallback-command> [args...]\n", stderr);
    return 2;
  }
  const char *plugin = argv[1];
  char **cmd = argv + 2;

  // knitd resolves paths in its own view; a relative CNI_NETNS would resolve against its cwd.
  const char *netns = getenv("CNI_NETNS");
  if (netns && *netns && *netns != '/') fallback(cmd, NULL);

  struct stat self;
  if (stat("/proc/self/ns/net", &self) < 0) fallback(cmd, NULL);
  const char *dir = getenv("KNIT_CNI_SOCKET_DIR");
  if (!dir || !*dir) dir = DEFAULT_DIR;
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int n = snprintf(addr.sun_path, sizeof addr.sun_path, "%s/%lu.sock", dir, (unsigned long)self.st_ino);
  if (n < 0 || (size_t)n >= sizeof addr.sun_path) fallback(cmd, NULL);

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fallback(cmd, NULL);
  int rc;
  do rc = connect(fd, (struct sockaddr *)&addr, sizeof addr); while (rc < 0 && errno == EINTR);
  if (rc < 0) { close(fd); fallback(cmd, NULL); } // no agent here: ENOENT, ECONNREFUSED, EACCES ...

  long ms = DEFAULT_TIMEOUT_MS;
  const char *t = getenv("KNIT_CLIENT_TIMEOUT_MS");
  if (t && *t) { char *end; long v = strtol(t, &end, 10); if (*end == '\0' && v > 0) ms = v; }
  struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

  struct buf in = { 0 }, req = { 0 };
  if (read_stdin(&in) < 0) {
    cni_error(5, "failed to read network config from stdin: ", strerror(errno), "");
    return 1;
  }
  put_u32(&req, REQ_MAGIC);
  put_u32(&req, 0); // body length, patched below
  put_str(&req, plugin, strlen(plugin));
  uint32_t count = 0;
  size_t count_at = req.len;
  put_u32(&req, 0);
  for (char **e = environ; *e; e++) {
    if (strncmp(*e, "CNI_", 4) == 0 || strncmp(*e, "KNIT_", 5) == 0) { put_str(&req, *e, strlen(*e)); count++; }
  }
  put_str(&req, in.p ? in.p : "", in.len);
  if (req.len - 8 > MAX_FRAME) { close(fd); fallback(cmd, &in); } // too big for a frame: Node takes it
  uint32_t body = (uint32_t)(req.len - 8);
  for (int i = 0; i < 4; i++) {
    req.p[4 + i] = (char)((body >> (8 * i)) & 0xff);
    req.p[count_at + i] = (char)((count >> (8 * i)) & 0xff);
  }

  // MSG_NOSIGNAL: a knitd that went away must not kill us with SIGPIPE.
  for (size_t off = 0; off < req.len;) {
    ssize_t w = send(fd, req.p + off, req.len - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) try_again(addr.sun_path, why());
    off += (size_t)w;
  }

  unsigned char head[8];
  if (read_exact(fd, (char *)head, sizeof head) < 0) try_again(addr.sun_path, why());
  uint32_t len = get_u32(head + 4);
  if (get_u32(head) != RESP_MAGIC || len < 16 || len > MAX_FRAME) try_again(addr.sun_path, "malformed response");
  char *resp = malloc(len);
  if (!resp) die_oom();
  if (read_exact(fd, resp, len) < 0) try_again(addr.sun_path, why());
  close(fd);

  const unsigned char *r = (const unsigned char *)resp;
  uint32_t status = get_u32(r), code = get_u32(r + 4), out_len = get_u32(r + 8);
  if (status == 1) fallback(cmd, &in);
  if (status != 0 || out_len > len - 16 || get_u32(r + 12 + out_len) != len - 16 - out_len) {
    try_again(addr.sun_path, "malformed response");
  }
  const char *out = resp + 12, *err = resp + 16 + out_len;
  uint32_t err_len = len - 16 - out_len;
  if (write_all(2, err, err_len) < 0) { /* stderr is best effort, as for the Node path */ }
  if (write_all(1, out, out_len) < 0) return 1;
  return (int)(code & 0xff);
}
