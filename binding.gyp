{
  "targets": [
    {
      "target_name": "knit_netlink",
      "sources": ["pkg/netlink/native/knit_netlink.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "knit-client",
      "type": "executable",
      "sources": ["cmd/client/knit-client.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"]
    }
  ]
}
