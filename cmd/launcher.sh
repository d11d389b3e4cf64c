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
# knit_len TEXT sets l to its length in bytes (bash counts characters unless LC_ALL=C).
knit_len() { local LC_ALL=C; l=${#1}; }
# knit_version TEXT sets v to the VERSION answer's cniVersion for TEXT (printable ASCII, tab
# and newline only, no backslash) when it is blank or {"cniVersion":"X"} with whitespace
# between tokens; leaves v empty when only the Node path can answer. A function, so `set --`
# leaves the script's own arguments alone; no subshell.
knit_trim() { t=${1#"${1%%[![:space:]]*}"}; t=${t%"${t##*[![:space:]]}"}; }
knit_version() {
  case $1 in *[![:space:]]*) ;; *) v=@LATEST@; return ;; esac
  case $1 in *\"*\"*\"*\"*\"*) return ;; *\"*\"*\"*\"*) ;; *) return ;; esac
  set -f
  IFS='"'
  # shellcheck disable=SC2086
  set -- $1
  unset IFS
  set +f
  [ $# = 5 ] && [ "$2" = cniVersion ] || return
  knit_trim "$1"; [ "$t" = "{" ] || return
  knit_trim "$3"; [ "$t" = ":" ] || return
  knit_trim "$5"; [ "$t" = "}" ] || return
  case $4 in @SUPPORTED_ALT@) v=$4 ;; *) v=@LATEST@ ;; esac
}
if [ "$CNI_COMMAND" = VERSION ]; then
  # Answered here only for an empty stdin (or a terminal), for the one form runtimes send,
  # {"cniVersion":"X"} (whitespace between tokens allowed) in printable ASCII without a
  # backslash, and for a stdin holding a NUL byte (code 6): exactly the Node path's answers.
  # Anything else (other keys, escapes, other bytes, over 4096 bytes, a failed read) goes to
  # the Node path with stdin byte for byte. One dd reads at most 4097 bytes (a pipe cannot be
  # peeked) and reports how many: the shell keeps every byte but NUL, so a shorter capture
  # means a NUL. Linear: nothing past those bytes is looked at here.
  if [ -t 0 ]; then
    printf '{"cniVersion":"%s","supportedVersions":[@SUPPORTED_JSON@]}' @LATEST@
    exit 0
  fi
  # dd is found even when the runtime passes no PATH (the Node path needs none either).
  n=$(PATH=${PATH:+$PATH:}/usr/bin:/bin LC_ALL=C exec dd bs=4097 count=1 iflag=fullblock 2>&1)
  # n is the bytes read, then dd's report: "I+P records in", "O+Q records out", "B bytes ...".
  b=${n##*"
"}
  b=${b%% *}
  s=${n%[0-9]*+[0-9]*" records in
"*"
"*}
  v=
  case $b in '' | *[!0-9]*) exec "${KNIT_NODE:-node}" "$0" "$@" ;; esac # dd could not read: the Node path will
  knit_len "$s"
  if [ "$l" != "$b" ]; then
    printf '{"cniVersion":"%s","code":6,"msg":"%s"}' @LATEST@ 'failed to decode VERSION request on stdin: it holds a NUL byte, which JSON text never does'
    exit 1
  fi
  if [ "$b" != 4097 ]; then
    w='	
'
    case $s in
      *[!\ -~"$w"]* | *\\*) ;; # a byte but printable ASCII, tab, newline; or an escape
      *) knit_version "$s" ;;
    esac
  fi
  if [ -n "$v" ]; then
    printf '{"cniVersion":"%s","supportedVersions":[@SUPPORTED_JSON@]}' "$v"
    exit 0
  fi
  # The Node path gets stdin as it came: the bytes read so far, then whatever follows.
  if [ "$b" = 4097 ]; then
    { printf %s "$s"; PATH=${PATH:+$PATH:}/usr/bin:/bin exec cat; } | "${KNIT_NODE:-node}" "$0" "$@"
  else
    printf %s "$s" | "${KNIT_NODE:-node}" "$0" "$@"
  fi
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
