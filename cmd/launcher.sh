#!/bin/sh
':' /*
# knit launcher, the head of every bundled executable (a sh/JS polyglot: for node, line 2 is a
# string statement and this is a block comment; sh never reads past its exec or exit).
# Node start-up is the floor of a plugin's latency, so:
# - VERSION, which podman sends to every plugin of every conflist before each command, is
#   answered here without Node when stdin is empty or an object naming a supported
#   cniVersion, exactly as the Node path would answer; anything else goes to the Node path.
# - NODE_EXTRA_CA_CERTS is dropped: loading a CA bundle costs ~60 ms and no plugin needs it.
# - Any other verb goes to knitd through the C client when the agent's socket directory exists
#   (no Node start at all); without an agent for this netns the client execs the Node path.
unset NODE_EXTRA_CA_CERTS
if [ "$CNI_COMMAND" = VERSION ]; then
  s= l=
  if [ ! -t 0 ]; then
    # stdin kept byte for byte (the Node path may need it): lines, then the last partial line
    while IFS= read -r l; do s="$s$l
"; done
    s="$s$l"
  fi
  t=${s#"${s%%[![:space:]]*}"}
  t=${t%"${t##*[![:space:]]}"}
  v=${t#*\"cniVersion\"}
  v=${v#*\"}
  v=${v%%\"*}
  case "$t" in
    "") v=@LATEST@ ;;
    *"{"*"{"*) v= ;;
    "{"*\"cniVersion\"*"}") case "$v" in @SUPPORTED_ALT@) ;; *) v= ;; esac ;;
    *) v= ;;
  esac
  if [ -n "$v" ]; then
    printf '{"cniVersion":"%s","supportedVersions":[@SUPPORTED_JSON@]}' "$v"
    exit 0
  fi
  printf %s "$s" | "${KNIT_NODE:-node}" "$0" "$@"
  exit $?
fi
if [ -n "$CNI_COMMAND" ] && [ -d "${KNIT_CNI_SOCKET_DIR:-/run/knit/cni}" ]; then
  # A node agent may serve this network namespace: knit-client (lib/ beside the real bin/ of
  # this file) asks knitd and, when none answers, execs the Node path below itself. Only a
  # symlinked launcher costs a readlink process. (No star-slash here: this is a JS comment.)
  f=$0
  if [ -L "$f" ]; then f=$(readlink -f -- "$f"); fi
  case $f in *[/]*) d=${f%/*} ;; *) d=. ;; esac
  c=$d/../lib/knit-client
  if [ -x "$c" ]; then exec "$c" "${f##*[/]}" "${KNIT_NODE:-node}" "$0" "$@"; fi
fi
exec "${KNIT_NODE:-node}" "$0" "$@"
*/
