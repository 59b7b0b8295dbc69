// Small system calls that Node's fs cannot make exactly:
//   lutimens(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec): utimensat(2) with nanosecond
//     precision and AT_SYMLINK_NOFOLLOW (Node's utimes goes through a double and loses ~240 ns);
//     a nanosecond value of -1 means UTIME_OMIT, -2 UTIME_NOW.
//   syncfs(fd): flush the whole file system holding fd (one barrier for many objects).
// Both run synchronously on the calling thread; they are cheap metadata calls.
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, int err, const char *syscall) {
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
  napi_throw(env, error);
  return NULL;
}

static long nsec_arg(int64_t v) {
  if (v == -1) return UTIME_OMIT;
  if (v == -2) return UTIME_NOW;
  return (long)v;
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
  int64_t v[4];
  for (int i = 0; i < 4; i++) {
    if (napi_get_value_int64(env, argv[i + 1], &v[i]) != napi_ok) { napi_throw_type_error(env, NULL, "times must be numbers"); return NULL; }
  }
  struct timespec ts[2] = { { (time_t)v[0], nsec_arg(v[1]) }, { (time_t)v[2], nsec_arg(v[3]) } };
  if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0) return throw_errno(env, errno, "utimensat");
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "lutimens", NULL, lutimens, NULL, NULL, NULL, napi_default, NULL },
    { "syncfs", NULL, do_syncfs, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
