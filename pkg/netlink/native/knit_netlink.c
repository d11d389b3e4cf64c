// knit_netlink: the only native code in knit. It does what JavaScript cannot:
// enter a network namespace for the duration of one syscall sequence (socket
// creation, sysctl file access) and come straight back, and poll a netlink
// socket on libuv's loop. Everything else (the rtnetlink codec) lives in TypeScript.
//
// Why setns here and not in JS: Node runs JS and libuv's thread pool on other
// threads that never follow a setns, so the switch must begin and end inside one
// native call on one thread, with nothing else running in between.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <node_api.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif
#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif

#define RCVBUF_BYTES (4 * 1024 * 1024)
#define RCV_TIMEOUT_SEC 10

// ---- error helpers -------------------------------------------------------

// Throws an Error whose message is "<op>: <strerror>" with .errno, .op and .syscall set;
// the TS side turns it into a NetlinkError with the errno's code name.
static void throw_errno(napi_env env, int err, const char *syscall, const char *detail) {
  char op[480], msg[600];
  snprintf(op, sizeof op, "%s%s%s", syscall, detail ? " " : "", detail ? detail : "");
  snprintf(msg, sizeof msg, "%s: %s", op, strerror(err));
  napi_value m, e, n, s, o;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) != napi_ok) return;
  if (napi_create_error(env, NULL, m, &e) != napi_ok) return;
  napi_create_int32(env, err, &n);
  napi_set_named_property(env, e, "errno", n);
  napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &o);
  napi_set_named_property(env, e, "op", o);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, e, "syscall", s);
  napi_throw(env, e);
}

static void throw_type(napi_env env, const char *msg) { napi_throw_type_error(env, NULL, msg); }

#define CHECK_NAPI(call)                                   \
  do {                                                     \
    if ((call) != napi_ok) {                               \
      bool pending = false;                                \
      napi_is_exception_pending(env, &pending);            \
      if (!pending) throw_type(env, "knit_netlink: " #call); \
      return NULL;                                         \
    }                                                      \
  } while (0)

// ---- argument helpers ----------------------------------------------------

// Reads an optional string argument (null/undefined -> empty). Returns false and
// throws on a wrong type or overlong value.
static bool get_opt_string(napi_env env, napi_value v, char *out, size_t cap, bool *present) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_null || t == napi_undefined) {
    *present = false;
    out[0] = 0;
    return true;
  }
  if (t != napi_string) {
    throw_type(env, "expected a string or null");
    return false;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return false;
  if (len + 1 > cap) {
    throw_type(env, "string argument too long");
    return false;
  }
  napi_get_value_string_utf8(env, v, out, cap, &len);
  *present = true;
  return true;
}

static bool get_int(napi_env env, napi_value v, int32_t *out) {
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    throw_type(env, "expected a number");
    return false;
  }
  return true;
}

// ---- namespace switching -------------------------------------------------

// A netns switch: `orig` is the calling thread's own netns, restored by ns_leave.
typedef struct {
  int orig;
  bool entered;
} ns_switch;

