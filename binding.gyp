{
  "targets": [
    {
      "target_name": "knit_netlink",
      "sources": ["pkg/netlink/native/knit_netlink.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
