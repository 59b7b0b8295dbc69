// Small system calls that Node's fs cannot make exactly:
//   lutimens(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec): utimensat(2) with nanosecond
//     precision and AT_SYMLINK_NOFOLLOW (Node's utimes goes through a double and loses ~240 ns);
//     a nanosecond value of -1 means UTIME_OMIT, -2 UTIME_NOW.
//   futimens(fd, atimeSec, atimeNsec, mtimeSec, mtimeNsec): the same on an open file (no path
//     lookup), for export, which sets the times of each file it writes before closing it.
//   syncfs(fd): flush the whole file system holding fd (one barrier for many objects).
//   syncfsAsync(fd) -> Promise: the same on the libuv thread pool. syncfs writes back every
//     dirty page of the file system (other files' too), which can take seconds: a daemon must
//     not stall its event loop on it. The caller keeps fd open until the promise settles.
//   gearCut(buf, start, end, minSize, avgSize, maxSize, maskS, maskL, gear): the FastCDC cut of
//     src/repository/chunker.ts (Chunker.cut: same arithmetic, same boundaries), at ~1 byte
//     per cycle from the first call on, where V8 needs tens of MiB of input before its JIT
//     reaches full speed (a daemon chunks a logout's data in a fresh process).
// The others run synchronously on the calling thread.
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static napi_value errno_error(napi_env env, int err, const char *syscall) {
  napi_value code, msg, error;
  const char *name = err == ENOENT ? "ENOENT" : err == EACCES ? "EACCES" : err == EPERM ? "EPERM"
                   : err == ENOTDIR ? "ENOTDIR" : err == EINVAL ? "EINVAL" : err == EROFS ? "EROFS" : "EIO";
  char buf[256];
  snprintf(buf, sizeof buf, "%s: %s", syscall, strerror(err));
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &error);
  napi_set_named_property(env, error, "code", code);
  napi_value n;
  napi_create_int32(env, err, &n);
  napi_set_named_property(env, error, "errno", n);
  return error;
}

static napi_value throw_errno(napi_env env, int err, const char *syscall) {
  napi_throw(env, errno_error(env, err, syscall));
  return NULL;
}

static long nsec_arg(int64_t v) {
  if (v == -1) return UTIME_OMIT;
  if (v == -2) return UTIME_NOW;
  return (long)v;
}

/** atime sec, nsec, mtime sec, nsec from argv[0..3] into ts; false (a TypeError thrown) when not numbers. */
static int times_arg(napi_env env, napi_value *argv, struct timespec ts[2]) {
  int64_t v[4];
  for (int i = 0; i < 4; i++) {
    if (napi_get_value_int64(env, argv[i], &v[i]) != napi_ok) { napi_throw_type_error(env, NULL, "times must be numbers"); return 0; }
  }
  ts[0].tv_sec = (time_t)v[0];
  ts[0].tv_nsec = nsec_arg(v[1]);
  ts[1].tv_sec = (time_t)v[2];
  ts[1].tv_nsec = nsec_arg(v[3]);
  return 1;
}

static napi_value lutimens(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 5) { napi_throw_type_error(env, NULL, "lutimens(path, as, ans, ms, mns)"); return NULL; }
  char path[4097];
  size_t len;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "path must be a string shorter than PATH_MAX");
    return NULL;
  }
  struct timespec ts[2];
  if (!times_arg(env, argv + 1, ts)) return NULL;
  if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0) return throw_errno(env, errno, "utimensat");
  return NULL;
}

static napi_value do_futimens(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc != 5 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) { napi_throw_type_error(env, NULL, "futimens(fd, as, ans, ms, mns)"); return NULL; }
  struct timespec ts[2];
  if (!times_arg(env, argv + 1, ts)) return NULL;
  if (futimens(fd, ts) != 0) return throw_errno(env, errno, "futimens");
  return NULL;
}

static napi_value do_syncfs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc != 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) { napi_throw_type_error(env, NULL, "syncfs(fd)"); return NULL; }
  if (syncfs(fd) != 0) return throw_errno(env, errno, "syncfs");
  return NULL;
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int err;
} syncfs_job;