// Enters netns `path` (if non-empty). On failure throws and returns false with the
// thread unchanged. A path that exists but is no network namespace (an unmounted
// /run/netns file, a directory, a FIFO, a device, another kind of namespace) fails with
// EINVAL and op "netns <path>": callers treat that like a namespace that is gone. It is
// recognised without side effects: stat first (a FIFO's open would block, a device's
// open may do anything), then open non-blocking and check the file system is nsfs.
static bool ns_enter(napi_env env, const char *path, ns_switch *sw) {
  sw->orig = -1;
  sw->entered = false;
  if (!path || !path[0]) return true;
  struct stat st;
  if (stat(path, &st) < 0) {
    throw_errno(env, errno, "open netns", path);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    throw_errno(env, EINVAL, "netns", path);
    return false;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (target < 0) {
    throw_errno(env, errno, "open netns", path);
    return false;
  }
  struct statfs sfs;
  if (fstatfs(target, &sfs) < 0 || (sfs.f_type != NSFS_MAGIC && sfs.f_type != PROC_SUPER_MAGIC)) {
    close(target);
    throw_errno(env, EINVAL, "netns", path);
    return false;
  }
  sw->orig = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (sw->orig < 0) {
    int err = errno;
    close(target);
    throw_errno(env, err, "open", "/proc/thread-self/ns/net");
    return false;
  }
  if (setns(target, CLONE_NEWNET) < 0) {
    int err = errno;
    close(target);
    close(sw->orig);
    sw->orig = -1;
    // EINVAL: a namespace, but not a network one.
    throw_errno(env, err, err == EINVAL ? "netns" : "setns", path);
    return false;
  }
  close(target);
  sw->entered = true;
  return true;
}

// Restores the thread's original netns. A failure here would leave the main thread
// in a foreign namespace, which no caller could reason about: abort instead.
static void ns_leave(ns_switch *sw) {
  if (sw->entered && setns(sw->orig, CLONE_NEWNET) < 0) {
    perror("knit_netlink: cannot return to the original network namespace");
    abort();
  }
  if (sw->orig >= 0) close(sw->orig);
  sw->orig = -1;
  sw->entered = false;
}

// ---- sockets -------------------------------------------------------------

// openSocket(netnsPath: string|null, protocol: number, groups: number): number
static napi_value open_socket(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    throw_type(env, "openSocket(netnsPath, protocol, groups)");
    return NULL;
  }
  char path[4096];
  bool has_path;
  int32_t proto, groups;
  if (!get_opt_string(env, argv[0], path, sizeof path, &has_path)) return NULL;
  if (!get_int(env, argv[1], &proto) || !get_int(env, argv[2], &groups)) return NULL;

  ns_switch sw;
  if (!ns_enter(env, has_path ? path : NULL, &sw)) return NULL;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto);
  int err = fd < 0 ? errno : 0;
  const char *failed = "socket";
  if (fd >= 0) {
    struct sockaddr_nl sa;
    memset(&sa, 0, sizeof sa);
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = (uint32_t)groups;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
      err = errno;
      failed = "bind";
      close(fd);
      fd = -1;
    }
  }
  ns_leave(&sw);
  if (fd < 0) {
    throw_errno(env, err, failed, has_path ? path : NULL);
    return NULL;
  }
  // Options do not depend on the namespace; set them after returning.
  int one = 1, rcvbuf = RCVBUF_BYTES;
  struct timeval tv = {.tv_sec = RCV_TIMEOUT_SEC, .tv_usec = 0};
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  // Strict checking lets the kernel filter dumps (by table, ifindex, master).
  setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one);
  // SO_RCVBUFFORCE ignores rmem_max as root; fall back to the capped variant.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  napi_value out;
  CHECK_NAPI(napi_create_int32(env, fd, &out));
  return out;
}

// openPacketSocket(netnsPath: string|null, ifname: string|null): number — an AF_PACKET socket
// receiving every frame (ETH_P_ALL) of one link (or of every link) in a namespace: the tests'
// capture of what crosses an underlay (tcpdump is not installed everywhere). Read it with recv.
static napi_value open_packet(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    throw_type(env, "openPacketSocket(netnsPath, ifname)");
    return NULL;
  }
  char path[4096], ifname[IF_NAMESIZE + 1];
  bool has_path, has_if;
  if (!get_opt_string(env, argv[0], path, sizeof path, &has_path)) return NULL;
  if (!get_opt_string(env, argv[1], ifname, sizeof ifname, &has_if)) return NULL;
  ns_switch sw;
  if (!ns_enter(env, has_path ? path : NULL, &sw)) return NULL;
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
  int err = fd < 0 ? errno : 0;
  const char *failed = "socket";
  if (fd >= 0 && has_if) {
    struct sockaddr_ll sa;
    memset(&sa, 0, sizeof sa);
    sa.sll_family = AF_PACKET;
    sa.sll_protocol = htons(ETH_P_ALL);
    sa.sll_ifindex = (int)if_nametoindex(ifname);
    if (sa.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
      err = sa.sll_ifindex == 0 ? ENODEV : errno;
      failed = "bind";
      close(fd);
      fd = -1;
    }
  }
  ns_leave(&sw);
  if (fd < 0) {
    throw_errno(env, err, failed, has_if ? ifname : NULL);
    return NULL;
  }
  napi_value out;
  CHECK_NAPI(napi_create_int32(env, fd, &out));
  return out;
}

