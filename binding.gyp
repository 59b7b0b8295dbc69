{
  "targets": [{
    "target_name": "roamfs_native",
    "sources": ["src/native/roamfs_native.c"],
    "cflags": ["-O2", "-Wall"]
  }]
}