static void syncfs_execute(napi_env env, void *data) {
  (void)env;
  syncfs_job *j = data;
  j->err = syncfs(j->fd) != 0 ? errno : 0;
}

static void syncfs_complete(napi_env env, napi_status status, void *data) {
  syncfs_job *j = data;
  if (status == napi_ok && j->err == 0) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, j->deferred, undef);
  } else {
    napi_reject_deferred(env, j->deferred, errno_error(env, j->err ? j->err : EIO, "syncfs"));
  }
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value do_syncfs_async(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc != 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) { napi_throw_type_error(env, NULL, "syncfsAsync(fd)"); return NULL; }
  syncfs_job *j = calloc(1, sizeof *j);
  if (!j) { napi_throw_error(env, NULL, "syncfsAsync: out of memory"); return NULL; }
  j->fd = fd;
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "roamfs.syncfs", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, syncfs_execute, syncfs_complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

static napi_value gear_cut(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 9) { napi_throw_type_error(env, NULL, "gearCut(buf, start, end, minSize, avgSize, maxSize, maskS, maskL, gear)"); return NULL; }
  napi_typedarray_type bt, gt;
  size_t blen, glen;
  void *bdata, *gdata;
  if (napi_get_typedarray_info(env, argv[0], &bt, &blen, &bdata, NULL, NULL) != napi_ok || bt != napi_uint8_array ||
      napi_get_typedarray_info(env, argv[8], &gt, &glen, &gdata, NULL, NULL) != napi_ok || gt != napi_int32_array || glen != 256) {
    napi_throw_type_error(env, NULL, "gearCut: buf must be a Uint8Array, gear an Int32Array(256)");
    return NULL;
  }
  int64_t v[5];
  int32_t masks[2];
  for (int i = 0; i < 5; i++) {
    if (napi_get_value_int64(env, argv[i + 1], &v[i]) != napi_ok) { napi_throw_type_error(env, NULL, "gearCut: sizes must be numbers"); return NULL; }
  }
  for (int i = 0; i < 2; i++) {
    if (napi_get_value_int32(env, argv[i + 6], &masks[i]) != napi_ok) { napi_throw_type_error(env, NULL, "gearCut: masks must be int32"); return NULL; }
  }
  int64_t start = v[0], end = v[1], min = v[2], avg = v[3], max = v[4];
  if (start < 0 || end < start || (uint64_t)end > blen || min < 0 || avg < min || max < avg) { napi_throw_range_error(env, NULL, "gearCut: bad range or sizes"); return NULL; }
  const uint8_t *b = bdata;
  const uint32_t *g = gdata;
  const uint32_t maskS = (uint32_t)masks[0], maskL = (uint32_t)masks[1];
  int64_t n = end - start, result;
  if (n <= min) {
    result = n;
  } else {
    int64_t limit = start + (n < max ? n : max);
    int64_t normal = start + (n < avg ? n : avg);
    uint32_t fp = 0;
    int64_t i = start + min;
    result = limit - start;
    for (; i < normal; i++) {
      fp = (fp << 1) + g[b[i]];
      if ((fp & maskS) == 0) { result = i + 1 - start; goto done; }
    }
    for (; i < limit; i++) {
      fp = (fp << 1) + g[b[i]];
      if ((fp & maskL) == 0) { result = i + 1 - start; goto done; }
    }
  }
done:;
  napi_value out;
  napi_create_int64(env, result, &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "lutimens", NULL, lutimens, NULL, NULL, NULL, napi_default, NULL },
    { "futimens", NULL, do_futimens, NULL, NULL, NULL, napi_default, NULL },
    { "gearCut", NULL, gear_cut, NULL, NULL, NULL, napi_default, NULL },
    { "syncfs", NULL, do_syncfs, NULL, NULL, NULL, napi_default, NULL },
    { "syncfsAsync", NULL, do_syncfs_async, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