static bool get_buffer(napi_env env, napi_value v, void **data, size_t *len) {
  bool is_buf = false;
  napi_is_buffer(env, v, &is_buf);
  if (!is_buf) {
    throw_type(env, "expected a Buffer");
    return false;
  }
  return napi_get_buffer_info(env, v, data, len) == napi_ok;
}

// send(fd, buffer, length?): number — one datagram to the kernel (nl_pid 0).
static napi_value nl_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, want = -1;
  void *data;
  size_t len;
  if (argc < 2 || !get_int(env, argv[0], &fd) || !get_buffer(env, argv[1], &data, &len)) return NULL;
  if (argc >= 3 && !get_int(env, argv[2], &want)) return NULL;
  if (want >= 0 && (size_t)want < len) len = (size_t)want;
  struct sockaddr_nl sa;
  memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK;
  ssize_t n;
  do n = sendto(fd, data, len, 0, (struct sockaddr *)&sa, sizeof sa);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    throw_errno(env, errno, "sendto", NULL);
    return NULL;
  }
  napi_value out;
  CHECK_NAPI(napi_create_int32(env, (int32_t)n, &out));
  return out;
}

// recv(fd, buffer, nonblocking?: boolean): number — one datagram. Returns -1 when
// non-blocking and nothing is queued. A datagram larger than the buffer throws
// EMSGSIZE rather than silently truncating a dump.
static napi_value nl_recv(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  void *data;
  size_t len;
  bool nonblock = false;
  if (argc < 2 || !get_int(env, argv[0], &fd) || !get_buffer(env, argv[1], &data, &len)) return NULL;
  if (argc >= 3) napi_get_value_bool(env, argv[2], &nonblock);
  ssize_t n;
  do n = recv(fd, data, len, MSG_TRUNC | (nonblock ? MSG_DONTWAIT : 0));
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!nonblock) {
        throw_errno(env, ETIMEDOUT, "recv", "(no reply from the kernel)");
        return NULL;
      }
      n = -1;
    } else {
      throw_errno(env, errno, "recv", NULL);
      return NULL;
    }
  } else if ((size_t)n > len) {
    throw_errno(env, EMSGSIZE, "recv", "(datagram larger than the receive buffer)");
    return NULL;
  }
  napi_value out;
  CHECK_NAPI(napi_create_int32(env, (int32_t)n, &out));
  return out;
}

// close(fd)
static napi_value nl_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return NULL;
  if (close(fd) < 0 && errno != EINTR) {
    throw_errno(env, errno, "close", NULL);
    return NULL;
  }
  return NULL;
}

// strerror(errno): string — the C library's wording ("File exists").
static napi_value nl_strerror(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t err;
  if (argc < 1 || !get_int(env, argv[0], &err)) return NULL;
  napi_value out;
  CHECK_NAPI(napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &out));
  return out;
}

// ---- readiness watch on libuv's loop --------------------------------------

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  bool closing;
} watch_t;

static void watch_closed(uv_handle_t *h) { free(h->data); }

static void watch_fire(uv_poll_t *p, int status, int events) {
  (void)events;
  watch_t *w = p->data;
  if (w->closing) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, arg;
  if (napi_get_reference_value(env, w->callback, &cb) == napi_ok && cb) {
    napi_get_global(env, &recv); // make_callback needs an object receiver
    napi_create_int32(env, status, &arg);
    // make_callback runs microtasks afterwards, like any libuv-driven callback.
    napi_status st = napi_make_callback(env, w->async, recv, cb, 1, &arg, NULL);
    if (st == napi_pending_exception) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void watch_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  // The JS handle was collected without unwatch: nothing refers to the callback any more.
  watch_t *w = data;
  if (!w->closing) {
    w->closing = true;
    napi_delete_reference(env, w->callback);
    napi_async_destroy(env, w->async);
    uv_close((uv_handle_t *)&w->poll, watch_closed);
  }
}

// watch(fd, callback(status)): handle — calls back whenever fd is readable.
static napi_value nl_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  napi_valuetype t;
  if (argc < 2 || !get_int(env, argv[0], &fd)) return NULL;
  CHECK_NAPI(napi_typeof(env, argv[1], &t));
  if (t != napi_function) {
    throw_type(env, "watch(fd, callback)");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK_NAPI(napi_get_uv_event_loop(env, &loop));
  watch_t *w = calloc(1, sizeof *w);
  if (!w) {
    throw_errno(env, ENOMEM, "watch", NULL);
    return NULL;
  }
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc != 0) {
    free(w);
    throw_errno(env, -rc, "uv_poll_init", NULL);
    return NULL;
  }
  w->poll.data = w;
  w->env = env;
  napi_value name, resource;
  napi_create_string_utf8(env, "knit:netlink-watch", NAPI_AUTO_LENGTH, &name);
  napi_create_object(env, &resource); // Node 20 rejects a NULL async resource
  napi_create_reference(env, argv[1], 1, &w->callback);
  napi_async_init(env, resource, name, &w->async);
  rc = uv_poll_start(&w->poll, UV_READABLE, watch_fire);
  if (rc != 0) {
    w->closing = true;
    napi_delete_reference(env, w->callback);
    napi_async_destroy(env, w->async);
    uv_close((uv_handle_t *)&w->poll, watch_closed);
    throw_errno(env, -rc, "uv_poll_start", NULL);
    return NULL;
  }
  napi_value handle;
  CHECK_NAPI(napi_create_object(env, &handle));
  CHECK_NAPI(napi_wrap(env, handle, w, watch_finalize, NULL, NULL));
  return handle;
}

// unwatch(handle) — stops polling; safe to call twice.
static napi_value nl_unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) return NULL;
  void *data = NULL;
  if (napi_remove_wrap(env, argv[0], &data) != napi_ok || !data) return NULL;
  watch_t *w = data;
  if (!w->closing) {
    w->closing = true;
    uv_poll_stop(&w->poll);
    napi_delete_reference(env, w->callback);
    napi_async_destroy(env, w->async);
    uv_close((uv_handle_t *)&w->poll, watch_closed);
  }
  return NULL;
}

// setRef(handle, bool) — lets a watch stop (or not stop) the process from exiting.
static napi_value nl_watch_ref(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return NULL;
  void *data = NULL;
  bool ref = true;
  if (napi_unwrap(env, argv[0], &data) != napi_ok || !data) return NULL;
  napi_get_value_bool(env, argv[1], &ref);
  watch_t *w = data;
  if (w->closing) return NULL;
  if (ref) uv_ref((uv_handle_t *)&w->poll);
  else uv_unref((uv_handle_t *)&w->poll);
  return NULL;
}

// ---- sysctl inside a namespace --------------------------------------------

// /proc/sys/net resolves against the opener's netns at open() time, so the file is
// opened while switched and read/written after returning.
static bool sysctl_open(napi_env env, napi_value vpath, napi_value vkey, int flags, int *fd_out) {
  char path[4096], key[512], file[600];
  bool has_path, has_key;
  if (!get_opt_string(env, vpath, path, sizeof path, &has_path)) return false;
  if (!get_opt_string(env, vkey, key, sizeof key, &has_key)) return false;
  if (!has_key || !key[0] || key[0] == '/' || strstr(key, "..") != NULL) {
    throw_type(env, "sysctl key must be relative to /proc/sys and must not contain \"..\"");
    return false;
  }
  snprintf(file, sizeof file, "/proc/sys/%s", key);
  ns_switch sw;
  if (!ns_enter(env, has_path ? path : NULL, &sw)) return false;
  int fd = open(file, flags | O_CLOEXEC);
  int err = errno;
  ns_leave(&sw);
  if (fd < 0) {
    throw_errno(env, err, "open", file);
    return false;
  }
  *fd_out = fd;
  return true;
}

// writeSysctl(netnsPath|null, key, value)
static napi_value nl_write_sysctl(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    throw_type(env, "writeSysctl(netnsPath, key, value)");
    return NULL;
  }
  char value[4096];
  bool has_value;
  if (!get_opt_string(env, argv[2], value, sizeof value, &has_value)) return NULL;
  int fd;
  if (!sysctl_open(env, argv[0], argv[1], O_WRONLY, &fd)) return NULL;
  size_t len = strlen(value);
  ssize_t n;
  do n = write(fd, value, len);
  while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (n < 0) {
    throw_errno(env, err, "write sysctl", NULL);
    return NULL;
  }
  return NULL;
}

// readSysctl(netnsPath|null, key): string (trailing newline removed)
static napi_value nl_read_sysctl(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    throw_type(env, "readSysctl(netnsPath, key)");
    return NULL;
  }
  int fd;
  if (!sysctl_open(env, argv[0], argv[1], O_RDONLY, &fd)) return NULL;
  char buf[8192];
  size_t used = 0;
  for (;;) {
    ssize_t n = read(fd, buf + used, sizeof buf - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      throw_errno(env, err, "read sysctl", NULL);
      return NULL;
    }
    if (n == 0 || used + (size_t)n >= sizeof buf - 1) {
      used += (size_t)n;
      break;
    }
    used += (size_t)n;
  }
  close(fd);
  while (used > 0 && buf[used - 1] == '\n') used--;
  napi_value out;
  CHECK_NAPI(napi_create_string_utf8(env, buf, used, &out));
  return out;
}

// ---- file locks (crash-safe mutual exclusion between plugin processes) ------

// flock(path, timeoutMs): fd — opens (creating, mode 0600) and exclusively flock(2)s path.
// The kernel drops the lock when the fd is closed or the process dies, so a crashed holder
// never wedges the next one. Waits by polling LOCK_NB (1 ms growing to 10 ms) so the wait is
// bounded and immune to EINTR; gives up with ETIMEDOUT after timeoutMs (< 0: forever).
static napi_value nl_flock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  bool has_path;
  int32_t timeout_ms = -1;
  if (argc < 1 || !get_opt_string(env, argv[0], path, sizeof path, &has_path)) return NULL;
  if (!has_path || !path[0]) {
    throw_type(env, "flock(path, timeoutMs)");
    return NULL;
  }
  if (argc >= 2 && !get_int(env, argv[1], &timeout_ms)) return NULL;
  int fd;
  do fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    throw_errno(env, errno, "open", path);
    return NULL;
  }
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  long pause_us = 1000;
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
    int err = errno;
    if (err != EWOULDBLOCK && err != EINTR) {
      close(fd);
      throw_errno(env, err, "flock", path);
      return NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    long waited_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    if (timeout_ms >= 0 && waited_ms >= timeout_ms) {
      close(fd);
      throw_errno(env, ETIMEDOUT, "flock", path);
      return NULL;
    }
    struct timespec ts = {.tv_sec = 0, .tv_nsec = pause_us * 1000};
    nanosleep(&ts, NULL); // EINTR just ends this pause early
    if (pause_us < 10000) pause_us += 1000;
  }
  napi_value out;
  CHECK_NAPI(napi_create_int32(env, fd, &out));
  return out;
}

// funlock(fd) — releases a lock taken by flock and closes its fd.
static napi_value nl_funlock(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return NULL;
  flock(fd, LOCK_UN);
  if (close(fd) < 0 && errno != EINTR) {
    throw_errno(env, errno, "close", NULL);
    return NULL;
  }
  return NULL;
}

// ---- module ----------------------------------------------------------------

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"openSocket", NULL, open_socket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openPacketSocket", NULL, open_packet, NULL, NULL, NULL, napi_enumerable, NULL},
      {"send", NULL, nl_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recv", NULL, nl_recv, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, nl_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"strerror", NULL, nl_strerror, NULL, NULL, NULL, napi_enumerable, NULL},
      {"watch", NULL, nl_watch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unwatch", NULL, nl_unwatch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setWatchRef", NULL, nl_watch_ref, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writeSysctl", NULL, nl_write_sysctl, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readSysctl", NULL, nl_read_sysctl, NULL, NULL, NULL, napi_enumerable, NULL},
      {"flock", NULL, nl_flock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"funlock", NULL, nl_funlock, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
